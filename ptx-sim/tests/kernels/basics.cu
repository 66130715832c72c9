// Small kernels for ptx-sim's tests: global loads/stores, integer and float ALU, branches,
// loops, special registers and a by-value parameter struct.
#include <stdint.h>

extern "C" __global__ void vec_add(const float* a, const float* b, float* c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

// Writes every index special register of every thread, for 3-D grids and blocks.
extern "C" __global__ void thread_ids(uint32_t* out) {
    uint32_t block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    uint32_t nthreads = blockDim.x * blockDim.y * blockDim.z;
    uint32_t t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    uint32_t* o = out + 8 * (block * nthreads + t);
    uint32_t lane, warp;
    asm volatile("mov.u32 %0, %%laneid;" : "=r"(lane));
    asm volatile("mov.u32 %0, %%warpid;" : "=r"(warp));
    o[0] = threadIdx.x; o[1] = threadIdx.y; o[2] = threadIdx.z;
    o[3] = blockIdx.x; o[4] = blockIdx.y; o[5] = blockIdx.z;
    o[6] = lane; o[7] = blockDim.x * 1000000 + blockDim.y * 1000 + blockDim.z + (gridDim.x + gridDim.y + gridDim.z) * 0 + warp * 0;
}

// One output slot per integer operation, all from two inputs per thread.
extern "C" __global__ void int_ops(const int32_t* a, const int32_t* b, int32_t* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int32_t x = a[i], y = b[i];
    uint32_t ux = (uint32_t)x, uy = (uint32_t)y;
    int32_t* o = out + 24 * i;
    o[0] = x + y;
    o[1] = x - y;
    o[2] = x * y;
    o[3] = __mulhi(x, y);
    o[4] = (int32_t)__umulhi(ux, uy);
    o[5] = y != 0 ? x / y : 0;
    o[6] = y != 0 ? x % y : 0;
    o[7] = uy != 0 ? (int32_t)(ux / uy) : 0;
    o[8] = uy != 0 ? (int32_t)(ux % uy) : 0;
    o[9] = x << (y & 31);
    o[10] = x >> (y & 31);
    o[11] = (int32_t)(ux >> (uy & 31));
    o[12] = x & y;
    o[13] = x | y;
    o[14] = x ^ y;
    o[15] = ~x;
    o[16] = min(x, y);
    o[17] = (int32_t)max(ux, uy);
    o[18] = __popc(ux);
    o[19] = __clz(x);
    o[20] = (int32_t)__brev(ux);
    o[21] = __ffs(x);
    o[22] = x < y ? 1 : (x == y ? 2 : 3);
    o[23] = abs(x);
}

extern "C" __global__ void int64_ops(const int64_t* a, const int64_t* b, int64_t* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int64_t x = a[i], y = b[i];
    int64_t* o = out + 8 * i;
    o[0] = x + y;
    o[1] = x * y;
    o[2] = x >> (y & 63);
    o[3] = (int64_t)((uint64_t)x >> (y & 63));
    o[4] = y != 0 ? x / y : 0;
    o[5] = (int64_t)(int32_t)x * (int64_t)(int32_t)y;
    o[6] = x < y ? x : y;
    o[7] = __popcll((uint64_t)x) + __clzll(x) * 100;
}

extern "C" __global__ void float_ops(const float* a, const float* b, float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = a[i], y = b[i];
    float* o = out + 12 * i;
    o[0] = x + y;
    o[1] = x - y;
    o[2] = x * y;
    o[3] = fmaf(x, y, 1.5f);
    o[4] = fmaxf(x, y);
    o[5] = fminf(x, y);
    o[6] = fabsf(x);
    o[7] = -x;
    o[8] = x < y ? 1.0f : 0.0f;
    o[9] = (float)(int)x;
    o[10] = (float)i;
    o[11] = x / y;
}

// Branches that diverge inside a warp and reconverge: a data-dependent loop per lane.
extern "C" __global__ void collatz(const uint32_t* start, uint32_t* steps, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    uint32_t v = start[i];
    uint32_t s = 0;
    while (v > 1 && s < 1000) {
        if (v & 1) v = 3 * v + 1; else v >>= 1;
        s++;
    }
    steps[i] = s;
}

// ALU-bound loop for the speed figure: iters rounds of integer hash work per thread.
extern "C" __global__ void alu_loop(uint32_t* out, int iters) {
    uint32_t x = blockIdx.x * blockDim.x + threadIdx.x;
    uint32_t acc = 0;
#pragma unroll 1
    for (int k = 0; k < iters; ++k) {
        x = x * 1664525u + 1013904223u;
        acc ^= x >> 7;
        acc += x & 0xffff;
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

struct Params {
    const float* x;
    float* y;
    int n;
    float scale;
    int64_t offsets[20];
    float bias;
};

// A struct passed by value (FlashAttention style) with __grid_constant__.
extern "C" __global__ void struct_param(const __grid_constant__ Params p) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.n) return;
    p.y[i] = p.x[i] * p.scale + p.bias + (float)p.offsets[i % 20];
}
