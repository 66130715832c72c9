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

// Moves fragment row r (0: g, 1: g + 8) to the frame of `new_max`: its accumulator row and
// running sum are rescaled by exp2((old max - new max) * scale), and the tile's `partial`
// sum (already in the new frame) is added.
template <int ND>
__device__ __forceinline__ void rescale_row(float (&acc)[ND][4], RowState& st, int r, float new_max, float partial,
                                            float scale_log2) {
    // -inf only while the row has seen no visible key: see the header comment.
    const float base = new_max == -INFINITY ? 0.f : new_max * scale_log2;
    const float alpha = exp2f(st.max[r] * scale_log2 - base);
    st.sum[r] = fmaf(st.sum[r], alpha, partial);
#pragma unroll
    for (int d = 0; d < ND; ++d) {
        acc[d][2 * r] *= alpha;
        acc[d][2 * r + 1] *= alpha;
    }
    st.max[r] = new_max;
}

// Folds one score tile s[NB][4] (NB blocks of 8 keys, C-fragment layout; masked entries
// are -inf) into the state: s becomes the probabilities in the new frame, and `acc`
// (the output accumulator, ND blocks of 8 dims) is rescaled to that frame.
//
// The rescale (one multiply per accumulator element, as many as the tile has scores at
// head_dim 128) is skipped when no row of the warp raised its maximum: the factor would be
// exactly exp2(0) = 1, so the result is bit-identical. Past the first tiles a row's maximum
// rarely grows, so most tiles skip it. The vote keeps the branch warp-uniform; every lane
// of the warp must call this together (as the quad shuffles already require). A NaN maximum
// compares unequal and takes the rescale, as before; a row still at -inf (no key yet) has
// only zero probabilities, so skipping its factor of 0 leaves the same accumulator.
// `SkipUnchanged` = false always rescales: the vote keeps the new maxima live across the
// exponentials, a register the top-k kernel at head_dim 128 does not have on sm_80.
template <int NB, int ND, bool SkipUnchanged = true>
__device__ __forceinline__ void online_softmax_step(float (&s)[NB][4], float (&acc)[ND][4], RowState& st,
                                                    float scale_log2) {
    float new_max[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float tile_max = -INFINITY;
#pragma unroll
        for (int j = 0; j < NB; ++j) {
            tile_max = fmaxf(tile_max, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
        }
        new_max[r] = fmaxf(st.max[r], quad_max(tile_max));
    }
    float partial[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        // -inf only while the row has seen no visible key: see the header comment.
        const float base = new_max[r] == -INFINITY ? 0.f : new_max[r] * scale_log2;
        partial[r] = 0.f;
#pragma unroll
        for (int j = 0; j < NB; ++j) {
            s[j][2 * r] = exp2f(fmaf(s[j][2 * r], scale_log2, -base));
            s[j][2 * r + 1] = exp2f(fmaf(s[j][2 * r + 1], scale_log2, -base));
            partial[r] += s[j][2 * r] + s[j][2 * r + 1];
        }
        if (!SkipUnchanged) {
            rescale_row<ND>(acc, st, r, new_max[r], partial[r], scale_log2);
        }
    }
    if (!SkipUnchanged) {
        return;
    }
    // One warp-uniform branch for both rows.
    if (__any_sync(0xffffffffu, !(new_max[0] == st.max[0]) || !(new_max[1] == st.max[1]))) {
        rescale_row<ND>(acc, st, 0, new_max[0], partial[0], scale_log2);
        rescale_row<ND>(acc, st, 1, new_max[1], partial[1], scale_log2);
    } else {
        st.sum[0] += partial[0];
        st.sum[1] += partial[1];
    }
}

}  // namespace attn
