// Token top-k selection (DSA / NSA-style indices) from a caller's score tensor.
//
// topk_select_<f32|bf16>: for every row of scores [rows, seq_k] (f32 or bf16), the indices of its k largest
// scores, written in ascending key order to indices [rows, k], -1 padding a row with fewer
// than k candidates (TopkSelectParams in params.h). The exact result is the host rule in
// src/pattern/topk_select.rs; this kernel must match it bit for bit.
//
// Order: each score maps to a 32-bit key whose unsigned order is the score order (sign bit
// flipped for positives, every bit inverted for negatives; every NaN maps to 0, below -inf),
// and ties on the key go to the lower index (a bf16 score is widened to its f32 bits, which
// is exact, so both dtypes share one order). The key is taken from the raw bits, never from
// a float comparison, so --use_fast_math (denormal flushing, NaN shortcuts) cannot change
// the order, and -0.0 ranks just below +0.0 (IEEE totalOrder).
//
// Algorithm, one CTA per row, nothing in shared memory that grows with seq_k:
// 1. Radix select of the threshold key T, the key of the k-th largest element: four passes
//    over the row from global memory, each a shared-memory histogram of the next 8-bit digit
//    of the keys that match the digits chosen so far, then a block scan of the buckets from
//    the top to find the one holding the k-th element. After the passes, `need` is how many
//    elements equal to T belong to the top k (those above T all do).
// 2. Compaction in index order: chunks of one element per thread; a block scan ranks the
//    elements equal to T (the first `need` of them in index order are taken, which is the
//    lower-index tie rule) and a second scan places every taken element. Every count comes
//    from scans, never from the order atomics happen in, so the output is the same for any
//    schedule.
#include "common/c_std.h"

#include "common/index_rows.cuh"
#include "common/radix_select.cuh"
#include "params.h"

namespace topk_select {

template <typename Scores, typename Elem>
__device__ __forceinline__ void select_row(const TopkSelectParams& p) {
    // The host validates all of this; a kernel launched with other params does nothing
    // rather than address memory it was not given.
    if (p.rows <= 0 || p.seq_q <= 0 || p.heads <= 0 || p.seq_k <= 0 || p.k <= 0 || (int64_t)blockIdx.x >= p.rows) {
        return;
    }
    const int row = (int)blockIdx.x;
    const int query = (row / p.heads) % p.seq_q;
    // Candidates are keys [0, n): all of them, or those up to the bottom-right diagonal.
    int64_t n = p.seq_k;
    if (p.causal != 0) {
        const int64_t limit = (int64_t)query + p.seq_k - p.seq_q + 1;
        n = limit < 0 ? 0 : (limit < n ? limit : n);
    }
    const Scores scores{reinterpret_cast<const Elem*>(p.scores) + (int64_t)row * p.seq_k};
    select_topk(scores, n, p.k, reinterpret_cast<int32_t*>(p.indices) + (int64_t)row * p.k);
}

// The scores of one index head over `group` score heads (GQA: one index set per kv head from
// per-query-head scores): key j's f32 sum over the group, heads ascending, so every pass of
// the radix select sees the same bits. A group of one is the score itself (no add, which
// would turn -0.0 into +0.0). The sum ranks like the group's mean, but for the ties the
// division would add.
template <typename Scores, typename Elem>
struct GroupScores {
    const Elem* row;       // the group's first score head
    int64_t head_stride;   // seq_k
    int group;
    __device__ __forceinline__ uint32_t bits(int64_t j) const {
        const uint32_t first = Scores{row}.bits(j);
        if (group == 1) {
            return first;
        }
        float acc = __uint_as_float(first);
        for (int h = 1; h < group; ++h) {
            acc = __fadd_rn(acc, __uint_as_float(Scores{row + h * head_stride}.bits(j)));
        }
        return __float_as_uint(acc);
    }
};

// A chunk of query rows (TopkSelectRowsParams): CTA x selects head x % heads of row
// first_row + x / heads, over that row's candidates (kernels/common/index_rows.cuh).
template <typename Scores, typename Elem>
__device__ __forceinline__ void select_chunk_row(const TopkSelectRowsParams& p) {
    const IndexRowsParams& g = p.rows;
    if (g.rows <= 0 || p.heads <= 0 || p.group <= 0 || g.seq_k <= 0 || p.k <= 0 || g.first_row < 0 ||
        (int64_t)g.first_row + g.rows > g.total_q || (int64_t)blockIdx.x >= (int64_t)g.rows * p.heads) {
        return;
    }
    const int local = (int)blockIdx.x / p.heads;
    const int head = (int)blockIdx.x % p.heads;
    const int r = g.first_row + local;
    const index_rows::RowSeq s = index_rows::resolve(g, r);
    const GroupScores<Scores, Elem> scores{
        reinterpret_cast<const Elem*>(p.scores) + (int64_t)blockIdx.x * p.group * g.seq_k, (int64_t)g.seq_k, p.group};
    select_topk(scores, (int64_t)s.n, p.k, reinterpret_cast<int32_t*>(p.indices) + ((int64_t)r * p.heads + head) * p.k);
}

}  // namespace topk_select

extern "C" __global__ void __launch_bounds__(SA_TOPK_SELECT_THREADS)
topk_select_f32(const __grid_constant__ TopkSelectParams p) {
    topk_select::select_row<topk_select::F32Scores, uint32_t>(p);
}

extern "C" __global__ void __launch_bounds__(SA_TOPK_SELECT_THREADS)
topk_select_bf16(const __grid_constant__ TopkSelectParams p) {
    topk_select::select_row<topk_select::Bf16Scores, uint16_t>(p);
}

extern "C" __global__ void __launch_bounds__(SA_TOPK_SELECT_THREADS)
topk_select_rows_f32(const __grid_constant__ TopkSelectRowsParams p) {
    topk_select::select_chunk_row<topk_select::F32Scores, uint32_t>(p);
}

extern "C" __global__ void __launch_bounds__(SA_TOPK_SELECT_THREADS)
topk_select_rows_bf16(const __grid_constant__ TopkSelectRowsParams p) {
    topk_select::select_chunk_row<topk_select::Bf16Scores, uint16_t>(p);
}
