// Device functions that nvcc keeps out of line (__noinline__): calls with scalar and struct
// arguments and results, nested calls, and calls from divergent branches.
#include <stdint.h>

struct Pair {
    float x;
    float y;
};

__device__ __noinline__ int add_mul(int a, int b) { return a * 3 + b; }

__device__ __noinline__ int nested(int a) { return add_mul(a, 1) + 1; }

__device__ __noinline__ Pair swap_scale(Pair p, float s) { return Pair{p.y * s, p.x * s}; }

extern "C" __global__ void calls(const int* in, int* out, float* fout) {
    int t = threadIdx.x;
    int v = in[t];
    int r = (t & 1) ? add_mul(v, t) : nested(v);
    out[t] = r;
    Pair p = swap_scale(Pair{(float)t, (float)v}, 0.5f);
    fout[2 * t] = p.x;
    fout[2 * t + 1] = p.y;
}
