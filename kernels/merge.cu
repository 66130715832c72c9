// Merging partial attention states by their log-sum-exp (LSE): split-KV decode, chunked
// prefill and context parallelism each compute a row's attention over disjoint key sets and
// combine the results here, exactly (up to f32 rounding), since
//   lse = ln(sum_s exp(lse_s)),  out = sum_s exp(lse_s - lse) * out_s.
//
// merge_states_<dtype>: S f32 states of every row into one output of the dtype (MergeParams).
// merge_state_in_place_<dtype>: two states of the dtype, the second folded into the first
// (MergeInPlaceParams; FlashInfer's merge_state_in_place, natural-log LSE).
//
// One warp per output row (b, t, h), SA_MERGE_THREADS / 32 rows per block; a lane owns the
// row's 16-byte chunks lane, lane + 32, ... (head_dim is a multiple of 4). The weights use the
// max-subtraction trick, m = max_s lse_s and w_s = exp(lse_s - m) / sum_s exp(lse_s - m), so
// no exponential overflows. Non-finite LSEs:
// - a state with LSE -inf (it saw no key) contributes nothing: its output row is not read,
//   so whatever it holds (the decode kernel may leave it unwritten) cannot leak in;
// - a row whose every state is -inf gets output exactly 0 and LSE -inf (no NaN);
// - a NaN LSE in any state makes the row's output and LSE NaN (the maximum propagates NaN
//   where fmaxf would drop it), and so does +inf (exp(inf - inf)): a broken state is shown,
//   not hidden.
//
// Addressing: every offset is int64 arithmetic on the strides in the params, and the host
// (src/plan/merge.rs) has checked that every offset those strides reach for the sizes in the
// params lies inside the buffers, and the 16-byte (f32) / 8-byte (f16, bf16) alignment of
// every row for the vector accesses. The kernels add no bounds of their own beyond the row
// count and head_dim.
#include "common/c_std.h"

#include "params.h"
#include "common/instantiate.cuh"

namespace merge {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpSize = 32;
constexpr int kRowsPerBlock = SA_MERGE_THREADS / kWarpSize;
static_assert(SA_MERGE_THREADS % kWarpSize == 0, "a warp per row: whole warps per block");

// The larger of a and b, NaN if either is NaN (fmaxf returns the other operand, which would
// turn a NaN state into an ignored one).
__device__ __forceinline__ float max_nan(float a, float b) {
    return (a > b || isnan(a)) ? a : b;
}

__device__ __forceinline__ float warp_max_nan(float x) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
        x = max_nan(x, __shfl_xor_sync(kFullMask, x, offset));
    }
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset >>= 1) {
        x += __shfl_xor_sync(kFullMask, x, offset);
    }
    return x;
}

__device__ __forceinline__ void fma4(float4& acc, float w, const float4& v) {
    acc.x = fmaf(w, v.x, acc.x);
    acc.y = fmaf(w, v.y, acc.y);
    acc.z = fmaf(w, v.z, acc.z);
    acc.w = fmaf(w, v.w, acc.w);
}

// Four consecutive elements of T as f32: one 16-byte (f32) or 8-byte (f16, bf16) access, so
// a row must start aligned to 4 elements' bytes (checked on the host).
template <typename T>
struct Vec4;

template <>
struct Vec4<float> {
    static __device__ __forceinline__ float4 load(const float* p) {
        return *reinterpret_cast<const float4*>(p);
    }
    static __device__ __forceinline__ void store(float* p, const float4& v) {
        *reinterpret_cast<float4*>(p) = v;
    }
};

template <>
struct Vec4<half> {
    static __device__ __forceinline__ float4 load(const half* p) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
        const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
        return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
    static __device__ __forceinline__ void store(half* p, const float4& v) {
        __half2 lo = __floats2half2_rn(v.x, v.y);
        __half2 hi = __floats2half2_rn(v.z, v.w);
        *reinterpret_cast<uint2*>(p) = make_uint2(*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi));
    }
};

