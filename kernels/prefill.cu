// Prefill attention: FlashAttention-2-style forward main loops on mma.sync m16n8k16, and
// the key-tile sources that plug into them (dense, block-sparse, vertical-slash; A-shape
// runs as block-sparse).
//
// A row block is kBlockM = 64 query rows of one (batch, query head), the index granularity
// of every sparse format. Every CTA has 4 warps (SA_PREFILL_THREADS):
// - dense and block-sparse: prefill/block_pair_loop.cuh. A CTA holds SA_PREFILL_ROW_BLOCKS
//   = 2 row blocks (128 rows, FlashAttention-2's forward CTA) and walks the union of their
//   key-tile lists, each K/V tile loaded once for both; each warp owns a 16-row m-tile in
//   each row block, so every K/V fragment it reads feeds two mma.
// - vertical-slash: prefill/one_block_loop.cuh. A CTA holds one row block (its gathered
//   column tiles differ per row block), a warp one m-tile, with Q in registers.
// K and V tiles hold kBlockN = 64 keys. S = Q K^T and O += P V use f32 accumulators; the
// softmax is online, in exp2 with the scale folded in; the output is written once per row
// at the end, staged through shared memory for 16-byte stores. The sources are in
// prefill/sources.cuh. Dense and block-sparse also come in a varlen form (packed
// sequences delimited by cu_seqlens; common/varlen.cuh).
#include "common/c_std.h"

#include "params.h"
#include "common/instantiate.cuh"
#include "prefill/block_pair_loop.cuh"
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

// The varlen form, attn_fwd_<pattern>_varlen_<dtype>_hd<D> (common/varlen.cuh): each CTA
// builds its sequence's view of the params in shared memory, leaves at once when its rows
// start past the sequence's end, and runs the same loop on the view.
#define ATTN_VARLEN_KERNEL(pattern, loop, source, dtype_name, dtype, d)                                \
    extern "C" __global__ void __launch_bounds__(attn::kCtaThreads, 1)                                 \
        attn_fwd_##pattern##_varlen_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) {      \
        __shared__ AttnParams view;                                                                    \
        if (threadIdx.x == 0) {                                                                        \
            attn::varlen_view(p, blockIdx.z, view);                                                    \
        }                                                                                              \
        __syncthreads();                                                                               \
        if ((int64_t)blockIdx.x * attn::source::kRowBlocks * attn::kBlockM >= view.seq_q) {          \
            return;                                                                                    \
        }                                                                                              \
        attn::loop<dtype, d, attn::source, true>(view);                                                \
    }

// The block-pair patterns, padded or varlen (`kernel`).
// The paged form, attn_fwd_<pattern>_paged_<dtype>_hd<D>: varlen queries, K / V from page
// caches (common/varlen.cuh, paged_view); the keys stop at a bad block-table entry.
#define ATTN_PAGED_KERNEL(pattern, loop, source, dtype_name, dtype, d)                                  \
    extern "C" __global__ void __launch_bounds__(attn::kCtaThreads, 1)                                 \
        attn_fwd_##pattern##_paged_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) {       \
        __shared__ AttnParams view;                                                                    \
        __shared__ int first_bad;                                                                      \
        if (threadIdx.x == 0) {                                                                        \
            attn::paged_view(p, blockIdx.z, view);                                                     \
        }                                                                                              \
        __syncthreads();                                                                               \
        if ((int64_t)blockIdx.x * attn::source::kRowBlocks * attn::kBlockM >= view.seq_q) {          \
            return;                                                                                    \
        }                                                                                              \
        attn::cut_keys_at_bad_page(view, &first_bad);                                                  \
        attn::loop<dtype, d, attn::source, true, true>(view);                                          \
    }

#define SA_PAIR_KERNELS(kernel, dtype_name, dtype, d)                                                       \
    kernel(dense, attention_fwd_block_pair, DenseSourcePair<attn::dense_key_tile(d)>, dtype_name, dtype, d) \
    kernel(block_sparse, attention_fwd_block_pair, BlockSparseSourcePair, dtype_name, dtype, d)

// Vertical-slash comes padded and varlen (its index converted per sequence); paged K/V
// only for the block-pair patterns.
#define SA_VS_KERNEL(kernel, dtype_name, dtype, d) \
    kernel(vertical_slash, attention_fwd_one_block, VerticalSlashSource, dtype_name, dtype, d)

#define SA_INSTANTIATE(dtype_name, dtype, d)                      \
    SA_PAIR_KERNELS(ATTN_KERNEL, dtype_name, dtype, d)            \
    SA_VS_KERNEL(ATTN_KERNEL, dtype_name, dtype, d)               \
    SA_PAIR_KERNELS(ATTN_VARLEN_KERNEL, dtype_name, dtype, d)     \
    SA_VS_KERNEL(ATTN_VARLEN_KERNEL, dtype_name, dtype, d)        \
    SA_PAIR_KERNELS(ATTN_PAGED_KERNEL, dtype_name, dtype, d)
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE
