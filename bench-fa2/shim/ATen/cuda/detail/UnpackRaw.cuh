// Minimal stand-in for PyTorch's <ATen/cuda/detail/UnpackRaw.cuh> (see bench-fa2/README.md):
// the seed and offset of a PhiloxCudaState, read through its pointers when it was captured
// in a CUDA graph. FlashAttention-2's forward kernel calls it unconditionally; with dropout
// off its result is unused.
#pragma once

#include <ATen/cuda/CUDAGeneratorImpl.h>

namespace at {
namespace cuda {
namespace philox {

__host__ __device__ __forceinline__ std::tuple<uint64_t, uint64_t> unpack(at::PhiloxCudaState arg) {
    if (arg.captured_) {
        return std::make_tuple(static_cast<uint64_t>(*arg.seed_.ptr),
                               static_cast<uint64_t>(*arg.offset_.ptr + arg.offset_intragraph_));
    }
    return std::make_tuple(arg.seed_.val, arg.offset_.val);
}

}  // namespace philox
}  // namespace cuda
}  // namespace at
