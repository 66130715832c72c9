// Minimal stand-in for PyTorch's <ATen/cuda/CUDAGeneratorImpl.h>, written for this project so
// that FlashAttention-2's flash.h compiles without PyTorch (see bench-fa2/README.md).
// flash.h only needs at::PhiloxCudaState, which Flash_fwd_params holds by value: its members
// (two 8-byte unions, a uint32_t, a bool: 24 bytes, 8-aligned) must match PyTorch's so that
// every field after `philox_args` sits where it does in a real FlashAttention build.
#pragma once

#include <cstdint>
#include <tuple>

namespace at {

struct PhiloxCudaState {
    union Payload {
        uint64_t val;
        int64_t *ptr;
    };
    Payload seed_{};
    Payload offset_{};
    uint32_t offset_intragraph_ = 0;
    bool captured_ = false;
};

}  // namespace at
