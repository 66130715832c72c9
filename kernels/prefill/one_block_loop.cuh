// The prefill loop for gathering sources (vertical-slash) up to head_dim 128: one row
// block per CTA, since its gathered column tiles differ per row block, Q in registers, and
// K/V double-buffered. The dense and block-sparse sources, and vertical-slash at head_dim
// 256, run on the q_smem loop (q_smem_loop.cuh).
#pragma once
#include "common/c_std.h"

#include "common/online_softmax.cuh"
#include "common/score_options.cuh"
#include "common/tile_math.cuh"
#include "prefill/gathered_keys.cuh"
#include "prefill/tiles.cuh"

namespace attn {

// One tile for one warp over the tile's first W keys or list slots (W = 16, 32, 48 or 64):
// past W, every slot is empty or invisible to all of the warp's rows, so neither their
// scores nor their P V are computed. Masked per element when `gathered` (by the published
// keys), or by column when `masked` (the tile crosses seq_k or the causal diagonal of the
// row block's first row; no overflow: last_key >= seq_k - seq_q and key0 < seq_k).
// `opts` (the `_opt` kernels only, else null): softcap and window first.
template <typename T, int D, int W, typename KeyOf>
__device__ __forceinline__ void one_block_tile(float (&acc)[D / 8][4], RowState& st, const uint32_t (&q_frag)[D / 16][4],
                                               uint32_t k_tile, uint32_t v_tile, const uint32_t (&k_off)[4],
                                               const uint32_t (&v_off)[4], bool gathered, bool masked,
                                               const KeyOf& key_of, const int (&last_key)[2], int key0, int t4,
                                               float scale_log2, const ScoreOptions* opts) {
    float s[W / 8][4];
    tile_scores_at<T, D>(s, q_frag, k_tile, k_off);
    if (opts != nullptr) {
        opts->apply(s, t4, [&](int col) { return gathered ? key_of(col) : key0 + col; });
    }
    if (gathered) {
        mask_tile(s, t4, key_of, last_key[0], last_key[1]);
    } else if (masked) {
        mask_tile_columns(s, t4, last_key[0] - key0, last_key[1] - key0);
    }
    online_softmax_step<W / 8, D / 8>(s, acc, st, scale_log2);
    // O += P V: P straight from the score registers (C layout == A layout).
    tile_pv_at<T, D>(s, acc, v_tile, v_off);
}

// The loop for sources that gather (vertical-slash): ONE row block per CTA, 4 warps of
// one 16-row m-tile each. The warp's Q rows are loaded once and kept in registers as mma A
// fragments. K and V tiles are double-buffered in shared memory: while tile t is being
// computed, tile t + 1 is already in flight with cp.async (with its gathered keys
// published first). Shared memory: two stages of K and V; Q borrows stage 1 before the
// loop, and the output is staged in stage 0 after it.
// `View` (unused here): the varlen and paged entries' flag for the q_smem loop, taken so
// that both loops instantiate alike (prefill.cu). `Paged`: K and V come from page caches
// through the view's block-table row (common/varlen.cuh). `Opts`: the `_opt` variant, with
// the score options (common/score_options.cuh).
template <typename T, int D, typename Source, bool View = false, bool Paged = false, bool Opts = false>
__device__ __forceinline__ void attention_fwd_one_block(const AttnParams& p) {
    static_assert(Source::kRowBlocks == 1, "the one-block loop walks one row block");
    constexpr int kThreads = kCtaThreads;
    using KvTile = SmemTile<kBlockN, D>;
    using QTile = SmemTile<kBlockM, D>;
    static_assert(QTile::kBytes <= KvTile::kBytes, "the Q tile borrows stage 1's K before the loop");
    constexpr int kDimBlocks = D / 8;        // n-blocks of the output accumulator
    constexpr int kKeyBlocks = kBlockN / 8;  // n-blocks of the score tile
    constexpr int kDimSteps = D / 16;        // k-steps of Q K^T

    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int s_keys[2][kBlockN];  // keys of gathered tiles, per stage
    __shared__ int s_carry[2];          // running max of gathered keys (publish_gathered_keys)
    __shared__ int s_warp0_max;

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int g = lane / 4;
    const int t4 = lane % 4;

    const CtaPos c = row_block_pos(p, blockIdx.z, blockIdx.y, blockIdx.x);
    const bool causal = p.causal != 0;
    const int row0 = c.m * kBlockM;

    const AttnTensorParams& tp = p.tensors;
    const HeadBases bases = head_bases(p, c);
    const uint64_t q_base = bases.q, k_base = bases.k, v_base = bases.v;

    // Stage s: K at [2s], V at [2s + 1]; Q borrows stage 1's K before the loop.
    const uint32_t smem = smem_u32(smem_raw);
    auto k_smem = [&](int stage) { return smem + (uint32_t)(2 * stage) * KvTile::kBytes; };
    auto v_smem = [&](int stage) { return smem + (uint32_t)(2 * stage + 1) * KvTile::kBytes; };
    auto load_tiles = [&](const TileRef& t, int stage) {
        if constexpr (Paged) {
            // Each row's key (published for a gathered tile, key0 + r up to seq_k for a
            // contiguous one) through the block table.
            auto key_of = [&](int r) { return t.gathered ? s_keys[stage][r] : contiguous_key(p, t, r); };
            load_rows<kBlockN, D, kThreads>(k_base, k_smem(stage), tid, [&](int r) {
                return paged_row(tp, k_base, tp.k_seq_stride, tp.k_page_stride, key_of(r));
            });
            load_rows<kBlockN, D, kThreads>(v_base, v_smem(stage), tid, [&](int r) {
                return paged_row(tp, v_base, tp.v_seq_stride, tp.v_page_stride, key_of(r));
            });
        } else {
            load_kv_tile<kBlockN, D, kThreads>(p, k_base, tp.k_seq_stride, t, s_keys[stage], k_smem(stage), tid);
            load_kv_tile<kBlockN, D, kThreads>(p, v_base, tp.v_seq_stride, t, s_keys[stage], v_smem(stage), tid);
        }
    };

    // This thread's two fragment rows' last visible keys.
    const int last_key[2] = {last_visible_key(row0 + warp * 16 + g, p.seq_q, p.seq_k, causal),
                             last_visible_key(row0 + warp * 16 + g + 8, p.seq_q, p.seq_k, causal)};
    const int no_mask_key0 = unmasked_tile_bound(p, row0);
    // The last key the warp's last row sees (padding rows past seq_q included: they only
    // widen the bound).
    const int warp_last_key = last_visible_key(row0 + warp * 16 + 15, p.seq_q, p.seq_k, causal);
    ScoreOptions score_opts;
    if constexpr (Opts) {
        score_opts.init(tp, row0 + warp * 16 + g, row0 + warp * 16 + g + 8, p.seq_q, p.seq_k);
    }
    const ScoreOptions* opts = Opts ? &score_opts : nullptr;

    float acc[kDimBlocks][4];
    zero_fragments(acc);
    RowState st;
    st.init();

    Source src;
    src.init(p, c);
    TileRef cur;
    bool has = src.next(p, cur);

    if (tid == 0) {
        s_carry[0] = s_carry[1] = -1;  // published by the first barrier of the first gathered tile
    }
    // Publishes the keys of a gathered tile before its loads are issued (uniform branch).
    auto stage_keys = [&](const TileRef& t, int stage) {
        if (t.gathered) {
            const int v = tid < kBlockN ? src.gathered_key(p, t.key0, tid) : -1;
            publish_gathered_keys(v, tid, stage, s_keys, s_carry, s_warp0_max);
        }
    };

    if (has) {
        load_q_tile<kBlockM, D, kThreads>(p, q_base, row0, k_smem(1), tid);
        cp_async_commit();
        stage_keys(cur, 0);
        load_tiles(cur, 0);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();

        uint32_t q_frag[kDimSteps][4];
        load_q_fragments<QTile>(q_frag, k_smem(1), warp * 16, lane);
        __syncthreads();  // stage 1 is free for the first prefetch

        // The lane's ldmatrix offsets in a K and a V tile, left to the optimizer: held for
        // the whole loop, they took the head_dim 64 kernel from 167 to 173 registers on sm_90.
        uint32_t k_off[4], v_off[4];
        k_lane_offsets<D, kKeyBlocks>(k_off, lane);
        v_lane_offsets<D, kKeyBlocks>(v_off, lane);

        int stage = 0;
        while (has) {
            TileRef nxt;
            const bool has_next = src.next(p, nxt);
            if (has_next) {
                stage_keys(nxt, stage ^ 1);
                load_tiles(nxt, stage ^ 1);
            }
            cp_async_commit();  // possibly empty, so "all but the newest group" is this tile
            cp_async_wait<1>();
            __syncthreads();

            // The warp computes only the 16-key steps that can hold a key one of its rows
            // sees: up to the list's end for a gathered tile; for a contiguous one, up to
            // seq_k and to the last key the warp's last row sees (the causal diagonal, which
            // a slash tile often overhangs).
            const bool gathered = Source::kGathers && cur.gathered;
            const int slots = gathered ? src.gathered_slots(cur.key0) : min(p.seq_k - cur.key0, warp_last_key - cur.key0 + 1);
            const int steps = slots <= 0 ? 0 : min((slots + 15) / 16, kBlockN / 16);
            static_assert(kBlockN == 64, "the width variants below cover 1 to 4 steps of 16 keys");
            const bool masked = cur.key0 > no_mask_key0;
            auto key_of = [&](int col) { return s_keys[stage][col]; };
            const uint32_t k_tile = k_smem(stage), v_tile = v_smem(stage);
            if (steps == 4) {
                one_block_tile<T, D, 64>(acc, st, q_frag, k_tile, v_tile, k_off, v_off, gathered, masked, key_of,
                                         last_key, cur.key0, t4, p.scale_log2, opts);
            } else if (steps == 3) {
                one_block_tile<T, D, 48>(acc, st, q_frag, k_tile, v_tile, k_off, v_off, gathered, masked, key_of,
                                         last_key, cur.key0, t4, p.scale_log2, opts);
            } else if (steps == 2) {
                one_block_tile<T, D, 32>(acc, st, q_frag, k_tile, v_tile, k_off, v_off, gathered, masked, key_of,
                                         last_key, cur.key0, t4, p.scale_log2, opts);
            } else if (steps == 1) {
                one_block_tile<T, D, 16>(acc, st, q_frag, k_tile, v_tile, k_off, v_off, gathered, masked, key_of,
                                         last_key, cur.key0, t4, p.scale_log2, opts);
            }
            __syncthreads();  // every warp is done with this stage before it is refilled

            cur = nxt;
            has = has_next;
            stage ^= 1;
        }
        cp_async_wait<0>();
    }

    // The output is staged in stage 0's K tile, a 16-row slice per warp: every warp has
    // passed the loop's last barrier, so no warp still reads it, and every cp.async has
    // completed.
    static_assert(kCtaWarps * OutTile<D>::kBytes == KvTile::kBytes, "the warps' output rows fill stage 0's K tile");
    if constexpr (Opts) {
        const float sink = sink_raw_of(tp, c.h, p.softmax_scale);
        fold_sinks<D / 8>(acc, st, {sink, sink}, p.scale_log2, t4);
    }
    write_mtile<T, D>(p, c, row0 + warp * 16, acc, st, k_smem(0) + (uint32_t)warp * OutTile<D>::kBytes, lane);
}

}  // namespace attn
