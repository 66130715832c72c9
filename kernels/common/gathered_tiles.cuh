// The main loop of the kernels that gather their K/V rows by key (top-k attention, split-KV
// decode): tiles of published keys, double-buffered in shared memory. While tile t is
// computed from stage t % 2, tile t + 1's keys are already published and its rows in flight
// into the other stage.
#pragma once
#include "common/c_std.h"

#include "common/cp_async.cuh"

namespace attn {

// Runs tiles 0 .. n_tiles - 1. The caller has published tile 0's keys into stage 0 and
// issued (and committed) its loads. `stage_keys(tile, stage)` publishes a tile's keys
// (ending with a barrier), `load_tile(stage)` issues its K/V copies from them, and
// `compute(stage)` uses a landed stage; every thread of the CTA must call this. Returns with
// every copy complete, so the stages may be reused (the epilogue's staging).
template <typename StageKeys, typename LoadTile, typename Compute>
__device__ __forceinline__ void run_gathered_tiles(int n_tiles, const StageKeys& stage_keys, const LoadTile& load_tile,
                                                   const Compute& compute) {
    for (int tile = 0; tile < n_tiles; ++tile) {
        const int stage = tile & 1;
        if (tile + 1 < n_tiles) {
            stage_keys(tile + 1, stage ^ 1);
            load_tile(stage ^ 1);
        }
        cp_async_commit();  // possibly empty, so "all but the newest group" is this tile
        cp_async_wait<1>();
        __syncthreads();
        compute(stage);
        __syncthreads();  // the stage is read by every warp before it is refilled
    }
    cp_async_wait<0>();
}

}  // namespace attn
