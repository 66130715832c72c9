// Block selection on the device (SeerAttention's gate, MInference's block-sparse heads):
// from Q and K to the block-sparse descriptor, in three kernels whose host rules are in
// src/pattern/block_select.rs.
//
// block_pool_<f16|bf16> (BlockPoolParams): one CTA per (block, output head, sequence) pools
//   the block's rows of Q or K in f32 (the mean; or SeerAttention's K input: max, min and
//   mean concatenated in that order), optionally multiplies the pooled vector by one head of
//   a gate weight [heads, in_dim, out_dim] (SeerAttention's MultiHeadLinear) and applies
//   RoPE at the block's first position, and writes an f32 feature row to the workspace.
// block_score (BlockScoreParams): one CTA per (row block, selection head, sequence) writes
//   the row of scores scale * q_feature . k_feature, averaged over the query heads the
//   selection head stands for; key blocks that are not candidates get -inf.
// block_select (BlockSelectParams): one CTA per row block of a score tensor keeps the top-k
//   key blocks, or the fewest whose mass reaches a threshold, forced blocks first, and
//   writes block_count / block_index (ids ascending, -1 padding).
//
// Determinism: every sum runs in a fixed order (per thread sequential, block scans of a
// fixed shape); the selection sorts 64-bit keys (forced flag, the score's order key, the
// inverted block id), so equal scores go to the lower id and no float comparison decides an
// order (NaN ranks below -inf, as in topk_select.cu). Atomics only set bits.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#include "common/c_std.h"

#include "params.h"

