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

#include "params.h"

namespace topk_select {

constexpr int kThreads = SA_TOPK_SELECT_THREADS;
constexpr int kWarps = kThreads / 32;
constexpr int kDigitBits = 8;
constexpr int kBuckets = 1 << kDigitBits;
// The bucket scan gives one bucket to each thread.
static_assert(kBuckets == kThreads, "one histogram bucket per thread");
static_assert(32 % kDigitBits == 0, "the digits tile the 32-bit key");

// The order key of a score's bits: unsigned order = score order, NaN (any payload) lowest.
__device__ __forceinline__ uint32_t order_key(uint32_t bits) {
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    return (bits & 0x80000000u) != 0u ? ~bits : (bits | 0x80000000u);
}

// Exclusive prefix sum of v over the CTA in thread order; `total` gets the sum over all
// threads. Every thread must call it: two barriers, the second so that warp_totals can be
// reused by the next call.
__device__ __forceinline__ int block_exclusive_scan(int v, int& total, int* warp_totals) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    int inclusive = v;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
        inclusive += lane >= offset ? up : 0;
    }
    if (lane == 31) {
        warp_totals[warp] = inclusive;
    }
    __syncthreads();
    int before = 0;
    total = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        const int t = warp_totals[w];
        before += w < warp ? t : 0;
        total += t;
    }
    __syncthreads();
    return before + inclusive - v;
}

// The f32 bits of score j of a row: f32 as stored, bf16 widened (its bits are the top half).
struct F32Scores {
    const uint32_t* row;
    __device__ __forceinline__ uint32_t bits(int64_t j) const { return row[j]; }
};
struct Bf16Scores {
    const uint16_t* row;
    __device__ __forceinline__ uint32_t bits(int64_t j) const { return (uint32_t)row[j] << 16; }
};

template <typename Scores, typename Elem>
__device__ __forceinline__ void select_row(const TopkSelectParams& p) {
    // The host validates all of this; a kernel launched with other params does nothing
    // rather than address memory it was not given.
    if (p.rows <= 0 || p.seq_q <= 0 || p.heads <= 0 || p.seq_k <= 0 || p.k <= 0 || (int64_t)blockIdx.x >= p.rows) {
        return;
    }
    const int row = (int)blockIdx.x;
    const int tid = (int)threadIdx.x;
    const int query = (row / p.heads) % p.seq_q;
    // Candidates are keys [0, n): all of them, or those up to the bottom-right diagonal.
    int64_t n = p.seq_k;
    if (p.causal != 0) {
        const int64_t limit = (int64_t)query + p.seq_k - p.seq_q + 1;
        n = limit < 0 ? 0 : (limit < n ? limit : n);
    }
    const Scores scores{reinterpret_cast<const Elem*>(p.scores) + (int64_t)row * p.seq_k};
    int32_t* out = reinterpret_cast<int32_t*>(p.indices) + (int64_t)row * p.k;

    // Every candidate is selected: no scores to read.
    if (n <= p.k) {
        for (int j = tid; j < p.k; j += kThreads) {
            out[j] = j < n ? j : -1;
        }
        return;
    }

    __shared__ int hist[kBuckets];
    __shared__ int warp_totals[kWarps];
    __shared__ int s_digit;
    __shared__ int s_need;

    // Invariant: the top k holds every element whose key's chosen digits exceed `prefix`
    // and the `need` largest of those that match it (n > k, so exactly one bucket per pass
    // holds the need-th).
    uint32_t prefix = 0, mask = 0;
    int need = p.k;
    for (int shift = 32 - kDigitBits; shift >= 0; shift -= kDigitBits) {
        hist[tid] = 0;
        __syncthreads();
        for (int64_t j = tid; j < n; j += kThreads) {
            const uint32_t key = order_key(scores.bits(j));
            if ((key & mask) == prefix) {
                atomicAdd(&hist[(key >> shift) & (kBuckets - 1)], 1);
            }
        }
        __syncthreads();
        // Thread t holds bucket kBuckets - 1 - t, so the scan counts the elements of the
        // buckets above it.
        const int digit = kBuckets - 1 - tid;
        const int count = hist[digit];
        int total;
        const int above = block_exclusive_scan(count, total, warp_totals);
        if (above < need && need <= above + count) {
            s_digit = digit;
            s_need = need - above;
        }
        __syncthreads();
        prefix |= (uint32_t)s_digit << shift;
        mask |= (uint32_t)(kBuckets - 1) << shift;
        need = s_need;
        // The next writes of s_digit and s_need, and of hist, come after barriers that every
        // thread reaches only after these reads.
    }

    // Compaction in index order: the keys above the threshold, and the first `need` keys
    // equal to it.
    int eq_seen = 0, written = 0;
    for (int64_t base = 0; base < n && written < p.k; base += kThreads) {
        const int64_t j = base + tid;
        const uint32_t key = j < n ? order_key(scores.bits(j)) : 0u;
        const int eq = j < n && key == prefix ? 1 : 0;
        int eq_total;
        const int eq_before = block_exclusive_scan(eq, eq_total, warp_totals);
        const int take = j < n && (key > prefix || (eq != 0 && eq_seen + eq_before < need)) ? 1 : 0;
        int take_total;
        const int pos = written + block_exclusive_scan(take, take_total, warp_totals);
        if (take != 0 && pos < p.k) {
            out[pos] = (int32_t)j;
        }
        eq_seen += eq_total;
        written += take_total;
    }
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
