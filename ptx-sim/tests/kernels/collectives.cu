// Warp collectives for ptx-sim's tests: shuffles, votes, redux, warp barriers, block barriers.
#include <stdint.h>

extern "C" __global__ void shuffles(const uint32_t* in, uint32_t* out, int src_lane, int delta) {
    int lane = threadIdx.x & 31;
    uint32_t v = in[blockIdx.x * blockDim.x + threadIdx.x];
    uint32_t* o = out + 6 * (blockIdx.x * blockDim.x + threadIdx.x);
    o[0] = __shfl_sync(0xffffffffu, v, src_lane);
    o[1] = __shfl_up_sync(0xffffffffu, v, delta);
    o[2] = __shfl_down_sync(0xffffffffu, v, delta);
    o[3] = __shfl_xor_sync(0xffffffffu, v, delta);
    o[4] = __shfl_sync(0xffffffffu, v, lane ^ 5, 8);   // width 8 segments
    o[5] = __shfl_down_sync(0xffffffffu, v, 1, 16);     // width 16 segments
}

// A butterfly reduction (the softmax row max/sum pattern) over each group of 4 lanes.
extern "C" __global__ void quad_reduce(const float* in, float* out_max, float* out_sum) {
    float v = in[threadIdx.x];
    float m = v, s = v;
    for (int off = 1; off < 4; off <<= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
        s += __shfl_xor_sync(0xffffffffu, s, off);
    }
    out_max[threadIdx.x] = m;
    out_sum[threadIdx.x] = s;
}

extern "C" __global__ void votes(const int* pred, uint32_t* out) {
    int p = pred[threadIdx.x];
    uint32_t* o = out + 5 * threadIdx.x;
    o[0] = __ballot_sync(0xffffffffu, p);
    o[1] = __any_sync(0xffffffffu, p);
    o[2] = __all_sync(0xffffffffu, p);
    // Only the odd lanes take part: the member mask names exactly the lanes that arrive.
    if (threadIdx.x & 1) {
        o[3] = __ballot_sync(0xaaaaaaaau, p);
        o[4] = __reduce_add_sync(0xaaaaaaaau, (uint32_t)p + threadIdx.x);
    } else {
        o[3] = 0;
        o[4] = __reduce_max_sync(0x55555555u, (uint32_t)p * 7 + threadIdx.x);
    }
}

extern "C" __global__ void redux_ops(const uint32_t* in, uint32_t* out) {
    uint32_t v = in[threadIdx.x];
    uint32_t* o = out + 6 * threadIdx.x;
    o[0] = __reduce_add_sync(0xffffffffu, v);
    o[1] = __reduce_min_sync(0xffffffffu, v);
    o[2] = __reduce_max_sync(0xffffffffu, v);
    o[3] = (uint32_t)__reduce_min_sync(0xffffffffu, (int)v);
    o[4] = (uint32_t)__reduce_max_sync(0xffffffffu, (int)v);
    o[5] = __reduce_and_sync(0xffffffffu, v) ^ __reduce_or_sync(0xffffffffu, v) ^ __reduce_xor_sync(0xffffffffu, v);
}

// Block-wide tree reduction through shared memory with __syncthreads.
extern "C" __global__ void block_sum(const float* in, float* out) {
    extern __shared__ float buf[];
    int t = threadIdx.x;
    buf[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}

// Divergent lanes exchange through shared memory with __syncwarp between the phases.
extern "C" __global__ void syncwarp_exchange(uint32_t* out) {
    __shared__ uint32_t s[32];
    int lane = threadIdx.x;
    if (lane & 1) s[lane] = lane * 3; else s[lane] = lane * 5;
    __syncwarp();
    out[lane] = s[31 - lane];
}
