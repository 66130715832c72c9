// Planted bugs that ptx-sim must report at the right place.
#include <stdint.h>

// Thread 37 of block 1 writes one element past the end of its buffer.
extern "C" __global__ void oob_write(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int j = (blockIdx.x == 1 && threadIdx.x == 37) ? n : i;
    out[j] = 1.0f;
}

// Each thread reads the word its neighbour (t ^ 1) writes, with no barrier between them.
extern "C" __global__ void shared_race(uint32_t* out) {
    __shared__ uint32_t s[64];
    int t = threadIdx.x;
    s[t] = t;
    uint32_t v = s[t ^ 1];  // race: the neighbour's write is not ordered before this read
    __syncthreads();
    out[t] = v;
}

// The same exchange with the barrier in place: no race.
extern "C" __global__ void shared_no_race(uint32_t* out) {
    __shared__ uint32_t s[64];
    int t = threadIdx.x;
    s[t] = t;
    __syncthreads();
    out[t] = s[t ^ 1];
}

// Only the first 40 threads of the block reach the barrier.
extern "C" __global__ void barrier_divergence(uint32_t* out) {
    __shared__ uint32_t s[64];
    int t = threadIdx.x;
    if (t < 40) {
        s[t] = t;
        __syncthreads();
        out[t] = s[39 - t];
    }
}

// A 4-byte load from an address that is only 2-byte aligned.
extern "C" __global__ void misaligned_load(const char* p, uint32_t* out) {
    out[threadIdx.x] = *reinterpret_cast<const uint32_t*>(p + 2 + 4 * threadIdx.x);
}

// The classic double-buffering bug: cp.async is committed but never waited for before the
// barrier, so the neighbour's read may see the old contents.
extern "C" __global__ void cp_async_missing_wait(const uint32_t* src, uint32_t* out) {
    __shared__ __align__(16) uint32_t s[64 * 4];
    int t = threadIdx.x;
    uint32_t dst = (uint32_t)__cvta_generic_to_shared(&s[t * 4]);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src + t * 4));
    asm volatile("cp.async.commit_group;");
    __syncthreads();
    out[t] = s[(t ^ 1) * 4];
    asm volatile("cp.async.wait_all;");
}
