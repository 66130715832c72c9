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

// Sequence b's query rows in the packed q: `start` and `len`, both 0 when its bounds are
// not 0 <= start <= end <= total_q or its length passes the grid's `max_q`.
struct QueryRows {
    bool ok;
    int start, len;
};

__device__ __forceinline__ QueryRows query_rows(const AttnTensorParams& tp, int max_q, int b) {
    const int32_t* cq = reinterpret_cast<const int32_t*>(tp.cu_seqlens_q);
    const int q0 = cq[b], q1 = cq[b + 1];
    QueryRows r;
    r.ok = 0 <= q0 && q0 <= q1 && q1 <= tp.total_q && q1 - q0 <= max_q;
    r.start = r.ok ? q0 : 0;
    r.len = r.ok ? q1 - q0 : 0;
    return r;
}

// Points the view's q, out and LSE at packed query row `qs` (the LSE is [heads, total_q]).
__device__ __forceinline__ void start_queries_at(const AttnTensorParams& tp, int64_t qs, AttnTensorParams& v) {
    v.q = tp.q + 2 * (uint64_t)(qs * tp.q_seq_stride);
    v.out = tp.out + 2 * (uint64_t)(qs * tp.out_seq_stride);
    v.lse = tp.lse == 0 ? 0 : tp.lse + 4 * (uint64_t)qs;
}

// Makes `v` (a copy of the params P, which hold `tensors`, `seq_q` and `seq_k`) the view of
// sequence b, and returns its first packed query row. Bounds that are not 0 <= start <=
// end <= total, or a query length past the grid's seq_q, make the sequence empty: its
// CTAs exit, and nothing is read or written for it.
template <typename P>
__device__ __forceinline__ int64_t varlen_view(const P& p, int b, P& v) {
    v = p;
    const AttnTensorParams& tp = p.tensors;
    const QueryRows q = query_rows(tp, p.seq_q, b);
    const int32_t* ck = reinterpret_cast<const int32_t*>(tp.cu_seqlens_k);
    const int k0 = ck[b], k1 = ck[b + 1];
    const bool ok = q.ok && 0 <= k0 && k0 <= k1 && k1 <= tp.total_k;
    v.seq_q = ok ? q.len : 0;
    v.seq_k = ok ? k1 - k0 : 0;
    const int64_t qs = ok ? q.start : 0, ks = ok ? k0 : 0;
    start_queries_at(tp, qs, v.tensors);
    v.tensors.k = tp.k + 2 * (uint64_t)(ks * tp.k_seq_stride);
    v.tensors.v = tp.v + 2 * (uint64_t)(ks * tp.v_seq_stride);
    return qs;
}

// The paged form: varlen queries, K / V from page caches (AttnTensorParams::block_table).
// Makes `v` the view of sequence b (query rows as varlen_view; seqlens_k[b] keys; its own
// block-table row) and returns its first packed query row. A query range as varlen_view
// refuses, or a key count past max_pages pages, makes the sequence empty.
template <typename P>
__device__ __forceinline__ int64_t paged_view(const P& p, int b, P& v) {
    v = p;
    const AttnTensorParams& tp = p.tensors;
    const QueryRows q = query_rows(tp, p.seq_q, b);
    const int lk = reinterpret_cast<const int32_t*>(tp.seqlens_k)[b];
    const bool ok = q.ok && 0 <= lk && (int64_t)lk <= ((int64_t)tp.max_pages << tp.page_shift);
    v.seq_q = ok ? q.len : 0;
    v.seq_k = ok ? lk : 0;
    const int64_t qs = ok ? q.start : 0;
    start_queries_at(tp, qs, v.tensors);
    v.tensors.block_table = tp.block_table + 4 * (uint64_t)b * (uint64_t)tp.max_pages;
    return qs;
}

// Every thread of the CTA: cuts the view's keys at the first block-table entry, among the
// pages they span, outside [0, num_pages), so that nothing is computed from that page (or
// the ones after it). `first_bad` is shared scratch. Two barriers.
template <typename P>
__device__ __forceinline__ void cut_keys_at_bad_page(P& v, int* first_bad) {
    const AttnTensorParams& tp = v.tensors;
    const int pages = (int)(((int64_t)v.seq_k + (1 << tp.page_shift) - 1) >> tp.page_shift);
    const int32_t* row = reinterpret_cast<const int32_t*>(tp.block_table);
    if (threadIdx.x == 0) {
        *first_bad = 0x7fffffff;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < pages; j += blockDim.x) {
        const int page = __ldg(row + j);
        if (page < 0 || page >= tp.num_pages) {
            atomicMin(first_bad, j);
        }
    }
    __syncthreads();
    if (threadIdx.x == 0 && *first_bad < pages) {
        v.seq_k = *first_bad << tp.page_shift;
    }
    __syncthreads();
}

// The byte address of key `key`'s row (of the kv head at `base`) in a paged cache: token
// key & (page_size - 1) of the page the view's block-table row names for it, at page *
// page_stride + token * token_stride elements; 0 when the key is negative or its page is
// outside [0, num_pages) (never read). Block-table reads are cached.
__device__ __forceinline__ uint64_t paged_row(const AttnTensorParams& tp, uint64_t base, int64_t token_stride,
                                              int64_t page_stride, int key) {
    const int shift = tp.page_shift;
    const int page = key >= 0 ? __ldg(reinterpret_cast<const int32_t*>(tp.block_table) + (key >> shift)) : -1;
    if (page < 0 || page >= tp.num_pages) {
        return 0;
    }
    const int64_t token = key & ((1 << shift) - 1);
    return base + 2 * ((uint64_t)page * page_stride + token * token_stride);
}

}  // namespace attn
