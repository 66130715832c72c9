// Independent thread scheduling, named barriers and generic addressing for ptx-sim's tests.
#include <stdint.h>

// A generic pointer that points into shared or global memory depending on a runtime flag:
// nvcc must use generic ld/st (and cvta.shared) for it.
extern "C" __global__ void generic_pointers(float* g, int use_shared) {
    __shared__ float s[64];
    float* p = use_shared ? s : g;
    p[threadIdx.x] = threadIdx.x * 2.0f;
    __syncthreads();
    g[64 + threadIdx.x] = p[63 - threadIdx.x];
}

// Warps 0 and 1 exchange through shared memory with named barrier 1 (64 threads) while
// warp 2 works alone; then everybody meets at barrier 0.
extern "C" __global__ void named_barrier(uint32_t* out) {
    __shared__ uint32_t s[64];
    int t = threadIdx.x;
    if (t < 64) {
        s[t] = t * 7;
        asm volatile("bar.sync 1, 64;" ::: "memory");
        out[t] = s[63 - t];
    } else {
        out[t] = t;
    }
    __syncthreads();
    if (t == 0) out[96] = 1234;
}

// Each half of the warp reaches __syncwarp in a different branch (allowed since sm_70).
extern "C" __global__ void syncwarp_in_branches(const uint32_t* in, uint32_t* out) {
    __shared__ uint32_t s[32];
    int lane = threadIdx.x;
    uint32_t r;
    if (lane < 16) {
        s[lane] = in[lane] + 100;
        __syncwarp();
        r = s[lane + 16];
    } else {
        s[lane] = in[lane] * 3;
        __syncwarp();
        r = s[lane - 16];
    }
    out[lane] = r;
}

// Two halves of a warp execute different shfl.sync instructions with a full member mask:
// undefined behaviour that hangs or corrupts on hardware; the simulator must report it.
extern "C" __global__ void mismatched_shuffles(uint32_t* out) {
    int lane = threadIdx.x;
    uint32_t v = lane * 10;
    if (lane < 16) {
        v = __shfl_sync(0xffffffffu, v, lane + 16);
        out[lane] = v + 1;
    } else {
        v = __shfl_xor_sync(0xffffffffu, v * 3, 1);
        out[lane] = v;
    }
}

// Lanes leave a loop at different trip counts, then the warp reconverges for a shuffle.
extern "C" __global__ void reconverge_then_shuffle(uint32_t* out) {
    int lane = threadIdx.x;
    uint32_t acc = 0;
    for (int i = 0; i < lane; ++i) acc += i;
    __syncwarp();
    out[lane] = __shfl_sync(0xffffffffu, acc, 31 - lane);
}
