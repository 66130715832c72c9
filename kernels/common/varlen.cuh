// Varlen (packed) launches: the params one sequence of the batch sees.
//
// A varlen launch packs the batch's sequences as rows of q / out `[total_q, heads, D]` and
// of k / v `[total_k, heads_kv, D]`, delimited by cu_seqlens_q / cu_seqlens_k on the device
// (AttnTensorParams); the grid is sized for the longest sequence (seq_q, seq_k of the
// params). Each CTA reads its sequence's bounds once and runs the same code as a padded
// launch on a view of the params in shared memory: seq_q / seq_k are the sequence's own,
// the tensor addresses start at its first row (the host passes batch strides of 0), and
// the LSE at its first column. Index tensors keep their batch dimension (block-sparse:
// [batch, H, MB], MB from the longest sequence) or are packed like q (top-k, whose view
// also starts at the sequence's first index row).
#pragma once
#include "common/c_std.h"

#include "params.h"

namespace attn {

// Makes `v` (a copy of the params P, which hold `tensors`, `seq_q` and `seq_k`) the view of
// sequence b, and returns its first packed query row. Bounds that are not 0 <= start <=
// end <= total, or a query length past the grid's seq_q, make the sequence empty: its
// CTAs exit, and nothing is read or written for it.
template <typename P>
__device__ __forceinline__ int64_t varlen_view(const P& p, int b, P& v) {
    v = p;
    const AttnTensorParams& tp = p.tensors;
    const int32_t* cq = reinterpret_cast<const int32_t*>(tp.cu_seqlens_q);
    const int32_t* ck = reinterpret_cast<const int32_t*>(tp.cu_seqlens_k);
    const int q0 = cq[b], q1 = cq[b + 1], k0 = ck[b], k1 = ck[b + 1];
    const bool ok = 0 <= q0 && q0 <= q1 && q1 <= tp.total_q && q1 - q0 <= p.seq_q && 0 <= k0 && k0 <= k1 &&
                    k1 <= tp.total_k;
    v.seq_q = ok ? q1 - q0 : 0;
    v.seq_k = ok ? k1 - k0 : 0;
    const int64_t qs = ok ? q0 : 0, ks = ok ? k0 : 0;
    v.tensors.q = tp.q + 2 * (uint64_t)(qs * tp.q_seq_stride);
    v.tensors.out = tp.out + 2 * (uint64_t)(qs * tp.out_seq_stride);
    v.tensors.k = tp.k + 2 * (uint64_t)(ks * tp.k_seq_stride);
    v.tensors.v = tp.v + 2 * (uint64_t)(ks * tp.v_seq_stride);
    v.tensors.lse = tp.lse == 0 ? 0 : tp.lse + 4 * (uint64_t)qs;
    return qs;
}

}  // namespace attn
