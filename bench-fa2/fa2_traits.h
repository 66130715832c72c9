// The FlashAttention-2 (flash-attn 2.8.3) forward kernels this project runs on ptx-sim, shared by
// fa2_fwd.cu (which instantiates them for the PTX) and fa2_layout.cu (which prints their
// constants and the Flash_fwd_params layout for the Rust side). Written for this project.
#pragma once

#include "namespace_config.h"
#include "kernel_traits.h"

namespace fa2_sim {

using Element = cutlass::bfloat16_t;

template <int HeadDim> struct Traits;
// run_mha_fwd_hdim128 without dropout on sm80 (compute capability 8.0, so is_sm8x is false):
// 128 x 64 tiles, 4 warps, causal and non-causal alike.
template <> struct Traits<128> { using type = Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, Element>; };
// run_mha_fwd_hdim64 without dropout: 128 x 128 tiles, 4 warps.
template <> struct Traits<64> { using type = Flash_fwd_kernel_traits<64, 128, 128, 4, false, false, Element>; };

}  // namespace fa2_sim
