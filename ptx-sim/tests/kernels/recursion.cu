// A recursive device function: the simulator gives every function one fixed set of
// registers, so it must refuse this module with an error rather than run it wrongly.
// (Tree recursion: nvcc cannot turn it into a loop as it does for tail calls.)
__device__ __noinline__ int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

extern "C" __global__ void recursive(int* out) { out[threadIdx.x] = fib(threadIdx.x); }
