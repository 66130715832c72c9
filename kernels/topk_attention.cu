// Top-k token attention (DSA, NSA's selection branch, HiP): query row i of kv head hk
// attends exactly the keys listed in indices[b, i, hk, :]. The listed keys are shared by
// the whole GQA group of hk, so the group's query heads are packed as the M dimension of
// the mma (16 rows per warp): each gathered K/V row is loaded once and used by every head
// of the group.
//
// One warp per (b, i, hk, chunk of 16 heads). Keys are walked 32 index slots at a time:
// lane l validates slot l and publishes its key; the K and V rows of the tile are then
// gathered into shared memory with cp.async (zero-filled for skipped slots), double
// buffered, and the same pieces as kernels/prefill.cu load and compute the tile (common/
// smem_tile.cuh, tile_math.cuh, online_softmax.cuh, epilogue.cuh). Skipped slots (-1, out
// of range, causally hidden) are masked to -inf. The 16 heads, 32 slots and one warp are
// params.h's SA_TOPK_HEADS_PER_WARP, SA_TOPK_TILE_KEYS and SA_TOPK_THREADS.
// Repeated keys in a row would be counted twice: the host rejects them before upload.
#include "common/c_std.h"

#include "params.h"
#include "common/cp_async.cuh"
#include "common/epilogue.cuh"
#include "common/gathered_tiles.cuh"
#include "common/instantiate.cuh"
#include "common/mask.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/score_options.cuh"
#include "common/smem_tile.cuh"
#include "common/tile_math.cuh"
#include "common/varlen.cuh"