template <>
struct Vec4<__nv_bfloat16> {
    static __device__ __forceinline__ float4 load(const __nv_bfloat16* p) {
        const uint2 u = *reinterpret_cast<const uint2*>(p);
        const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
        const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
        return make_float4(lo.x, lo.y, hi.x, hi.y);
    }
    static __device__ __forceinline__ void store(__nv_bfloat16* p, const float4& v) {
        __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y);
        __nv_bfloat162 hi = __floats2bfloat162_rn(v.z, v.w);
        *reinterpret_cast<uint2*>(p) = make_uint2(*reinterpret_cast<uint32_t*>(&lo), *reinterpret_cast<uint32_t*>(&hi));
    }
};

// Row (b, t, h) of a [batch, seq, heads] row space numbered b-major, h fastest (the order of
// a contiguous [B, seq, H, D] output, so consecutive warps write consecutive rows).
struct Row {
    int64_t b, t, h;
};

__device__ __forceinline__ Row row_of(int64_t row, int32_t seq, int32_t heads) {
    Row r;
    r.h = row % heads;
    const int64_t bt = row / heads;
    r.t = bt % seq;
    r.b = bt / seq;
    return r;
}

// This warp's row, or -1 past the last one (warp-uniform).
__device__ __forceinline__ int64_t warp_row(int32_t batch, int32_t seq, int32_t heads) {
    if (batch <= 0 || seq <= 0 || heads <= 0) {
        return -1;
    }
    const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + threadIdx.x / kWarpSize;
    return row < (int64_t)batch * seq * heads ? row : -1;
}

// The merged LSE from the maximum and sum_s exp(lse_s - m): -inf when every state was -inf
// (m = -inf), NaN when m or the sum is.
__device__ __forceinline__ float merged_lse(float m, float sum) {
    return m == -INFINITY ? -INFINITY : m + logf(sum);
}

template <typename T>
__device__ __forceinline__ void merge_states(const MergeParams& p) {
    const int64_t row = warp_row(p.batch, p.seq, p.heads);
    if (row < 0 || p.states <= 0 || p.head_dim <= 0) {
        return;
    }
    const int lane = threadIdx.x % kWarpSize;
    const Row r = row_of(row, p.seq, p.heads);
    const float* lse_in = reinterpret_cast<const float*>(p.partial_lse) + r.b * p.pl_batch + r.h * p.pl_head + r.t;

    // Pass 1: the maximum over states, lanes striding over them (NaN wins).
    float m = -INFINITY;
    for (int s = lane; s < p.states; s += kWarpSize) {
        m = max_nan(m, lse_in[s * p.pl_state]);
    }
    m = warp_max_nan(m);
    // Pass 2: sum_s exp(lse_s - m), at least 1 unless m is -inf (then every state is empty
    // and the sum is not needed: exp(-inf - -inf) would be NaN).
    float sum = 0.f;
    if (m != -INFINITY) {
        for (int s = lane; s < p.states; s += kWarpSize) {
            sum += expf(lse_in[s * p.pl_state] - m);
        }
        sum = warp_sum(sum);
    }
    const float inv_sum = 1.f / sum;

    // Pass 3: the weighted sum of the state rows, in 16-byte chunks. A batch of 32 states'
    // LSEs and weights is computed once per chunk round, a lane each, and broadcast by
    // shuffle, so every lane of the warp must run every round: the chunk loop is uniform and
    // lanes past the last chunk only skip the memory accesses.
    const float* po = reinterpret_cast<const float*>(p.partial_out) + r.b * p.po_batch + r.t * p.po_seq + r.h * p.po_head;
    T* out = reinterpret_cast<T*>(p.out) + r.b * p.out_batch + r.t * p.out_seq + r.h * p.out_head;
    const int chunks = p.head_dim / 4;
    for (int c0 = 0; c0 < chunks; c0 += kWarpSize) {
        const int c = c0 + lane;
        const bool active = c < chunks;
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int base = 0; base < p.states; base += kWarpSize) {
            const int s = base + lane;
            const float l = s < p.states ? lse_in[s * p.pl_state] : -INFINITY;
            const float w = expf(l - m) * inv_sum;
            const int n = min(kWarpSize, p.states - base);
            // Unrolled by 2: by 4, nvcc 13's ptxas spilled 12 to 16 bytes on sm_80.
#pragma unroll 2
            for (int j = 0; j < n; ++j) {
                const float lj = __shfl_sync(kFullMask, l, j);
                const float wj = __shfl_sync(kFullMask, w, j);
                if (active && lj != -INFINITY) {
                    fma4(acc, wj, Vec4<float>::load(po + (int64_t)(base + j) * p.po_state + 4 * c));
                }
            }
        }
        if (active) {
            Vec4<T>::store(out + 4 * c, acc);
        }
    }
    if (lane == 0 && p.lse != 0) {
        reinterpret_cast<float*>(p.lse)[r.b * p.lse_batch + r.h * p.lse_head + r.t] = merged_lse(m, sum);
    }
}

template <typename T>
__device__ __forceinline__ void merge_state_in_place(const MergeInPlaceParams& p) {
    const int64_t row = warp_row(p.batch, p.seq, p.heads);
    if (row < 0 || p.head_dim <= 0) {
        return;
    }
    const int lane = threadIdx.x % kWarpSize;
    const Row r = row_of(row, p.seq, p.heads);
    float* lse = reinterpret_cast<float*>(p.lse) + r.b * p.lse_batch + r.h * p.lse_head + r.t;
    const float l0 = *lse;
    const float l1 = reinterpret_cast<const float*>(p.lse_other)[r.b * p.lse_other_batch + r.h * p.lse_other_head + r.t];
    const float m = max_nan(l0, l1);
    const float e0 = m == -INFINITY ? 0.f : expf(l0 - m);
    const float e1 = m == -INFINITY ? 0.f : expf(l1 - m);
    const float sum = e0 + e1;
    const float inv_sum = 1.f / sum;
    const float w0 = e0 * inv_sum;
    const float w1 = e1 * inv_sum;

    T* v = reinterpret_cast<T*>(p.v) + r.b * p.v_batch + r.t * p.v_seq + r.h * p.v_head;
    const T* vo = reinterpret_cast<const T*>(p.v_other) + r.b * p.v_other_batch + r.t * p.v_other_seq + r.h * p.v_other_head;
    // Each lane reads and rewrites only its own chunks, so no lane sees another's write.
    for (int c = lane; c < p.head_dim / 4; c += kWarpSize) {
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        if (l0 != -INFINITY) {
            fma4(acc, w0, Vec4<T>::load(v + 4 * c));
        }
        if (l1 != -INFINITY) {
            fma4(acc, w1, Vec4<T>::load(vo + 4 * c));
        }
        Vec4<T>::store(v + 4 * c, acc);
    }
    // Every lane has read the old LSE before lane 0 replaces it.
    __syncwarp();
    if (lane == 0) {
        *lse = merged_lse(m, sum);
    }
}

}  // namespace merge

#define SA_MERGE_KERNELS(dtype_name, cuda_type)                                                               \
    extern "C" __global__ void __launch_bounds__(SA_MERGE_THREADS)                                           \
        merge_states_##dtype_name(const __grid_constant__ MergeParams p) {                                   \
        merge::merge_states<cuda_type>(p);                                                                    \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(SA_MERGE_THREADS)                                           \
        merge_state_in_place_##dtype_name(const __grid_constant__ MergeInPlaceParams p) {                     \
        merge::merge_state_in_place<cuda_type>(p);                                                            \
    }

// The output dtypes: the attention dtypes, and f32 (engines that keep f32 accumulators, and
// partial states merged in more than one round).
SA_MERGE_KERNELS(f16, half)
SA_MERGE_KERNELS(bf16, __nv_bfloat16)
SA_MERGE_KERNELS(f32, float)
#undef SA_MERGE_KERNELS
