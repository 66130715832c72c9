// Instantiates FlashAttention-2's forward kernel (flash-attn 2.8.3, csrc/flash_attn/src) so that
// ptx-sim can run it: `flash_fwd_kernel` with the kernel traits `run_mha_fwd_hdim128` /
// `run_mha_fwd_hdim64` pick on sm80 (fa2_traits.h), and the template flags `run_flash_fwd`
// selects for bf16 with no dropout, local window, ALiBi, softcap or returned softmax, and
// d == kHeadDim (Is_even_K). Both Is_even_MN forms, because run_flash_fwd picks one from the
// sequence lengths; both Is_causal forms. Written for this project.
//
// scripts/fa2-ptx.sh compiles it once per head_dim (-DFA2_HDIM=128, -DFA2_HDIM=64) to PTX with
// nvcc 13.0, -arch=compute_80 and the flags of FA2's setup.py, with bench-fa2/shim standing in
// for the PyTorch headers that flash.h includes. Only device code is generated (-ptx).

#include "namespace_config.h"
#include "flash_fwd_launch_template.h"
#include "fa2_traits.h"

#ifndef FA2_HDIM
#error "define FA2_HDIM (128 or 64)"
#endif

namespace fa2_sim {

using T = Traits<FA2_HDIM>::type;

// flash_fwd_kernel<Kernel_traits, Is_dropout, Is_causal, Is_local, Has_alibi, Is_even_MN,
//                  Is_even_K, Is_softcap, Return_softmax>
#define FA2_KERNEL(Causal, EvenMN) \
    reinterpret_cast<const void *>(&flash::flash_fwd_kernel<T, false, Causal, false, false, EvenMN, true, false, false>)

// Taking a kernel's address instantiates it, as in run_flash_fwd.
extern const void *const kernels[] = {
    FA2_KERNEL(false, true),
    FA2_KERNEL(false, false),
    FA2_KERNEL(true, true),
    FA2_KERNEL(true, false),
};

}  // namespace fa2_sim