namespace topk {

using namespace attn;

constexpr int kRows = SA_TOPK_HEADS_PER_WARP;  // query heads per warp (mma M)
constexpr int kSlots = SA_TOPK_TILE_KEYS;      // index slots (keys) per tile
constexpr int kThreads = SA_TOPK_THREADS;      // one warp
static_assert(kThreads == 32, "one warp per CTA: lane = threadIdx.x, and __syncthreads is a warp barrier");
static_assert(kRows == 16, "the group's query heads are the 16 rows of one warp's mma");
static_assert(kSlots == kThreads, "lane l validates and publishes slot l of a tile");

// Unroll count of the K/V gather loops (load_tile_rows' knob): fully unrolled, the
// precomputed addresses of every pass stay live across the main loop (25 more registers at
// head_dim 64). Of 2, 4 and 8, 2 is the count that uses no more registers than the
// hand-written loop it replaced, on every head_dim and target (ptxas report).
constexpr int kKvLoadUnroll = 2;

// Shared memory: K stage 0, V stage 0, K stage 1, V stage 1, then Q.
template <int D>
struct Layout {
    using KvTile = SmemTile<kSlots, D>;  // gathered keys
    using QTile = SmemTile<kRows, D>;    // the warp's query heads
    static constexpr int kBytes = 4 * KvTile::kBytes + QTile::kBytes;
};

// `Paged`: K and V come from page caches through the view's block-table row
// (common/varlen.cuh); a key whose page is outside the caches is skipped like -1. `Opts`:
// the `_opt` variant, with the score options (common/score_options.cuh).
template <typename T, int D, bool Paged = false, bool Opts = false>
__device__ __forceinline__ void topk_attention_fwd(const TopkParams& p) {
    using L = Layout<D>;
    using KvTile = typename L::KvTile;
    using QTile = typename L::QTile;
    constexpr int kDimBlocks = D / 8;
    constexpr int kKeyBlocks = kSlots / 8;
    constexpr int kDimSteps = D / 16;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int s_keys[2][kSlots];

    const int lane = threadIdx.x;
    const int g = lane / 4;
    const int t4 = lane % 4;
    const int i = blockIdx.x;
    const int b = blockIdx.z;
    if (p.heads_kv <= 0 || p.head_chunks <= 0 || p.heads_q < p.heads_kv) {
        return;
    }
    const int hk = blockIdx.y / p.head_chunks;
    const int chunk = blockIdx.y % p.head_chunks;
    const int group = p.heads_q / p.heads_kv;
    const int head0 = hk * group + chunk * kRows;       // first query head of this warp
    const int rows = min(kRows, group - chunk * kRows);  // real rows (heads) of this warp
    const bool causal = p.causal != 0;
    const int last_key = last_visible_key(i, p.seq_q, p.seq_k, causal);

    const uint32_t smem = smem_u32(smem_raw);
    auto k_smem = [&](int stage) { return smem + (uint32_t)(2 * stage) * KvTile::kBytes; };
    auto v_smem = [&](int stage) { return smem + (uint32_t)(2 * stage + 1) * KvTile::kBytes; };
    const uint32_t q_smem = smem + 4u * KvTile::kBytes;

    const AttnTensorParams& tp = p.tensors;
    const uint64_t k_base = tp.k + 2 * ((uint64_t)b * tp.k_batch_stride + (uint64_t)hk * tp.k_head_stride);
    const uint64_t v_base = tp.v + 2 * ((uint64_t)b * tp.v_batch_stride + (uint64_t)hk * tp.v_head_stride);
    const int32_t* slots = reinterpret_cast<const int32_t*>(p.indices) +
                           ((b * p.indices_batch_stride + i) * p.heads_kv + hk) * (int64_t)p.topk;
    const int n_tiles = p.topk > 0 ? (p.topk + kSlots - 1) / kSlots : 0;

    // Lane l validates slot l of tile `tile` and publishes its key (-1: skipped).
    auto stage_keys = [&](int tile, int stage) {
        const int slot = tile * kSlots + lane;
        int key = -1;
        if (slot < p.topk) {
            key = __ldg(slots + slot);
            key = (key >= 0 && key <= last_key) ? key : -1;
            if constexpr (Opts) {
                // The window drops a slot like -1: every head of the warp shares row i's window,
                // so no per-score mask (and no register for it across the loop) is needed.
                key = key >= ScoreOptions::window_start(tp.window_left, i, p.seq_q, p.seq_k) ? key : -1;
            }
            if constexpr (Paged) {
                key = paged_row(tp, k_base, tp.k_seq_stride, tp.k_page_stride, key) != 0 ? key : -1;
            }
        }
        s_keys[stage][lane] = key;
        __syncthreads();
    };
    // Gathers the K and V rows of a tile (keys published in s_keys[stage]; -1 zero-fills).
    auto load_tile = [&](int stage) {
        auto key_of = [&](int row) { return s_keys[stage][row]; };
        if constexpr (Paged) {
            load_rows<kSlots, D, kThreads, kKvLoadUnroll>(k_base, k_smem(stage), lane, [&](int row) {
                return paged_row(tp, k_base, tp.k_seq_stride, tp.k_page_stride, key_of(row));
            });
            load_rows<kSlots, D, kThreads, kKvLoadUnroll>(v_base, v_smem(stage), lane, [&](int row) {
                return paged_row(tp, v_base, tp.v_seq_stride, tp.v_page_stride, key_of(row));
            });
        } else {
            load_tile_rows<kSlots, D, kThreads, kKvLoadUnroll>(k_base, tp.k_seq_stride, k_smem(stage), lane, key_of);
            load_tile_rows<kSlots, D, kThreads, kKvLoadUnroll>(v_base, tp.v_seq_stride, v_smem(stage), lane, key_of);
        }
    };

    float acc[kDimBlocks][4];
    zero_fragments(acc);
    RowState st;
    st.init();
    // The softcap; the window is applied to the slots (stage_keys).
    ScoreOptions score_opts;
    if constexpr (Opts) {
        score_opts.softcap_in = tp.softcap_in;
    }

    if (n_tiles > 0 && last_key >= 0) {
        // Q: row r is query head head0 + r of query row i (rows q_head_stride apart);
        // padding rows are zero.
        const uint64_t q_row0 = tp.q + 2 * ((uint64_t)b * tp.q_batch_stride + (uint64_t)i * tp.q_seq_stride);
        load_tile_rows<kRows, D, kThreads>(q_row0, tp.q_head_stride, q_smem, lane,
                                           [&](int row) { return row < rows ? head0 + row : -1; });
        cp_async_commit();
        stage_keys(0, 0);
        load_tile(0);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        uint32_t q_frag[kDimSteps][4];
        load_q_fragments<QTile>(q_frag, q_smem, 0, lane);

        run_gathered_tiles(n_tiles, stage_keys, load_tile, [&](int stage) {
            float s[kKeyBlocks][4];
            tile_scores<T, D>(s, q_frag, k_smem(stage), lane);
            // Every head of the warp shares query row i, hence one visibility rule.
            auto key_of = [&](int col) { return s_keys[stage][col]; };
            if constexpr (Opts) {
                score_opts.softcap(s);
            }
            mask_tile(s, t4, key_of, last_key, last_key);
            online_softmax_step<kKeyBlocks, kDimBlocks, false>(s, acc, st, p.scale_log2);
            tile_pv<T, D>(s, acc, v_smem(stage), lane);
        });
    }

    // The output is staged in stage 0's K buffer: the loop's last barrier has passed and
    // every cp.async has completed, so nothing reads or fills it any more.
    static_assert(OutTile<D>::kBytes <= KvTile::kBytes, "the warp's output rows fit one K tile");
    OutRows out;  // row r is query head head0 + r of query row i
    out.first = tp.out + 2 * ((uint64_t)b * tp.out_batch_stride + (uint64_t)i * tp.out_seq_stride +
                              (uint64_t)head0 * tp.out_head_stride);
    out.stride = 2 * tp.out_head_stride;
    out.count = rows;
    const int head[2] = {head0 + g, head0 + g + 8};
    if constexpr (Opts) {
        // Padding rows (past the group's heads) take no sink: their head does not exist.
        const float sink[2] = {g < rows ? sink_raw_of(tp, head[0], p.softmax_scale) : -INFINITY,
                               g + 8 < rows ? sink_raw_of(tp, head[1], p.softmax_scale) : -INFINITY};
        fold_sinks<kDimBlocks>(acc, st, sink, p.scale_log2, t4);
    }
    float lse[2];
    write_output<T, D>(acc, st, k_smem(0), lane, p.scale_log2, out, lse);
    if (tp.lse != 0 && t4 == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (g + 8 * r < rows) {
                reinterpret_cast<float*>(tp.lse)[b * tp.lse_batch_stride + head[r] * tp.lse_head_stride + i] = lse[r];
            }
        }
    }
}

}  // namespace topk

