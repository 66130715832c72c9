// Writes one thread's share of the output rows and the LSE once, at the end of the main
// loop: out = acc / sum, LSE = ln(sum) + scale * max (natural log). A row whose sum is 0
// saw no key: its output is 0 and its LSE -inf, never 0/0.
#pragma once
#include "common/c_std.h"

#include "common/mma.cuh"
#include "common/online_softmax.cuh"

namespace attn {

// `row_ptr[r]` is the address of the first element of fragment row r (g and g + 8) in the
// output, or 0 for a padding row; elements 8d + 2t and 8d + 2t + 1 are written as one
// 32-bit store, word 4d + t of the row (rows are 16-byte aligned, checked on the host).
template <typename T, int ND>
__device__ __forceinline__ void write_output(const float (&acc)[ND][4], const RowState& st, const uint64_t (&row_ptr)[2],
                                             int lane, float scale_log2, float (&lse_out)[2]) {
    const int t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float total = quad_sum(st.sum[r]);
        const float inv = total > 0.f ? 1.f / total : 0.f;
        lse_out[r] = total > 0.f ? (st.max[r] * scale_log2 + log2f(total)) * 0.69314718055994531f : -INFINITY;
        if (row_ptr[r] == 0) {
            continue;
        }
        uint32_t* dst = reinterpret_cast<uint32_t*>(row_ptr[r]);
#pragma unroll
        for (int d = 0; d < ND; ++d) {
            dst[4 * d + t] = Mma<T>::pack(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv);
        }
    }
}

}  // namespace attn
