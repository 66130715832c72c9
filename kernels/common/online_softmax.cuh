// Online softmax in base 2 with the scale folded in (FlashAttention-2): scores stay raw
// q.k in f32; exp(scale * (s - m)) is computed as exp2(s * scale_log2 - m * scale_log2)
// with scale_log2 = softmax_scale * log2(e), one FMA and one ex2 per element.
//
// Each thread holds two rows of a warp's 16 (fragment rows g and g + 8); the four threads
// of a quad share those rows, so row reductions are two xor-shuffles. The running sum is
// kept per thread and reduced once at the end: every thread of a quad rescales by the same
// factor, so partial sums stay consistent.
//
// A row that has seen no key keeps max = -inf. Subtracting -inf from -inf would give NaN,
// so the exponent base is taken as 0 then; every probability of such a row is exp2(-inf)
// = 0 and its sum stays 0, which the epilogue turns into output 0 and LSE -inf.
#pragma once
#include "common/c_std.h"

namespace attn {

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Running state of one thread's two rows.
struct RowState {
    float max[2];  // raw-score maximum so far (-inf: no key yet)
    float sum[2];  // this thread's share of sum(exp2(...)) in the current max's frame

    __device__ __forceinline__ void init() {
        max[0] = max[1] = -INFINITY;
        sum[0] = sum[1] = 0.f;
    }
};

// Folds one score tile s[NB][4] (NB blocks of 8 keys, C-fragment layout; masked entries
// are -inf) into the state: s becomes the probabilities in the new frame, and `acc`
// (the output accumulator, ND blocks of 8 dims) is rescaled to that frame.
template <int NB, int ND>
__device__ __forceinline__ void online_softmax_step(float (&s)[NB][4], float (&acc)[ND][4], RowState& st,
                                                    float scale_log2) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < NB; ++j) {
            tile_max = fmaxf(tile_max, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        }
        const float new_max = fmaxf(st.max[r], quad_max(tile_max));
        // -inf only while the row has seen no visible key: see the header comment.
        const float base = new_max == -INFINITY ? 0.f : new_max * scale_log2;
        const float alpha = exp2f(st.max[r] * scale_log2 - base);
        st.max[r] = new_max;
        float partial = 0.f;
#pragma unroll
        for (int j = 0; j < NB; ++j) {
            s[j][2 * r] = exp2f(fmaf(s[j][2 * r], scale_log2, -base));
            s[j][2 * r + 1] = exp2f(fmaf(s[j][2 * r + 1], scale_log2, -base));
            partial += s[j][2 * r] + s[j][2 * r + 1];
        }
        st.sum[r] = fmaf(st.sum[r], alpha, partial);
#pragma unroll
        for (int d = 0; d < ND; ++d) {
            acc[d][2 * r] *= alpha;
            acc[d][2 * r + 1] *= alpha;
        }
    }
}

}  // namespace attn
