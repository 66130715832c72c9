// Publishing the keys of a gathered tile (vertical-slash's column list) to the CTA, shared
// by the loops that run gathering sources (one_block_loop.cuh, q_smem_loop.cuh).
#pragma once
#include "common/c_std.h"

#include "prefill/tiles.cuh"

namespace attn {

// publish_gathered_keys scans a gathered tile's keys in at most two warps.
static_assert(kBlockN <= 64 && kBlockN <= kCtaThreads, "a gathered tile's keys fit the first two warps");

// Publishes the keys of a gathered tile into s_keys[stage], keeping list entry `tid` (its
// in-range key `v`, or -1) only if it is above every in-range entry listed before it, in
// this tile or an earlier one: the kept keys are then strictly ascending, so no key is
// attended twice whatever the list holds, and a valid (ascending) list loses nothing.
// That is a prefix maximum: a shuffle scan inside each of the first two warps, warp 0's
// total handed to warp 1 through shared memory, and the running maximum of the earlier
// tiles kept in carry[stage ^ 1] (gathered tiles alternate stages). Every thread of the
// CTA must call it (two barriers).
__device__ __forceinline__ void publish_gathered_keys(int v, int tid, int stage, int (&keys)[2][kBlockN], int (&carry)[2],
                                                      int& warp0_max) {
    const int lane = tid % 32;
    int inclusive = v;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
        inclusive = lane >= offset ? max(inclusive, up) : inclusive;
    }
    const int shifted = __shfl_up_sync(0xffffffffu, inclusive, 1);
    const int exclusive = lane == 0 ? -1 : shifted;
    if (tid == 31) {
        warp0_max = inclusive;
    }
    __syncthreads();
    if (tid < kBlockN) {
        int before = max(carry[stage ^ 1], exclusive);
        before = tid >= 32 ? max(before, warp0_max) : before;
        keys[stage][tid] = v > before ? v : -1;
        if (tid == kBlockN - 1) {
            carry[stage] = max(before, v);
        }
    }
    __syncthreads();
}

}  // namespace attn