namespace topk {

// The varlen and paged forms: sequence blockIdx.z's view of the params in shared memory
// (common/varlen.cuh), its index rows starting at its first packed row. False when the
// CTA's query row is past the sequence's end (the same for every thread).
template <bool Paged>
__device__ __forceinline__ bool sequence_view(const TopkParams& p, TopkParams& view) {
    if (threadIdx.x == 0) {
        const int64_t q0 = Paged ? attn::paged_view(p, blockIdx.z, view) : attn::varlen_view(p, blockIdx.z, view);
        view.indices = p.indices + 4 * (uint64_t)(q0 * p.heads_kv * (int64_t)p.topk);
    }
    __syncthreads();
    return (int)blockIdx.x < view.seq_q;
}

}  // namespace topk

// One extern "C" kernel per pair of params.h's SA_FOR_EACH_DTYPE x SA_FOR_EACH_HEAD_DIM;
// src/plan/topk_attention.rs asks for topk_attn_fwd_<dtype>_hd<D>, and for the varlen and
// paged forms topk_attn_fwd_<form>_<dtype>_hd<D>: packed sequences, the indices packed
// like q; a CTA past its sequence's last row leaves at once.
// The `_opt` variants (score options compiled in) are topk_attn_fwd[_<form>]_opt_<dtype>_hd<D>.
#define TOPK_VIEW_KERNEL(form, paged, opts, dtype_name, dtype, d)                                \
    extern "C" __global__ void __launch_bounds__(topk::kThreads)                                \
        topk_attn_fwd_##form##_##dtype_name##_hd##d(const __grid_constant__ TopkParams p) {     \
        __shared__ TopkParams view;                                                             \
        if (topk::sequence_view<paged>(p, view)) {                                              \
            topk::topk_attention_fwd<dtype, d, paged, opts>(view);                              \
        }                                                                                       \
    }
#define SA_INSTANTIATE(dtype_name, dtype, d)                                                 \
    extern "C" __global__ void __launch_bounds__(topk::kThreads)                            \
        topk_attn_fwd_##dtype_name##_hd##d(const __grid_constant__ TopkParams p) {          \
        topk::topk_attention_fwd<dtype, d>(p);                                              \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(topk::kThreads)                            \
        topk_attn_fwd_opt_##dtype_name##_hd##d(const __grid_constant__ TopkParams p) {      \
        topk::topk_attention_fwd<dtype, d, false, true>(p);                                 \
    }                                                                                       \
    TOPK_VIEW_KERNEL(varlen, false, false, dtype_name, dtype, d)                            \
    TOPK_VIEW_KERNEL(paged, true, false, dtype_name, dtype, d)                              \
    TOPK_VIEW_KERNEL(varlen_opt, false, true, dtype_name, dtype, d)                         \
    TOPK_VIEW_KERNEL(paged_opt, true, true, dtype_name, dtype, d)
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE
