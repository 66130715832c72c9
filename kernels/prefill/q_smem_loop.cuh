// The prefill loop with Q in shared memory, FlashAttention-2's forward scheme: one K and
// one V tile, each Q fragment re-read at every k-step. It runs the dense and block-sparse
// (so A-shape) sources at every head_dim, and vertical-slash at head_dim 256.
//
// Up to head_dim 128 a CTA holds TWO row blocks, 128 query rows in 4 warps, as
// FlashAttention-2's forward CTA. Warp w owns 32 rows, two 16-row m-tiles, of row block
// w / 2, so each K and V fragment a warp reads from shared memory feeds two mma
// (tile_math_mt.cuh): half the shared-memory reads per mma of a one-m-tile warp. At head_dim
// 256 a CTA holds one row block and a warp one m-tile (FlashAttention-2's 64-row CTA
// there): one m-tile's accumulators take 128 registers. The source says which
// (Source::kRowBlocks, prefill_row_blocks).
//
// The CTA walks the union of its row blocks' tile streams (BlockSparseSource, DenseSource),
// loading each tile once. The warps of a row block that keeps the tile compute on it, the
// others only take part in its loads and barriers (a warp-uniform branch), so the mma
// count is exactly the kept tiles' at 64-row granularity. One code path for every tile: a
// mapping that gave each warp one m-tile in each row block needed three (both blocks,
// either one) and ran out of registers.
//
// Shared memory: the Q tile (kept for the whole loop: Q fragments are re-read at every
// k-step), one K tile and one V tile. Loads overlap compute as in FlashAttention-2: V of
// tile t is in flight while S = Q K^T of tile t runs, and K of tile t + 1 while O += P V
// of tile t runs, two barriers per tile. Double-buffering K and V instead would take 1.5
// times the shared memory (96 KiB at head_dim 128), and so one CTA per SM on A100 instead
// of two; at head_dim 256 it would pass the 99 KiB of sm_86 / sm_89 (Q, K and V take 96).
//
// Gathering sources (vertical-slash, at head_dim 256) publish a gathered tile's keys
// before its K load, into the stage of the tile's parity; its V load and its mask read the
// same stage, and the next tile publishes into the other one.
#pragma once
#include "common/c_std.h"

#include "common/online_softmax.cuh"
#include "common/score_options.cuh"
#include "common/tile_math.cuh"
#include "common/tile_math_mt.cuh"
#include "prefill/gathered_keys.cuh"
#include "prefill/tiles.cuh"

namespace attn {

// What one thread needs to mask its rows: its fragment row g of m-tile 0 (m-tile 1's rows
// are 16 below, and rows g + 8 eight below), and the tile start at or below which no row of
// the warp's row block needs a mask (unmasked_tile_bound). The rows' last visible keys are
// computed only for the tiles that need a mask (a row block's last one or two): held, they
// cost four registers for the whole loop.
struct PairRows {
    int row_g;
    int no_mask_key0;
};

// S = Q K^T for the warp's MT m-tiles from the K tile, each m-tile's mask and
// online-softmax step (s[i] becomes m-tile i's probabilities, acc[i] is rescaled), and P
// packed to T into `pf`. `base` and `q_delta` address the K and Q tiles (tile_math_mt.cuh).
// With a gathering source (Gathers), a gathered tile (`keys`: its published keys; null for
// a contiguous one) is masked per element. `Opts` (the `_opt` kernels): softcap and window
// first (common/score_options.cuh).
template <typename T, int D, int N, bool Gathers, int MT, bool Opts>
__device__ __forceinline__ void mt_scores(float (&acc)[MT][D / 8][4], RowState (&st)[MT], uint32_t (&pf)[MT][N / 16][4],
                                          const uint32_t (&base)[4], uint32_t q_delta, int key0, const int* keys,
                                          const AttnParams& p, const PairRows& rows, int t4) {
    float s[MT][N / 8][4];
    mt_score_steps<T, D, N / 8, MT * kBlockM>(s, base, q_delta);
    // Tile column col holds key key0 + col (mask_tile_columns; no overflow: last_key >=
    // seq_k - seq_q and key0 < seq_k).
    const bool gathered = Gathers && keys != nullptr;
    const bool masked = gathered || key0 > rows.no_mask_key0;
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        if constexpr (Opts) {
            ScoreOptions o;
            o.init(p.tensors, rows.row_g + 16 * i, rows.row_g + 16 * i + 8, p.seq_q, p.seq_k);
            if (gathered) {
                o.apply(s[i], t4, [&](int col) { return keys[col]; });
            } else {
                o.apply_contiguous(s[i], t4, key0);
            }
        }
        if (masked) {
            const int row = rows.row_g + 16 * i;
            const bool causal = p.causal != 0;
            const int last0 = last_visible_key(row, p.seq_q, p.seq_k, causal);
            const int last8 = last_visible_key(row + 8, p.seq_q, p.seq_k, causal);
            if (gathered) {
                mask_tile(s[i], t4, [&](int col) { return keys[col]; }, last0, last8);
            } else {
                mask_tile_columns(s[i], t4, last0 - key0, last8 - key0);
            }
        }
        online_softmax_step<N / 8, D / 8>(s[i], acc[i], st[i], p.scale_log2);
    }
    mt_pack_p<T, N / 8>(s, pf);
}

