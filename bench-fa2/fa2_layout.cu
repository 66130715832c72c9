// Prints, as the host compiler lays them out, the offset and size of every Flash_fwd_params
// field the Rust launcher sets, the struct's size and alignment, and the constants of the
// kernel traits in fa2_traits.h. scripts/fa2-ptx.sh compiles it with nvcc 13.0 (host: g++),
// against the same flash.h and shims as fa2_fwd.cu, runs it, and turns the output into
// bench-fa2/generated/fa2_layout.rs. Written for this project.
//
// Output lines: `field <name> <offset> <size>`, `struct <size> <align>`,
// `traits <head_dim> <kBlockM> <kBlockN> <kNWarps> <kNThreads> <kSmemSize>`.

#include <cstddef>
#include <cstdio>

#include "flash.h"
#include "fa2_traits.h"

using P = flash::Flash_fwd_params;

#define FIELD(f) std::printf("field %s %zu %zu\n", #f, offsetof(P, f), sizeof(P::f))

template <int D> void traits() {
    using T = typename fa2_sim::Traits<D>::type;
    static_assert(T::kHeadDim == D, "traits head_dim");
    std::printf("traits %d %d %d %d %d %d\n", T::kHeadDim, T::kBlockM, T::kBlockN, T::kNWarps, T::kNThreads, int(T::kSmemSize));
}

int main() {
    // Qkv_params
    FIELD(q_ptr); FIELD(k_ptr); FIELD(v_ptr);
    FIELD(q_batch_stride); FIELD(k_batch_stride); FIELD(v_batch_stride);
    FIELD(q_row_stride); FIELD(k_row_stride); FIELD(v_row_stride);
    FIELD(q_head_stride); FIELD(k_head_stride); FIELD(v_head_stride);
    FIELD(h); FIELD(h_k); FIELD(h_h_k_ratio);
    // Flash_fwd_params
    FIELD(o_ptr); FIELD(oaccum_ptr);
    FIELD(o_batch_stride); FIELD(o_row_stride); FIELD(o_head_stride);
    FIELD(p_ptr); FIELD(softmax_lse_ptr); FIELD(softmax_lseaccum_ptr);
    FIELD(b); FIELD(seqlen_q); FIELD(seqlen_k); FIELD(seqlen_knew); FIELD(d);
    FIELD(seqlen_q_rounded); FIELD(seqlen_k_rounded); FIELD(d_rounded); FIELD(rotary_dim); FIELD(total_q);
    FIELD(scale_softmax); FIELD(scale_softmax_log2);
    FIELD(cu_seqlens_q); FIELD(cu_seqlens_k); FIELD(leftpad_k); FIELD(seqused_k); FIELD(blockmask);
    FIELD(knew_ptr); FIELD(vnew_ptr);
    FIELD(rotary_cos_ptr); FIELD(rotary_sin_ptr); FIELD(cache_batch_idx);
    FIELD(block_table); FIELD(block_table_batch_stride); FIELD(page_block_size);
    FIELD(p_dropout); FIELD(p_dropout_in_uint8_t); FIELD(rp_dropout); FIELD(scale_softmax_rp_dropout);
    FIELD(window_size_left); FIELD(window_size_right); FIELD(softcap);
    FIELD(philox_args); FIELD(rng_state);
    FIELD(is_bf16); FIELD(is_causal); FIELD(is_seqlens_k_cumulative); FIELD(is_rotary_interleaved);
    FIELD(num_splits);
    FIELD(alibi_slopes_ptr); FIELD(alibi_slopes_batch_stride);
    FIELD(unpadded_lse); FIELD(seqlenq_ngroups_swapped);
    std::printf("struct %zu %zu\n", sizeof(P), alignof(P));
    traits<128>();
    traits<64>();
    return 0;
}
