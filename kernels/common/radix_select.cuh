// Per-row top-k by radix select over 32-bit order keys, shared by the selection kernels
// (kernels/topk_select.cu, which documents the algorithm and the order, the indexer's
// selection step, and the vertical-slash estimator's, kernels/vs_estimate.cu). One CTA of
// SA_TOPK_SELECT_THREADS selects one row.
#pragma once
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

// The k largest of candidates [0, n) by keys.key(j) (a 32-bit order key: larger ranks first,
// equal keys to the lower index): put(rank, j) for each, rank 0 .. k - 1 in ascending j.
// Every thread of the CTA calls it with the same arguments (n > k >= 1).
template <typename Keys, typename Put>
__device__ __forceinline__ void select_top_keys(const Keys& keys, int64_t n, int k, Put put) {
    const int tid = (int)threadIdx.x;

    __shared__ int hist[kBuckets];
    __shared__ int warp_totals[kWarps];
    __shared__ int s_digit;
    __shared__ int s_need;

    // Invariant: the top k holds every element whose key's chosen digits exceed `prefix`
    // and the `need` largest of those that match it (n > k, so exactly one bucket per pass
    // holds the need-th).
    uint32_t prefix = 0, mask = 0;
    int need = k;
    for (int shift = 32 - kDigitBits; shift >= 0; shift -= kDigitBits) {
        hist[tid] = 0;
        __syncthreads();
        for (int64_t j = tid; j < n; j += kThreads) {
            const uint32_t key = keys.key(j);
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
    for (int64_t base = 0; base < n && written < k; base += kThreads) {
        const int64_t j = base + tid;
        const uint32_t key = j < n ? keys.key(j) : 0u;
        const int eq = j < n && key == prefix ? 1 : 0;
        int eq_total;
        const int eq_before = block_exclusive_scan(eq, eq_total, warp_totals);
        const int take = j < n && (key > prefix || (eq != 0 && eq_seen + eq_before < need)) ? 1 : 0;
        int take_total;
        const int pos = written + block_exclusive_scan(take, take_total, warp_totals);
        if (take != 0 && pos < k) {
            put(pos, j);
        }
        eq_seen += eq_total;
        written += take_total;
    }
}

// The order keys of a row of scores (bits(j) the f32 bits of score j).
template <typename Scores>
struct ScoreKeys {
    Scores scores;
    __device__ __forceinline__ uint32_t key(int64_t j) const { return order_key(scores.bits(j)); }
};

// The indices of the k largest of scores [0, n), ascending, written to out [k] with -1
// padding. Every thread of the CTA calls it with the same arguments (n >= 0, k >= 1).
template <typename Scores>
__device__ __forceinline__ void select_topk(const Scores& scores, int64_t n, int k, int32_t* out) {
    // Every candidate is selected: no scores to read.
    if (n <= k) {
        for (int j = (int)threadIdx.x; j < k; j += kThreads) {
            out[j] = j < n ? j : -1;
        }
        return;
    }
    select_top_keys(ScoreKeys<Scores>{scores}, n, k, [&](int pos, int64_t j) { out[pos] = (int32_t)j; });
}

}  // namespace topk_select
