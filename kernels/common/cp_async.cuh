// Asynchronous global -> shared copies (sm_80 cp.async), 16 bytes at a time.
//
// Out-of-range rows are zero-filled rather than skipped: a tile row past seq_k (or an
// invalid gathered key) must hold finite values, because its probability is 0 and
// 0 * garbage could be NaN. With src-size 0 nothing is read from global memory; the
// source operand is still set to a known-valid address so no checker sees a wild pointer.
#pragma once
#include "common/c_std.h"

namespace attn {

// `gmem` is a device address of global memory (a generic address of global memory is the
// same number, so the u64 addresses of the params struct are used as they are).
__device__ __forceinline__ void cp_async_16(uint32_t smem_addr, uint64_t gmem, bool valid) {
    const uint32_t src_size = valid ? 16u : 0u;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr), "l"(gmem), "r"(src_size)
                 : "memory");
}

// A 16-byte copy that always reads its source, to shared address `smem_addr + Offset`: the
// offset is an immediate of the instruction, so a run of copies at constant distances from
// one shared address costs no address arithmetic on the shared side.
template <uint32_t Offset>
__device__ __forceinline__ void cp_async_16_at(uint32_t smem_addr, uint64_t gmem) {
    asm volatile("cp.async.cg.shared.global [%0+%2], [%1], 16;\n" ::"r"(smem_addr), "l"(gmem), "n"(Offset)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most `N` of this thread's committed groups are still in flight. Only the
// issuing thread's copies are covered: a __syncthreads must follow before other threads
// read the tile.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

}  // namespace attn