// `View`: `p` is a varlen or paged launch's per-sequence view in shared memory
// (common/varlen.cuh); `Paged`: K and V come from page caches through its block-table row.
// `Opts`: the `_opt` variant, with the score options (common/score_options.cuh).
template <typename T, int D, typename Source, bool View = false, bool Paged = false, bool Opts = false>
__device__ __forceinline__ void attention_fwd_q_smem(const AttnParams& p) {
    constexpr int MT = Source::kRowBlocks;  // m-tiles per warp = row blocks per CTA
    constexpr bool kGathers = Source::kGathers;
    static_assert(MT == prefill_row_blocks(D) || (kGathers && MT == 1), "the CTA shape of head_dim D");
    static_assert(!kGathers || Source::kTileKeys == kBlockN, "gathered tiles hold kBlockN slots");
    constexpr int kThreads = kCtaThreads;
    constexpr int kCtaM = MT * kBlockM;
    constexpr int N = Source::kTileKeys;  // keys per K/V tile
    using KvTile = SmemTile<N, D>;
    using QTile = SmemTile<kCtaM, D>;

    extern __shared__ __align__(128) unsigned char smem_raw[];

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int g = lane / 4;
    const int t4 = lane % 4;

    // The CTA's first row block; a two-block source reads the second one itself.
    const CtaPos c = row_block_pos(p, blockIdx.z, blockIdx.y, blockIdx.x * MT);
    const int row0 = c.m * kBlockM;

    const AttnTensorParams& tp = p.tensors;
    const HeadBases bases = head_bases(p, c);
    const uint64_t q_base = bases.q, k_base = bases.k, v_base = bases.v;

    // A gathering source's published keys, per stage (the tile's parity), and the state of
    // publish_gathered_keys; unused otherwise.
    __shared__ int s_keys[kGathers ? 2 : 1][kGathers ? kBlockN : 1];
    __shared__ int s_carry[2];
    __shared__ int s_warp0_max;
    auto tile_keys = [&](const TileRef& t, int stage) -> const int* {
        if constexpr (kGathers) {
            return t.gathered ? s_keys[stage] : nullptr;
        } else {
            return nullptr;
        }
    };
    // The K and V tiles of key tile t: contiguous rows, gathered rows (the keys published
    // in `stage`), or either through the pages of a paged cache.
    auto load_kv = [&](const TileRef& t, int stage, uint64_t base, int64_t seq_stride, int64_t page_stride,
                       uint32_t smem) {
        if constexpr (Paged && kGathers) {
            const int* keys = tile_keys(t, stage);
            load_rows<N, D, kThreads>(base, smem, tid, [&](int r) {
                return paged_row(tp, base, seq_stride, page_stride, keys != nullptr ? keys[r] : contiguous_key(p, t, r));
            });
        } else if constexpr (Paged) {
            load_paged_rows<N, D, kThreads>(p, base, seq_stride, page_stride, t.key0, smem, tid);
        } else {
            load_kv_tile<N, D, kThreads>(p, base, seq_stride, t, tile_keys(t, stage), smem, tid);
        }
    };
    // Publishes a gathered tile's keys into `stage` before its loads (a uniform branch:
    // every thread walks the same stream).
    Source src;
    auto stage_keys = [&](const TileRef& t, int stage) {
        if constexpr (kGathers) {
            if (t.gathered) {
                const int v = tid < kBlockN ? src.gathered_key(p, t.key0, tid) : -1;
                publish_gathered_keys(v, tid, stage, s_keys, s_carry, s_warp0_max);
            }
        }
    };
    // The ldmatrix addresses are held for the whole loop where the source leaves the
    // registers for them (Source::kHoistAddressing), else left to the optimizer.
    // At head_dim 96 they are left to the optimizer too: held, they made the nvcc 13 build
    // spill on sm_90.
    // Nor in the `_opt` kernels, whose options take those registers (NVRTC 12.4 spilled at
    // head_dim 128 on sm_90 otherwise).
    constexpr bool kHoist = Source::kHoistAddressing && D % 64 == 0 && !Opts;

    // K, then V, then Q (tile_math_mt.cuh addresses V and Q from K's lane addresses).
    const uint32_t k_smem = smem_u32(smem_raw);
    const uint32_t v_smem = k_smem + KvTile::kBytes;
    const uint32_t q_smem = v_smem + KvTile::kBytes;

    // This warp's row block within the CTA: the one whose keep bit it answers to.
    const int block = warp * 16 * MT / kBlockM;
    PairRows rows;
    rows.row_g = row0 + warp * 16 * MT + g;
    rows.no_mask_key0 = unmasked_tile_bound<N>(p, row0 + block * kBlockM);

    float acc[MT][D / 8][4];
    RowState st[MT];
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        zero_fragments(acc[i]);
        st[i].init();
    }

    if constexpr (kGathers) {
        if (tid == 0) {
            s_carry[0] = s_carry[1] = -1;  // published by the first barrier of the first gathered tile
        }
    }
    src.init(p, c);
    if constexpr (Opts && Source::kStartsAtWindow) {
        src.start_at(ScoreOptions::window_start(tp.window_left, row0, p.seq_q, p.seq_k));
    }
    TileRef cur;
    bool has = src.next(p, cur);

    if (has) {
        // The unchecked Q copy (for all but a head's last CTA) only in the padded dense
        // kernel at head_dim 64: elsewhere it made ptxas spill (up to 232 bytes), and the
        // per-row checks of the other path cost little once per CTA.
        // Not in the `_opt` kernels: with the options' registers it made the head_dim 64 one
        // spill on sm_90 (nvcc 13).
        constexpr bool kQUnchecked = N > kBlockN && !View && !Opts;
        load_q_tile<kCtaM, D, kThreads, kQUnchecked>(p, q_base, row0, q_smem, tid);
        stage_keys(cur, 0);
        load_kv(cur, 0, k_base, tp.k_seq_stride, tp.k_page_stride, k_smem);
        cp_async_commit();
        // Sources that keep their state in shared memory need a barrier between their first
        // two next() calls (BlockSparseSource); one per CTA.
        __syncthreads();

        // The lane's ldmatrix addresses in the K tile, which also address the V and Q tiles
        // (tile_math_mt.cuh), fixed for the whole loop. When hoisted, they are opaque to the
        // optimizer, which would otherwise sink the swizzle arithmetic into the loop and redo
        // it on every tile (about 50 instructions per warp and tile at head_dim 128, 0.2 per
        // mma). The warp's Q rows are q_delta past them.
        uint32_t base[4];
        v_lane_offsets<D, N / 8>(base, lane);
        lane_bases(k_smem, base, base);
        uint32_t q_delta = q_smem + (uint32_t)(warp * 16 * MT * D * 2) - k_smem;
        if constexpr (kHoist) {
            asm volatile("" : "+r"(base[0]), "+r"(base[1]), "+r"(base[2]), "+r"(base[3]));
        }

        int stage = 0;
        while (has) {
            TileRef nxt;
            const bool has_next = src.next(p, nxt);
            // Opaque per tile, so that the Q address adds stay in the loop instead of being
            // hoisted into four more loop-long registers.
            asm volatile("" : "+r"(q_delta));

            cp_async_wait<0>();
            __syncthreads();  // K (and Q) landed; every warp is done with the previous V
            load_kv(cur, stage, v_base, tp.v_seq_stride, tp.v_page_stride, v_smem);
            cp_async_commit();

            // Only the warps of a row block that keeps the tile compute on it (a warp-uniform
            // branch); every warp takes part in the loads and the barriers.
            const bool mine = src.keeps(cur, block);
            uint32_t pf[MT][N / 16][4];
            if (mine) {
                mt_scores<T, D, N, kGathers, MT, Opts>(acc, st, pf, base, q_delta, cur.key0, tile_keys(cur, stage), p, rows, t4);
            }
            if (has_next) {
                stage_keys(nxt, stage ^ 1);
            }

            // The barrier that frees K (every warp is done with it, and V has landed), then
            // the next tile's K load, overlapping O += P V.
            cp_async_wait<0>();
            __syncthreads();
            if (has_next) {
                load_kv(nxt, stage ^ 1, k_base, tp.k_seq_stride, tp.k_page_stride, k_smem);
            }
            cp_async_commit();

            // O += P V: P from the score registers (C layout == A layout).
            if (mine) {
                mt_pv_key_steps<T, D, N / 8, KvTile::kBytes>(pf, acc, base);
            }

            cur = nxt;
            has = has_next;
            if constexpr (kGathers) {
                stage ^= 1;
            }
        }
    }

    // The output is staged in the Q tile, each m-tile in its own Q rows: every warp has
    // passed the last tile's second barrier, after which nothing reads Q, and no cp.async is
    // in flight (the last tile issued none after its V, which that barrier waited for).
    static_assert(MT * kCtaWarps * OutTile<D>::kBytes == QTile::kBytes, "the m-tiles' output rows fill the Q tile");
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        const uint32_t out_stage = q_smem + (uint32_t)((MT * warp + i) * OutTile<D>::kBytes);
        if constexpr (Opts) {
            const float sink = sink_raw_of(tp, c.h, p.softmax_scale);
            fold_sinks<D / 8>(acc[i], st[i], {sink, sink}, p.scale_log2, t4);
        }
        write_mtile<T, D>(p, c, row0 + warp * 16 * MT + 16 * i, acc[i], st[i], out_stage, lane);
    }
}

}  // namespace attn
