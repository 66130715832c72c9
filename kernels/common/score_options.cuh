// The score options of the `_opt` kernel variants (params.h, AttnTensorParams): softcap,
// a token-granular sliding window, and attention sinks. The plain kernels are instantiated
// without this code (Opts = false in every loop), so their inner loops, and the
// performance figures measured on them, are those without options.
//
// Order on a score tile, as the reference defines it: softcap on the raw scores, then the
// window mask, then the loop's own masks (seq_k, causal, gathered slots). The softcap must
// come first: tanh(-inf) would turn a masked score back into -cap.
#pragma once
#include "common/c_std.h"
#include "params.h"
#include "common/online_softmax.cuh"

namespace attn {

// The int range (NVRTC has no <climits>); kNoWindowKey is below every key.
constexpr int kNoWindowKey = -2147483647 - 1;
constexpr int kIntMax = 2147483647;

// One thread's two fragment rows (g, g + 8) under the options.
struct ScoreOptions {
    float softcap_in;   // 0: no softcap
    int first_key[2];   // the lowest key each row may see (kNoWindowKey without a window)

    // `row_g`: the thread's fragment row g as a query row of a sequence of seq_q rows over
    // seq_k keys; row g + 8 is `row8` (8 below in prefill, but another token in decode).
    __device__ __forceinline__ void init(const AttnTensorParams& tp, int row_g, int row8, int seq_q, int seq_k) {
        softcap_in = tp.softcap_in;
        first_key[0] = window_start(tp.window_left, row_g, seq_q, seq_k);
        first_key[1] = window_start(tp.window_left, row8, seq_q, seq_k);
    }

    // row + seq_k - seq_q - window_left in 64 bits (padding rows may overflow 32), clamped
    // to the int range; kNoWindowKey when there is no window.
    __device__ __forceinline__ static int window_start(int window_left, int row, int seq_q, int seq_k) {
        if (window_left < 0) {
            return kNoWindowKey;
        }
        const int64_t first = (int64_t)row + seq_k - seq_q - window_left;
        return first < kNoWindowKey ? kNoWindowKey : (first > kIntMax ? kIntMax : (int)first);
    }

    // Softcap, then the window, on a score tile of NB blocks of 8 keys (C-fragment layout,
    // t4 = lane % 4); `key_of(col)` is the key of tile column col (-1 for an empty slot,
    // which the loop's own mask removes).
    template <int NB, typename KeyOf>
    __device__ __forceinline__ void apply(float (&s)[NB][4], int t4, const KeyOf& key_of) const {
        softcap(s);
        if (first_key[0] != kNoWindowKey || first_key[1] != kNoWindowKey) {
#pragma unroll
            for (int j = 0; j < NB; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int key = key_of(8 * j + 2 * t4 + e);
                    s[j][e] = key >= first_key[0] ? s[j][e] : -INFINITY;
                    s[j][2 + e] = key >= first_key[1] ? s[j][2 + e] : -INFINITY;
                }
            }
        }
    }

    // apply() for a contiguous tile of keys key0 + col: the window as one threshold per row
    // against a compile-time column (as mask_tile_columns does for the causal limit), which
    // holds no per-element key. Column 8j + 2t4 + e is visible iff 8j + e >= first - key0 -
    // 2t4; the difference is clamped so that it cannot wrap.
    template <int NB>
    __device__ __forceinline__ void apply_contiguous(float (&s)[NB][4], int t4, int key0) const {
        softcap(s);
        if (first_key[0] != kNoWindowKey || first_key[1] != kNoWindowKey) {
            const int lo0 = (int)max(min((int64_t)first_key[0] - key0, (int64_t)8 * NB), (int64_t)-1) - 2 * t4;
            const int lo1 = (int)max(min((int64_t)first_key[1] - key0, (int64_t)8 * NB), (int64_t)-1) - 2 * t4;
#pragma unroll
            for (int j = 0; j < NB; ++j) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    s[j][e] = 8 * j + e >= lo0 ? s[j][e] : -INFINITY;
                    s[j][2 + e] = 8 * j + e >= lo1 ? s[j][2 + e] : -INFINITY;
                }
            }
        }
    }

    // The softcap as the kernels take it (params.h): t = tanh(s * scale / cap), whose logit
    // cap * t the softmax gets from the launch's scale, set to cap.
    template <int NB>
    __device__ __forceinline__ void softcap(float (&s)[NB][4]) const {
        if (softcap_in != 0.f) {
#pragma unroll
            for (int j = 0; j < NB; ++j) {
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    s[j][e] = tanh_approx(s[j][e] * softcap_in);
                }
            }
        }
    }

    // tanh.approx.f32, as FlashAttention-2's softcap: about 2^-11 relative error on a GPU
    // (the simulator computes it exactly), far below bf16's 2^-8 output rounding.
    __device__ __forceinline__ static float tanh_approx(float x) {
        float y;
        asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
        return y;
    }
};

// Folds the attention sink of fragment row r into its state before the epilogue: the sink
// joins the denominator as exp(sink) (natural log) with no value row. `sink_raw[r]` is the
// sink in raw-score units (sink / softmax_scale), -INFINITY for none. Every thread of a quad
// rescales its share of the sum and its accumulator to the new maximum; the sink's own term
// is added by the quad's first thread only, since the epilogue sums the quad. A row that saw
// no key keeps its accumulator at exactly 0 (its alpha is 0, but 0 * NaN from a masked V row
// would not be) and ends with the sink's weight alone: output 0, LSE = the sink.
template <int ND>
__device__ __forceinline__ void fold_sinks(float (&acc)[ND][4], RowState& st, const float (&sink_raw)[2], float scale_log2,
                                           int t4) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        if (sink_raw[r] == -INFINITY) {
            continue;
        }
        const float new_max = fmaxf(st.max[r], sink_raw[r]);
        const float base = new_max * scale_log2;
        const float alpha = exp2f(st.max[r] * scale_log2 - base);
        st.sum[r] = st.sum[r] * alpha + (t4 == 0 ? exp2f(sink_raw[r] * scale_log2 - base) : 0.f);
#pragma unroll
        for (int d = 0; d < ND; ++d) {
            acc[d][2 * r] = alpha == 0.f ? 0.f : acc[d][2 * r] * alpha;
            acc[d][2 * r + 1] = alpha == 0.f ? 0.f : acc[d][2 * r + 1] * alpha;
        }
        st.max[r] = new_max;
    }
}

// The sink of query head `h` in raw-score units, -INFINITY when the launch has none.
__device__ __forceinline__ float sink_raw_of(const AttnTensorParams& tp, int h, float softmax_scale) {
    return tp.sinks != 0 ? reinterpret_cast<const float*>(tp.sinks)[h] / softmax_scale : -INFINITY;
}

}  // namespace attn