namespace block_select {

constexpr int kPoolThreads = SA_BLOCK_POOL_THREADS;
constexpr int kThreads = SA_BLOCK_SELECT_THREADS;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float to_f32(half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

// A sequence's rows in a tensor: where row 0 starts and how many rows it has. With
// cu_seqlens the rows are packed (batch stride unused); bounds that are not 0 <= start <=
// end <= total, or a length past the grid's max, make the sequence empty.
struct Rows {
    int64_t start;
    int len;
};

__device__ __forceinline__ Rows sequence_rows(uint64_t cu_seqlens, int total, int max_len, int b) {
    Rows r{0, max_len};
    if (cu_seqlens != 0) {
        const int32_t* cu = reinterpret_cast<const int32_t*>(cu_seqlens);
        const int s0 = cu[b], s1 = cu[b + 1];
        const bool ok = 0 <= s0 && s0 <= s1 && s1 <= total && s1 - s0 <= max_len;
        r.start = ok ? s0 : 0;
        r.len = ok ? s1 - s0 : 0;
    }
    return r;
}

// sin and cos of an f32 angle of any size: a three-part Cody-Waite reduction by 2 pi (fma
// keeps each step exact enough), then the hardware approximations on [-pi, pi], which are
// accurate there (--use_fast_math would otherwise turn sinf into sin.approx of the raw
// angle, which loses all accuracy at positions of many thousands of radians).
__device__ __forceinline__ void sin_cos(float x, float& s, float& c) {
    const float k = rintf(x * 0.15915494309189535f);
    float r = fmaf(-k, 6.28318548202514648f, x);
    r = fmaf(-k, -1.7484555314695172e-7f, r);
    s = __sinf(r);
    c = __cosf(r);
}

template <typename T>
__device__ __forceinline__ void pool(const BlockPoolParams& p) {
    __shared__ float pooled[SA_BLOCK_POOL_MAX_IN];
    __shared__ float projected[SA_BLOCK_POOL_MAX_OUT];
    const int blk = (int)blockIdx.x, oh = (int)blockIdx.y, b = (int)blockIdx.z;
    const int tid = (int)threadIdx.x;
    if (p.batch <= 0 || p.heads <= 0 || p.out_heads <= 0 || p.out_heads % p.heads != 0 || p.head_dim <= 0 ||
        p.block <= 0 || b >= p.batch || oh >= p.out_heads || blk >= p.blocks) {
        return;
    }
    const int width = p.pool_max_min != 0 ? 3 : 1;
    const int in_dim = width * p.head_dim;
    const int out_dim = p.weight != 0 ? p.out_dim : in_dim;
    if (in_dim > SA_BLOCK_POOL_MAX_IN || out_dim > SA_BLOCK_POOL_MAX_OUT || out_dim <= 0) {
        return;
    }
    // Output head oh reads input head oh / (out_heads / heads) (MultiHeadLinear repeats a
    // kv head's pooled input for each query head of its group).
    const int h = oh / (p.out_heads / p.heads);
    const Rows rows = sequence_rows(p.cu_seqlens, p.total, p.seq, b);
    const int r0 = blk * p.block;
    const int r1 = min(r0 + p.block, rows.len);
    const int n = r1 > r0 ? r1 - r0 : 0;
    const T* x = reinterpret_cast<const T*>(p.x) + (p.cu_seqlens != 0 ? 0 : (int64_t)b * p.batch_stride) +
                 (rows.start + r0) * p.seq_stride + (int64_t)h * p.head_stride;
    for (int d = tid; d < p.head_dim; d += kPoolThreads) {
        float sum = 0.0f, mx = -INFINITY, mn = INFINITY;
        for (int r = 0; r < n; ++r) {
            const float v = to_f32(x[(int64_t)r * p.seq_stride + d]);
            sum += v;
            mx = fmaxf(mx, v);
            mn = fminf(mn, v);
        }
        // A block with no rows (past a sequence's end) pools to zeros.
        const float mean = n > 0 ? sum / (float)n : 0.0f;
        if (p.pool_max_min != 0) {
            pooled[d] = n > 0 ? mx : 0.0f;
            pooled[p.head_dim + d] = n > 0 ? mn : 0.0f;
            pooled[2 * p.head_dim + d] = mean;
        } else {
            pooled[d] = mean;
        }
    }
    __syncthreads();
    if (p.weight != 0) {
        const T* w = reinterpret_cast<const T*>(p.weight) + (int64_t)oh * in_dim * out_dim;
        for (int o = tid; o < out_dim; o += kPoolThreads) {
            float acc = 0.0f;
            for (int i = 0; i < in_dim; ++i) {
                acc = fmaf(pooled[i], to_f32(w[(int64_t)i * out_dim + o]), acc);
            }
            projected[o] = acc;
        }
    } else {
        for (int o = tid; o < out_dim; o += kPoolThreads) {
            projected[o] = pooled[o];
        }
    }
    __syncthreads();
    float* out = reinterpret_cast<float*>(p.out) + (((int64_t)b * p.out_heads + oh) * p.blocks + blk) * out_dim;
    // RoPE in the rotate-half form (HF Llama's apply_rotary_pos_emb) at the block's first
    // position: key block n at n * block, query row block m at m * block + (own other length
    // - own length), the bottom-right alignment of the causal mask.
    const bool rope = p.rope != 0 && out_dim % 2 == 0;
    const int half_dim = out_dim / 2;
    float pos = (float)r0;
    if (rope && p.rope_from_end != 0) {
        const Rows other = sequence_rows(p.cu_seqlens_other, p.total_other, p.seq_other, b);
        pos = (float)(r0 + other.len - rows.len);
    }
    for (int o = tid; o < out_dim; o += kPoolThreads) {
        float v = projected[o];
        if (rope) {
            const int i = o < half_dim ? o : o - half_dim;
            // theta^(-2i / out_dim), in f32 as the reference models build it.
            const float inv_freq = exp2f(-(float)(2 * i) / (float)out_dim * p.rope_log2_theta);
            float s, c;
            sin_cos(pos * inv_freq, s, c);
            const float other = o < half_dim ? -projected[o + half_dim] : projected[o - half_dim];
            v = v * c + other * s;
        }
        out[o] = v;
    }
}

// Rows [start, start + rows_len) of a sequence hold its row blocks; the longest sequence
// sets the grid. The causal candidates of row block m: key blocks up to the one holding the
// last key its last row sees (bottom-right aligned), or every key block.
struct RowPlan {
    bool live;      // the row block exists in this sequence
    int candidates; // key blocks [0, candidates) may be kept
    int diagonal;   // the diagonal block, -1 when the row block sees no key
};

__device__ __forceinline__ RowPlan row_plan(int m, int seq_q, int seq_k, bool causal) {
    RowPlan r{false, 0, -1};
    const int row_blocks = (seq_q + SA_INDEX_BLOCK_M - 1) / SA_INDEX_BLOCK_M;
    if (m >= row_blocks || seq_k <= 0) {
        return r;
    }
    r.live = true;
    const int last_row = min((m + 1) * SA_INDEX_BLOCK_M, seq_q) - 1;
    int64_t visible = (int64_t)last_row + 1 + seq_k - seq_q;
    visible = visible < 0 ? 0 : (visible > seq_k ? seq_k : visible);
    r.diagonal = visible > 0 ? (int)((visible - 1) / SA_INDEX_BLOCK_N) : -1;
    const int key_blocks = (seq_k + SA_INDEX_BLOCK_N - 1) / SA_INDEX_BLOCK_N;
    r.candidates = causal ? r.diagonal + 1 : key_blocks;
    return r;
}

__device__ __forceinline__ void score(const BlockScoreParams& p) {
    extern __shared__ float q_rows[];
    const int m = (int)blockIdx.x, hs = (int)blockIdx.y, b = (int)blockIdx.z;
    const int tid = (int)threadIdx.x;
    if (p.batch <= 0 || p.sel_heads <= 0 || p.q_heads <= 0 || p.k_heads <= 0 || p.dim <= 0 ||
        p.q_heads % p.sel_heads != 0 || p.q_heads % p.k_heads != 0 || b >= p.batch || hs >= p.sel_heads ||
        m >= p.row_blocks || p.key_blocks <= 0) {
        return;
    }
    const int group = p.q_heads / p.sel_heads;
    const int q_per_k = p.q_heads / p.k_heads;
    const Rows qr = sequence_rows(p.cu_seqlens_q, p.total_q, p.seq_q, b);
    const Rows kr = sequence_rows(p.cu_seqlens_k, p.total_k, p.seq_k, b);
    const RowPlan plan = row_plan(m, qr.len, kr.len, p.causal != 0);
    const float* qf = reinterpret_cast<const float*>(p.q_features);
    const float* kf = reinterpret_cast<const float*>(p.k_features);
    for (int i = tid; i < group * p.dim; i += kThreads) {
        const int g = i / p.dim, e = i % p.dim;
        q_rows[i] = qf[(((int64_t)b * p.q_heads + hs * group + g) * p.row_blocks + m) * p.dim + e];
    }
    __syncthreads();
    float* out = reinterpret_cast<float*>(p.scores) + (((int64_t)b * p.sel_heads + hs) * p.row_blocks + m) * p.key_blocks;
    const int live = plan.live ? plan.candidates : 0;
    for (int n = tid; n < p.key_blocks; n += kThreads) {
        float s = -INFINITY;
        if (n < live) {
            float sum = 0.0f;
            for (int g = 0; g < group; ++g) {
                const int kh = (hs * group + g) / q_per_k;
                const float* k = kf + (((int64_t)b * p.k_heads + kh) * p.key_blocks + n) * p.dim;
                const float* q = q_rows + g * p.dim;
                float dot = 0.0f;
                for (int e = 0; e < p.dim; ++e) {
                    dot = fmaf(q[e], k[e], dot);
                }
                sum += p.scale * dot;
            }
            s = sum / (float)group;
        }
        out[n] = s;
    }
}

// XAttention's antidiagonal scoring. Reshaped query row i is Q rows i*S+S-1, ..., i*S
// (reversed, zero past the sequence) concatenated; reshaped key column j is K rows j*S, ...,
// j*S+S-1 concatenated, so their dot product sums the S x S tile (i, j) along its
// antidiagonal. Logits scale * dot / S, causal when j*S <= i*S + seq_k - seq_q, softmax per
// reshaped row over its visible columns, and the block score is the sum of the
// probabilities of the block's reshaped rows and columns (averaged over the query heads of a
// selection head). One CTA per (row block, selection head, sequence): thread t owns key
// blocks t, t + kThreads, ..., so every block sum is one thread's, in a fixed order, and
// the score row accumulates in place; each reshaped row is scored twice (max and
// denominator, then probabilities) rather than stored.
template <typename T>
__device__ __forceinline__ void xattn_score(const XattnScoreParams& p) {
    extern __shared__ float rq[];
    __shared__ float s_m[kWarps], s_s[kWarps];
    const int m = (int)blockIdx.x, hs = (int)blockIdx.y, b = (int)blockIdx.z;
    const int tid = (int)threadIdx.x;
    const int S = p.stride;
    if (p.batch <= 0 || p.sel_heads <= 0 || p.heads_q <= 0 || p.heads_kv <= 0 || p.head_dim <= 0 || S <= 0 ||
        SA_INDEX_BLOCK_M % S != 0 || SA_INDEX_BLOCK_N % S != 0 || p.heads_q % p.sel_heads != 0 ||
        p.heads_q % p.heads_kv != 0 || b >= p.batch || hs >= p.sel_heads || m >= p.row_blocks || p.key_blocks <= 0) {
        return;
    }
    const int D = p.head_dim;
    const int group = p.heads_q / p.sel_heads;
    const Rows qr = sequence_rows(p.cu_seqlens_q, p.total_q, p.seq_q, b);
    const Rows kr = sequence_rows(p.cu_seqlens_k, p.total_k, p.seq_k, b);
    const RowPlan plan = row_plan(m, qr.len, kr.len, p.causal != 0);
    const int cand = plan.live ? min(plan.candidates, p.key_blocks) : 0;
    float* out = reinterpret_cast<float*>(p.scores) + (((int64_t)b * p.sel_heads + hs) * p.row_blocks + m) * p.key_blocks;
    for (int n = tid; n < p.key_blocks; n += kThreads) {
        out[n] = 0.0f;
    }
    const int cols_per_block = SA_INDEX_BLOCK_N / S;
    const int key_cols = (kr.len + S - 1) / S;
    const int q_rows = (qr.len + S - 1) / S;
    const int i0 = m * (SA_INDEX_BLOCK_M / S);
    const int i1 = min(i0 + SA_INDEX_BLOCK_M / S, q_rows);
    const T* q_base = reinterpret_cast<const T*>(p.q) + (p.cu_seqlens_q != 0 ? 0 : (int64_t)b * p.q_batch_stride) + qr.start * p.q_seq_stride;
    const T* k_base = reinterpret_cast<const T*>(p.k) + (p.cu_seqlens_k != 0 ? 0 : (int64_t)b * p.k_batch_stride) + kr.start * p.k_seq_stride;
    const float logit_scale = p.scale / (float)S;
    for (int g = 0; g < group && cand > 0; ++g) {
        const int hq = hs * group + g;
        const T* qh = q_base + (int64_t)hq * p.q_head_stride;
        const T* kh = k_base + (int64_t)(hq / (p.heads_q / p.heads_kv)) * p.k_head_stride;
        for (int i = i0; i < i1; ++i) {
            __syncthreads();  // the previous row's readers of rq are done
            for (int x = tid; x < S * D; x += kThreads) {
                const int row = i * S + S - 1 - x / D;
                rq[x] = row < qr.len ? to_f32(qh[(int64_t)row * p.q_seq_stride + x % D]) : 0.0f;
            }
            __syncthreads();
            // Visible columns [0, visible).
            int visible = key_cols;
            if (p.causal != 0) {
                const int64_t last = ((int64_t)i * S + kr.len - qr.len);
                const int64_t lim = last < 0 ? 0 : last / S + 1;
                visible = (int)(lim < visible ? lim : visible);
            }
            // Pass 1: the row's max and softmax denominator, per thread then merged in a
            // fixed pattern.
            float mx = -INFINITY, sum = 0.0f;
            for (int pass = 0; pass < 2; ++pass) {
                for (int n = tid; n < cand; n += kThreads) {
                    float block_sum = 0.0f;
                    for (int c = 0; c < cols_per_block; ++c) {
                        const int j = n * cols_per_block + c;
                        if (j >= visible) {
                            break;
                        }
                        float dot = 0.0f;
                        for (int r = 0; r < S; ++r) {
                            const int key = j * S + r;
                            if (key >= kr.len) {
                                break;
                            }
                            const T* kv = kh + (int64_t)key * p.k_seq_stride;
                            const float* qv = rq + r * D;
                            for (int d = 0; d < D; ++d) {
                                dot = fmaf(qv[d], to_f32(kv[d]), dot);
                            }
                        }
                        const float l = dot * logit_scale;
                        if (pass == 0) {
                            if (l > mx) {
                                sum = sum * __expf(mx - l) + 1.0f;
                                mx = l;
                            } else if (l == l && mx != -INFINITY) {
                                sum += __expf(l - mx);
                            }
                        } else if (sum > 0.0f) {
                            block_sum += __expf(l - mx) / sum;
                        }
                    }
                    if (pass == 1) {
                        out[n] += block_sum;
                    }
                }
                if (pass == 0) {
                    // Merge (max, sum) pairs: symmetric, so every lane of a butterfly gets
                    // the same bits; then the warps in order.
                    for (int offset = 16; offset > 0; offset >>= 1) {
                        const float om = __shfl_xor_sync(0xffffffffu, mx, offset);
                        const float os = __shfl_xor_sync(0xffffffffu, sum, offset);
                        const float nm = fmaxf(mx, om);
                        const float a = mx == -INFINITY ? 0.0f : sum * __expf(mx - nm);
                        const float c = om == -INFINITY ? 0.0f : os * __expf(om - nm);
                        mx = nm;
                        sum = a + c;
                    }
                    if (tid % 32 == 0) {
                        s_m[tid / 32] = mx;
                        s_s[tid / 32] = sum;
                    }
                    __syncthreads();
                    mx = -INFINITY;
                    sum = 0.0f;
                    for (int w = 0; w < kWarps; ++w) {
                        const float om = s_m[w], os = s_s[w];
                        const float nm = fmaxf(mx, om);
                        const float a = mx == -INFINITY ? 0.0f : sum * __expf(mx - nm);
                        const float c = om == -INFINITY ? 0.0f : os * __expf(om - nm);
                        mx = nm;
                        sum = a + c;
                    }
                    __syncthreads();  // s_m / s_s are rewritten by the next row
                }
            }
        }
    }
    for (int n = tid; n < p.key_blocks; n += kThreads) {
        out[n] = n < cand ? out[n] / (float)group : -INFINITY;
    }
}

// Unsigned order of a score's bits = score order, every NaN lowest (topk_select.cu's key).
__device__ __forceinline__ uint32_t order_key(float x) {
    const uint32_t bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    return (bits & 0x80000000u) != 0u ? ~bits : (bits | 0x80000000u);
}

// Exclusive prefix sum over the CTA in thread order (two barriers; `total` is the sum).
template <typename V>
__device__ __forceinline__ V block_exclusive_scan(V v, V& total, V* warp_totals) {
    const int lane = (int)threadIdx.x % 32;
    const int warp = (int)threadIdx.x / 32;
    V inclusive = v;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const V up = __shfl_up_sync(0xffffffffu, inclusive, offset);
        inclusive += lane >= offset ? up : (V)0;
    }
    if (lane == 31) {
        warp_totals[warp] = inclusive;
    }
    __syncthreads();
    V before = (V)0;
    total = (V)0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
        const V t = warp_totals[w];
        before += w < warp ? t : (V)0;
        total += t;
    }
    __syncthreads();
    return before + inclusive - v;
}

