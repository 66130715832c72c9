// Prefill attention: FlashAttention-2-style forward main loops on mma.sync m16n8k16, and
// the key-tile sources that plug into them (dense, block-sparse, vertical-slash; A-shape
// runs as block-sparse).
//
// A row block is kBlockM = 64 query rows of one (batch, query head), the index granularity
// of every sparse format. Every CTA has 4 warps (SA_PREFILL_THREADS):
// - dense and block-sparse: prefill/q_smem_loop.cuh. Up to head_dim 128 a CTA holds
//   SA_PREFILL_ROW_BLOCKS = 2 row blocks (128 rows, FlashAttention-2's forward CTA) and
//   walks the union of their key-tile lists, each K/V tile loaded once for both; each warp
//   owns two 16-row m-tiles of one row block, so every K/V fragment it reads feeds two
//   mma. At head_dim 256 a CTA holds one row block, a warp one m-tile.
// - vertical-slash: prefill/one_block_loop.cuh up to head_dim 128. A CTA holds one row
//   block (its gathered column tiles differ per row block), a warp one m-tile, with Q in
//   registers and K/V double-buffered. At head_dim 256 it runs the q_smem loop with one
//   row block: Q in registers and two K/V stages would not fit.
// K and V tiles hold kBlockN = 64 keys (128 for dense at head_dim 64). S = Q K^T and
// O += P V use f32 accumulators; the softmax is online, in exp2 with the scale folded in;
// the output is written once per row at the end, staged through shared memory for 16-byte
// stores. The sources are in prefill/sources.cuh. Every pattern also comes in a varlen
// form (packed sequences delimited by cu_seqlens) and a paged one (common/varlen.cuh).
#include "common/c_std.h"

#include "params.h"
#include "common/instantiate.cuh"
#include "prefill/q_smem_loop.cuh"
#include "prefill/one_block_loop.cuh"
#include "prefill/sources.cuh"
#include "common/varlen.cuh"

// One extern "C" kernel per (pattern, dtype, head_dim): every pattern at every pair of
// params.h's SA_FOR_EACH_DTYPE x SA_FOR_EACH_HEAD_DIM. The name is what src/plan/prefill.rs
// asks for (attn_fwd_<pattern>_<dtype>_hd<D>). The launch bounds say one CTA per SM is
// enough, so ptxas never caps registers below what the loop needs.
#define ATTN_KERNEL(pattern, loop, source, dtype_name, dtype, d)                           \
    extern "C" __global__ void __launch_bounds__(attn::kCtaThreads, 1)                     \
        attn_fwd_##pattern##_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) { \
        attn::loop<dtype, d, attn::source>(p);                                             \
    }
// The `_opt` variant of a padded kernel: the same loop with the score options compiled in
// (common/score_options.cuh), attn_fwd_<pattern>_opt_<dtype>_hd<D>.
#define ATTN_OPT_KERNEL(pattern, loop, source, dtype_name, dtype, d)                              \
    extern "C" __global__ void __launch_bounds__(attn::kCtaThreads, 1)                            \
        attn_fwd_##pattern##_opt_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) {    \
        attn::loop<dtype, d, attn::source, false, false, true>(p);                                \
    }

namespace attn {

// The varlen and paged forms' prologue: builds sequence blockIdx.z's view of the params in
// shared memory (common/varlen.cuh; `scratch` is shared too), and says whether the CTA has
// rows in that sequence (its first row, at blockIdx.x * RowsPerCta, before the sequence's
// end). The answer is the same for every thread. A paged view's keys are cut at a bad
// block-table entry.
template <bool Paged, int RowsPerCta>
__device__ __forceinline__ bool sequence_view(const AttnParams& p, AttnParams& view, int* scratch) {
    if (threadIdx.x == 0) {
        if constexpr (Paged) {
            paged_view(p, blockIdx.z, view);
        } else {
            varlen_view(p, blockIdx.z, view);
        }
    }
    __syncthreads();
    if ((int64_t)blockIdx.x * RowsPerCta >= view.seq_q) {
        return false;
    }
    if constexpr (Paged) {
        cut_keys_at_bad_page(view, scratch);
    }
    return true;
}

// The sources of the dense and block-sparse kernels at head_dim D (one name each, for the
// instantiation macros).
template <int D>
using DenseSourceFor = DenseSource<dense_key_tile(D), prefill_row_blocks(D)>;
template <int D>
using BlockSparseSourceFor = BlockSparseSource<prefill_row_blocks(D)>;
// The `_opt` dense kernels take 64-key tiles at every head_dim: at head_dim 64 the 128-key
// tiles' scores and the options' registers did not fit together on sm_90 (spills). The
// host's shared memory for the 128-key tiles covers them (plan::prefill::key_tile).
template <int D>
using DenseOptSourceFor = DenseSource<kBlockN, prefill_row_blocks(D)>;

// The vertical-slash loop at head_dim D: the one-block loop (Q in registers, K/V double
// buffered) while Q fits in registers, the q_smem loop with one row block above.
template <typename T, int D, typename Source, bool View = false, bool Paged = false, bool Opts = false>
__device__ __forceinline__ void attention_fwd_gathering(const AttnParams& p) {
    if constexpr (D <= SA_PREFILL_PAIR_MAX_HEAD_DIM) {
        attention_fwd_one_block<T, D, Source, View, Paged, Opts>(p);
    } else {
        attention_fwd_q_smem<T, D, Source, View, Paged, Opts>(p);
    }
}

}  // namespace attn

