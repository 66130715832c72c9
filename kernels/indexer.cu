// DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2-Exp): the score of key s for
// query row t is the sum over indexer heads h of w[t, h] * relu(q[t, h] . k[s]). This file
// computes those scores for a chunk of query rows into an f32 workspace; the chunk's top-k is
// then selected by topk_select_rows_f32 (kernels/topk_select.cu) with the same row geometry
// (kernels/common/index_rows.cuh), so an engine bounds the workspace by the chunk, never by
// [seq_q, seq_k]. IndexerParams in params.h has the layouts; src/pattern/indexer.rs has the
// host reference.
//
// indexer_scores_<f16|bf16>_d<64|128>: CTA (x, y) scores keys y * SA_INDEXER_THREADS + tid of
// group x % groups of chunk row x / groups, one key per thread. The row's heads (as f32) and
// weights sit in shared memory, the thread's key row in registers; every product is an fmaf
// in a fixed order (d, then h, ascending), so a score is the same bits in any chunking and
// launch. Keys past the row's causal limit are neither computed nor written (the selection
// never reads them), and a CTA whose keys all lie past it exits at once.
#include "common/c_std.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/index_rows.cuh"
#include "params.h"

namespace indexer {

constexpr int kThreads = SA_INDEXER_THREADS;
constexpr int kMaxQRow = SA_INDEXER_MAX_QROW;
// The smallest head_dim is 64, so this bounds the heads too.
constexpr int kMaxHeads = kMaxQRow / 64;

// Widening a stored element to f32 (exact for both dtypes).
struct F16 {
    __device__ __forceinline__ static float to_f32(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
};
struct Bf16 {
    __device__ __forceinline__ static float to_f32(uint16_t bits) { return __uint_as_float((uint32_t)bits << 16); }
};

// The value itself, through an opaque move: without it nvcc's PTX keeps the key row packed
// and re-widens half of it for every head (an integer op per two fmas of the inner loop).
// ptxas allocates the same 152 registers either way (no spills); the PTX the simulator
// counts, and any backend that takes it literally, does a third less work per key.
__device__ __forceinline__ float pinned(float x) {
    float y;
    asm volatile("mov.b32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// relu with NaN -> 0, written as a comparison so that fast-math cannot change it.
__device__ __forceinline__ float relu(float x) { return x > 0.0f ? x : 0.0f; }

template <typename Conv, int D>
__device__ __forceinline__ void scores(const IndexerParams& p) {
    static_assert(D % 8 == 0 && D <= kMaxQRow, "16-byte key loads");
    const IndexRowsParams& g = p.rows;
    // The host validates all of this; other params do nothing rather than address memory
    // they were not given.
    if (g.rows <= 0 || p.groups <= 0 || p.heads <= 0 || p.heads > kMaxQRow / D || g.seq_k <= 0 || g.first_row < 0 ||
        (int64_t)g.first_row + g.rows > g.total_q || (int64_t)blockIdx.x >= (int64_t)g.rows * p.groups) {
        return;
    }
    const int group = (int)blockIdx.x % p.groups;
    const int r = g.first_row + (int)blockIdx.x / p.groups;
    const index_rows::RowSeq s = index_rows::resolve(g, r);
    const int64_t tile0 = (int64_t)blockIdx.y * kThreads;
    // Uniform over the CTA: no barrier has been reached yet.
    if (tile0 >= s.n) {
        return;
    }

    __shared__ __align__(16) float sq[kMaxQRow];
    __shared__ float sw[kMaxHeads];
    const int tid = (int)threadIdx.x;
    const int64_t qrow = (int64_t)r * p.groups + group;
    const uint16_t* q = reinterpret_cast<const uint16_t*>(p.q) + qrow * p.heads * D;
    for (int e = tid; e < p.heads * D; e += kThreads) {
        sq[e] = Conv::to_f32(q[e]);
    }
    for (int h = tid; h < p.heads; h += kThreads) {
        sw[h] = p.w_same_dtype != 0 ? Conv::to_f32(reinterpret_cast<const uint16_t*>(p.w)[qrow * p.heads + h])
                                    : reinterpret_cast<const float*>(p.w)[qrow * p.heads + h];
    }
    __syncthreads();

    const int64_t key = tile0 + tid;
    if (key >= s.n) {
        return;
    }
    // The key's row in k: paged (its page from the block table), or packed / contiguous.
    int64_t row = s.key0 + key;
    bool ok = true;
    if (p.block_table != 0) {
        const int page = reinterpret_cast<const int32_t*>(p.block_table)[(int64_t)s.b * p.max_pages + (key >> p.page_shift)];
        ok = page >= 0 && page < p.num_pages;
        row = ((int64_t)(ok ? page : 0) << p.page_shift) + (key & ((1 << p.page_shift) - 1));
    }
    float* out = reinterpret_cast<float*>(p.scores) + (int64_t)blockIdx.x * g.seq_k + key;
    if (!ok) {
        *out = __uint_as_float(0x7fc00000u);
        return;
    }
    float kf[D];
    const uint4* kv = reinterpret_cast<const uint4*>(reinterpret_cast<const uint16_t*>(p.k) + (row * p.groups + group) * D);
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
        const uint4 v = kv[c];
        const uint32_t w4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            kf[8 * c + 2 * j] = pinned(Conv::to_f32((uint16_t)(w4[j] & 0xffffu)));
            kf[8 * c + 2 * j + 1] = pinned(Conv::to_f32((uint16_t)(w4[j] >> 16)));
        }
    }
    float acc = 0.0f;
#pragma unroll 1
    for (int h = 0; h < p.heads; ++h) {
        const float4* qh = reinterpret_cast<const float4*>(sq + h * D);
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < D / 4; ++c) {
            const float4 qv = qh[c];
            dot = fmaf(qv.x, kf[4 * c], dot);
            dot = fmaf(qv.y, kf[4 * c + 1], dot);
            dot = fmaf(qv.z, kf[4 * c + 2], dot);
            dot = fmaf(qv.w, kf[4 * c + 3], dot);
        }
        acc = fmaf(sw[h], relu(dot), acc);
    }
    *out = acc;
}

}  // namespace indexer

#define SA_INDEXER_KERNEL(name, conv, d)                                                        \
    extern "C" __global__ void __launch_bounds__(SA_INDEXER_THREADS)                            \
    indexer_scores_##name##_d##d(const __grid_constant__ IndexerParams p) {                     \
        indexer::scores<indexer::conv, d>(p);                                                   \
    }
SA_INDEXER_KERNEL(f16, F16, 64)
SA_INDEXER_KERNEL(f16, F16, 128)
SA_INDEXER_KERNEL(bf16, Bf16, 64)
SA_INDEXER_KERNEL(bf16, Bf16, 128)
#undef SA_INDEXER_KERNEL