__device__ __forceinline__ void select(const BlockSelectParams& p) {
    extern __shared__ unsigned long long sorted[];
    __shared__ int int_totals[kWarps];
    __shared__ float float_totals[kWarps];
    __shared__ float s_max[kWarps];
    __shared__ int s_keep;
    const int m = (int)blockIdx.x, h = (int)blockIdx.y, b = (int)blockIdx.z;
    const int tid = (int)threadIdx.x;
    if (p.batch <= 0 || p.heads <= 0 || p.row_blocks <= 0 || p.key_blocks <= 0 || p.max_blocks <= 0 ||
        p.sort_len < p.key_blocks || (p.sort_len & (p.sort_len - 1)) != 0 || b >= p.batch || h >= p.heads ||
        m >= p.row_blocks) {
        return;
    }
    uint32_t* flags = reinterpret_cast<uint32_t*>(sorted + p.sort_len);
    const int64_t row = ((int64_t)b * p.heads + h) * p.row_blocks + m;
    const float* scores = reinterpret_cast<const float*>(p.scores) + row * p.key_blocks;
    int32_t* count_out = reinterpret_cast<int32_t*>(p.block_count) + row;
    int32_t* index_out = reinterpret_cast<int32_t*>(p.block_index) + row * p.max_blocks;

    const Rows qr = sequence_rows(p.cu_seqlens_q, p.total_q, p.seq_q, b);
    const Rows kr = sequence_rows(p.cu_seqlens_k, p.total_k, p.seq_k, b);
    const RowPlan plan = row_plan(m, qr.len, kr.len, p.causal != 0);
    // Never more candidates than the score row holds, whatever the lengths say.
    const int cand = plan.live ? min(plan.candidates, p.key_blocks) : 0;
    const bool sink = p.force_sink != 0 && cand > 0;
    const bool diag = p.force_diagonal != 0 && plan.diagonal >= 0 && plan.diagonal < cand;
    const int forced = (sink ? 1 : 0) + (diag && !(sink && plan.diagonal == 0) ? 1 : 0);

    // Sort keys, largest first: forced, then the score's order, then the lower id.
    for (int i = tid; i < p.sort_len; i += kThreads) {
        unsigned long long key = 0ull;
        if (i < cand) {
            const bool f = (sink && i == 0) || (diag && i == plan.diagonal);
            key = ((unsigned long long)(f ? 1u : 0u) << 63) | ((unsigned long long)order_key(scores[i]) << 31) |
                  (unsigned long long)(0x7fffffffu - (uint32_t)i);
        }
        sorted[i] = key;
    }
    for (int i = tid; i < p.sort_len / 32 + 1; i += kThreads) {
        flags[i] = 0u;
    }
    __syncthreads();
    // Bitonic sort, descending; each pair is owned by the thread of its lower position.
    for (int k = 2; k <= p.sort_len; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < p.sort_len; i += kThreads) {
                const int partner = i ^ j;
                if (partner > i) {
                    const unsigned long long a = sorted[i], c = sorted[partner];
                    const bool descending = (i & k) == 0;
                    if (descending ? a < c : a > c) {
                        sorted[i] = c;
                        sorted[partner] = a;
                    }
                }
            }
            __syncthreads();
        }
    }

    // How many of the sorted candidates to keep.
    int keep;
    if (p.top_k > 0) {
        keep = max(forced, min(p.top_k, cand));
    } else {
        // The largest real score (NaN skipped; fmaxf's result does not depend on order).
        float mx = -INFINITY;
        for (int i = tid; i < cand; i += kThreads) {
            mx = fmaxf(mx, scores[i]);
        }
        for (int offset = 16; offset > 0; offset >>= 1) {
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, offset));
        }
        if (tid % 32 == 0) {
            s_max[tid / 32] = mx;
        }
        __syncthreads();
        mx = s_max[0];
        for (int w = 1; w < kWarps; ++w) {
            mx = fmaxf(mx, s_max[w]);
        }
        // Pass 1: the total weight; pass 2: the first sorted position whose inclusive sum
        // reaches threshold * total. Both walk the sorted order in chunks of kThreads with
        // the same scan, so the sums are the same numbers in both passes.
        float total = 0.0f;
        int found = -1;
        for (int pass = 0; pass < 2; ++pass) {
            const float target = p.threshold * total;
            float carry = 0.0f;
            for (int base = 0; base < cand; base += kThreads) {
                const int i = base + tid;
                float w = 0.0f;
                if (i < cand) {
                    const int id = (int)(0x7fffffffu - (uint32_t)(sorted[i] & 0x7fffffffull));
                    const float s = scores[min(max(id, 0), p.key_blocks - 1)];
                    if (p.mass_scores != 0) {
                        w = s > 0.0f ? s : 0.0f;  // NaN and negatives weigh nothing
                    } else if (s == s) {
                        w = s == mx ? 1.0f : __expf(s - mx);
                    }
                }
                float chunk_total;
                const float before = block_exclusive_scan(w, chunk_total, float_totals);
                if (pass == 1) {
                    const float inclusive = carry + before + w;
                    const int hit = i < cand && inclusive >= target ? 1 : 0;
                    int hits;
                    const int hits_before = block_exclusive_scan(hit, hits, int_totals);
                    if (hit != 0 && hits_before == 0 && found < 0) {
                        s_keep = i + 1;
                    }
                    __syncthreads();
                    if (hits > 0 && found < 0) {
                        found = s_keep;
                    }
                }
                carry += chunk_total;
            }
            total = carry;
        }
        keep = max(forced, found < 0 ? cand : found);
    }
    keep = min(keep, min(cand, p.max_blocks));

    // Mark the kept ids, then write them ascending.
    for (int i = tid; i < keep; i += kThreads) {
        const int id = (int)(0x7fffffffu - (uint32_t)(sorted[i] & 0x7fffffffull));
        if (0 <= id && id < p.sort_len) {
            atomicOr(&flags[id / 32], 1u << (id % 32));
        }
    }
    __syncthreads();
    int written = 0;
    for (int base = 0; base < cand; base += kThreads) {
        const int i = base + tid;
        const int take = i < cand && ((flags[i / 32] >> (i % 32)) & 1u) != 0 ? 1 : 0;
        int taken;
        const int pos = written + block_exclusive_scan(take, taken, int_totals);
        if (take != 0 && pos < p.max_blocks) {
            index_out[pos] = i;
        }
        written += taken;
    }
    written = min(written, p.max_blocks);
    for (int j = written + tid; j < p.max_blocks; j += kThreads) {
        index_out[j] = -1;
    }
    if (tid == 0) {
        *count_out = written;
    }
}

}  // namespace block_select

extern "C" __global__ void __launch_bounds__(SA_BLOCK_POOL_THREADS)
block_pool_f16(const __grid_constant__ BlockPoolParams p) {
    block_select::pool<half>(p);
}

extern "C" __global__ void __launch_bounds__(SA_BLOCK_POOL_THREADS)
block_pool_bf16(const __grid_constant__ BlockPoolParams p) {
    block_select::pool<__nv_bfloat16>(p);
}

extern "C" __global__ void __launch_bounds__(SA_BLOCK_SELECT_THREADS)
block_score(const __grid_constant__ BlockScoreParams p) {
    block_select::score(p);
}

extern "C" __global__ void __launch_bounds__(SA_BLOCK_SELECT_THREADS)
block_select_blocks(const __grid_constant__ BlockSelectParams p) {
    block_select::select(p);
}

extern "C" __global__ void __launch_bounds__(SA_BLOCK_SELECT_THREADS)
xattn_score_f16(const __grid_constant__ XattnScoreParams p) {
    block_select::xattn_score<half>(p);
}

extern "C" __global__ void __launch_bounds__(SA_BLOCK_SELECT_THREADS)
xattn_score_bf16(const __grid_constant__ XattnScoreParams p) {
    block_select::xattn_score<__nv_bfloat16>(p);
}