// The varlen and paged forms, attn_fwd_<pattern>_<form>_<dtype>_hd<D>: each CTA runs the
// pattern's loop on its sequence's view of the params (attn::sequence_view), or leaves at
// once when its rows start past the sequence's end. Paged: varlen queries, K / V from page
// caches.
// `form` is the name's infix (varlen, paged, varlen_opt, paged_opt), `opts` whether the
// score options are compiled in.
#define ATTN_VIEW_KERNEL(form, paged, opts, pattern, loop, source, dtype_name, dtype, d)             \
    extern "C" __global__ void __launch_bounds__(attn::kCtaThreads, 1)                               \
        attn_fwd_##pattern##_##form##_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) {  \
        __shared__ AttnParams view;                                                                  \
        __shared__ int scratch;                                                                      \
        if (attn::sequence_view<paged, attn::source::kRowBlocks * attn::kBlockM>(p, view, &scratch)) { \
            attn::loop<dtype, d, attn::source, true, paged, opts>(view);                             \
        }                                                                                            \
    }
#define ATTN_VARLEN_KERNEL(...) ATTN_VIEW_KERNEL(varlen, false, false, __VA_ARGS__)
#define ATTN_PAGED_KERNEL(...) ATTN_VIEW_KERNEL(paged, true, false, __VA_ARGS__)
#define ATTN_VARLEN_OPT_KERNEL(...) ATTN_VIEW_KERNEL(varlen_opt, false, true, __VA_ARGS__)
#define ATTN_PAGED_OPT_KERNEL(...) ATTN_VIEW_KERNEL(paged_opt, true, true, __VA_ARGS__)

// The contiguous patterns, in any form (`kernel`).
#define SA_PAIR_KERNELS(kernel, dtype_name, dtype, d)                                    \
    kernel(dense, attention_fwd_q_smem, DenseSourceFor<d>, dtype_name, dtype, d)          \
    kernel(block_sparse, attention_fwd_q_smem, BlockSparseSourceFor<d>, dtype_name, dtype, d)

// The `_opt` forms of the contiguous patterns.
#define SA_PAIR_OPT_KERNELS(kernel, dtype_name, dtype, d)                                 \
    kernel(dense, attention_fwd_q_smem, DenseOptSourceFor<d>, dtype_name, dtype, d)       \
    kernel(block_sparse, attention_fwd_q_smem, BlockSparseSourceFor<d>, dtype_name, dtype, d)

// Vertical-slash comes in every form too (its index converted per sequence).
#define SA_VS_KERNEL(kernel, dtype_name, dtype, d) \
    kernel(vertical_slash, attention_fwd_gathering, VerticalSlashSource, dtype_name, dtype, d)

#define SA_INSTANTIATE(dtype_name, dtype, d)                      \
    SA_PAIR_KERNELS(ATTN_KERNEL, dtype_name, dtype, d)            \
    SA_VS_KERNEL(ATTN_KERNEL, dtype_name, dtype, d)               \
    SA_PAIR_KERNELS(ATTN_VARLEN_KERNEL, dtype_name, dtype, d)     \
    SA_VS_KERNEL(ATTN_VARLEN_KERNEL, dtype_name, dtype, d)        \
    SA_PAIR_KERNELS(ATTN_PAGED_KERNEL, dtype_name, dtype, d)      \
    SA_VS_KERNEL(ATTN_PAGED_KERNEL, dtype_name, dtype, d)         \
    SA_PAIR_OPT_KERNELS(ATTN_OPT_KERNEL, dtype_name, dtype, d)        \
    SA_VS_KERNEL(ATTN_OPT_KERNEL, dtype_name, dtype, d)               \
    SA_PAIR_OPT_KERNELS(ATTN_VARLEN_OPT_KERNEL, dtype_name, dtype, d) \
    SA_VS_KERNEL(ATTN_VARLEN_OPT_KERNEL, dtype_name, dtype, d)        \
    SA_PAIR_OPT_KERNELS(ATTN_PAGED_OPT_KERNEL, dtype_name, dtype, d)  \
    SA_VS_KERNEL(ATTN_PAGED_OPT_KERNEL, dtype_name, dtype, d)
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE
