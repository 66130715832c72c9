// Split-KV decode: 1 to 16 new query tokens per sequence against a long cached context
// (FlashDecoding's scheme, over sparse key sets as SeerAttention-R and Quest use them).
//
// The keys of one (sequence, kv head) are split into `splits` ranges of key slots, one CTA
// each, and every CTA writes its range's normalised output and LSE to f32 partials, which
// merge_states (kernels/merge.cu) combines exactly. The split count and the grid are fixed
// by the capacity the host plans for, not by one step's lengths, which the kernel reads on
// the device: a CUDA graph captured once replays over growing contexts.
//
// A CTA packs up to SA_DECODE_ROWS query rows as the mma's M dimension, four warps of one
// 16-row m-tile each: for dense and block-sparse keys, every head of the kv head's GQA group
// for every new token (row r = token r / group, head r % group of the group), so one K/V
// tile load serves them all; for top-k keys, whose slots differ per token, the group's heads
// of one token. A warp with no real rows skips the math but shares the loads.
//
// Key slots are walked kTileSlots at a time: threads 0.. kTileSlots-1 resolve slot i of the
// tile to its key (dense: the slot itself; block-sparse: block_index[slot / block] * block +
// slot % block; top-k: indices[row, kv head, slot]), publish it (-1 when the slot is out of
// range, past the sequence, or on a page outside the caches), and the K and V rows of the
// published keys are gathered with cp.async, double-buffered, from a contiguous cache or
// through the block table. Masking is per element: a -1 key, or a key past the row's causal
// limit (token t sees keys up to seqlens_k - q_len + t).
#include "common/c_std.h"

#include "params.h"
#include "common/cp_async.cuh"
#include "common/gathered_tiles.cuh"
#include "common/instantiate.cuh"
#include "common/mask.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/score_options.cuh"
#include "common/smem_tile.cuh"
#include "common/tile_math.cuh"
#include "common/varlen.cuh"

namespace decode {

using namespace attn;

constexpr int kThreads = SA_DECODE_THREADS;
constexpr int kRows = SA_DECODE_ROWS;
constexpr int kWarps = kThreads / 32;
static_assert(kWarps * 16 == kRows, "each warp owns one 16-row m-tile of the CTA's rows");

// Key slots per K/V tile: 64 up to head_dim 128; 16 at 256, where a warp's Q fragments (64
// registers) and accumulators (128) leave room for 8 score registers (with 32 slots, as the
// top-k kernel takes, the dense kernel spilled 12 bytes on sm_90). Mirrored by
// plan::decode::tile_slots.
__host__ __device__ constexpr int tile_slots(int d) { return d <= 128 ? 64 : 16; }

enum class Keys { Dense, BlockSparse, TopK };

// Where one sequence's new tokens and keys are: its token count and first packed row (the
// partials' row of its token 0), and its key count; zero tokens when its lengths are out of
// bounds (nothing is read or written for it then).
struct Sequence {
    int q_len;
    int row0;
    int seq_k;
};

__device__ __forceinline__ Sequence sequence(const DecodeParams& p, int b) {
    const AttnTensorParams& tp = p.tensors;
    Sequence s;
    if (tp.cu_seqlens_q != 0) {
        const QueryRows q = query_rows(tp, p.q_len, b);
        s.q_len = q.len;
        s.row0 = q.start;
    } else {
        s.q_len = p.q_len;
        s.row0 = b * p.q_len;
    }
    const int lk = reinterpret_cast<const int32_t*>(tp.seqlens_k)[b];
    const bool ok = 0 <= lk && lk <= p.seq_k;
    s.seq_k = ok ? lk : 0;
    s.q_len = ok ? s.q_len : 0;
    return s;
}

// The byte address of key `key`'s row of the kv head in the K (or V) cache `base` (already
// at the sequence's batch entry and kv head), or 0 for none: a negative key, or a key on a
// page outside the caches (`table`: the sequence's block-table row; null when contiguous).
__device__ __forceinline__ uint64_t key_row(const AttnTensorParams& tp, const int32_t* table, uint64_t base,
                                            int64_t token_stride, int64_t page_stride, int key) {
    if (key < 0) {
        return 0;
    }
    if (table == nullptr) {
        return base + 2 * (uint64_t)key * (uint64_t)token_stride;
    }
    const int page = __ldg(table + (key >> tp.page_shift));
    if (page < 0 || page >= tp.num_pages) {
        return 0;
    }
    const int64_t token = key & ((1 << tp.page_shift) - 1);
    return base + 2 * ((uint64_t)page * page_stride + token * token_stride);
}

// `Opts`: the `_opt` variant, with the score options (common/score_options.cuh); the sinks
// join split 0's state only, so that the merge counts each once.
template <typename T, int D, Keys K, bool Opts = false>
__device__ __forceinline__ void decode_split(const DecodeParams& p) {
    constexpr int N = tile_slots(D);
    using KvTile = SmemTile<N, D>;
    using QTile = SmemTile<kRows, D>;
    // Dynamic shared memory: two stages of K and V tiles, or before the loop the Q tile,
    // whichever is larger (plan::decode::shared_mem_bytes).
    static_assert(N <= kThreads, "a thread per slot publishes a tile's keys");
    constexpr int kDimBlocks = D / 8;
    constexpr int kKeyBlocks = N / 8;
    constexpr int kDimSteps = D / 16;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int s_keys[2][N];

    const AttnTensorParams& tp = p.tensors;
    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int g = lane / 4;
    const int t4 = lane % 4;
    const int split = blockIdx.x;
    const int b = blockIdx.z;
    if (p.heads_kv <= 0 || p.heads_q < p.heads_kv || p.row_chunks <= 0 || p.q_len <= 0 || b >= p.batch) {
        return;
    }
    const int token_groups = K == Keys::TopK ? p.q_len : 1;
    const int chunk = blockIdx.y % p.row_chunks;
    const int tg = (blockIdx.y / p.row_chunks) % token_groups;
    const int hk = blockIdx.y / p.row_chunks / token_groups;
    if (hk >= p.heads_kv) {
        return;
    }
    const int group = p.heads_q / p.heads_kv;
    const Sequence seq = sequence(p, b);
    // The CTA's rows: the group's heads of its tokens (all new tokens, or token tg).
    const int tokens = K == Keys::TopK ? (tg < seq.q_len ? 1 : 0) : seq.q_len;
    const int real_rows = group * tokens - chunk * kRows;  // rows of this chunk that exist
    if (real_rows <= 0) {
        return;  // uniform: the chunk holds no row of this sequence
    }
    auto token_of = [&](int r) { return K == Keys::TopK ? tg : (chunk * kRows + r) / group; };
    auto head_of = [&](int r) { return hk * group + (K == Keys::TopK ? chunk * kRows + r : (chunk * kRows + r) % group); };
    const bool causal = p.causal != 0;
    // The last key row r sees (-1: a padding row).
    auto last_key_of = [&](int r) {
        if (r >= real_rows) {
            return -1;
        }
        return causal ? seq.seq_k - seq.q_len + token_of(r) : seq.seq_k - 1;
    };

    // The sequence's K and V rows of the kv head: at its batch entry, or through its
    // block-table row.
    const bool paged = tp.block_table != 0;
    const int32_t* table = paged ? reinterpret_cast<const int32_t*>(tp.block_table) + (int64_t)b * tp.max_pages : nullptr;
    const uint64_t k_base = tp.k + 2 * ((paged ? 0 : (uint64_t)b * tp.k_batch_stride) + (uint64_t)hk * tp.k_head_stride);
    const uint64_t v_base = tp.v + 2 * ((paged ? 0 : (uint64_t)b * tp.v_batch_stride) + (uint64_t)hk * tp.v_head_stride);

    // The split's key slots. Dense slots are keys from `key_base`: 0, or under a window the
    // first token's window start (later tokens' windows start later), so that no split
    // walks keys every row's window excludes.
    int n_slots;
    int key_base = 0;
    const int32_t* blocks = nullptr;
    const int32_t* slot_keys = nullptr;
    if constexpr (K == Keys::Dense) {
        if constexpr (Opts) {
            key_base = max(0, ScoreOptions::window_start(tp.window_left, 0, seq.q_len, seq.seq_k));
        }
        n_slots = seq.seq_k - key_base;
    } else if constexpr (K == Keys::BlockSparse) {
        const int64_t row = (int64_t)b * p.heads_kv + hk;
        const int count = __ldg(reinterpret_cast<const int32_t*>(p.block_count) + row);
        n_slots = max(0, min(count, p.max_blocks)) << p.block_shift;
        blocks = reinterpret_cast<const int32_t*>(p.block_index) + row * p.max_blocks;
    } else {
        n_slots = p.topk;
        slot_keys = reinterpret_cast<const int32_t*>(p.indices) + ((int64_t)(seq.row0 + tg) * p.heads_kv + hk) * p.topk;
    }
    // The host keeps splits * split_slots within i32 (plan::decode).
    const int first = split * p.split_slots;
    const int end = min(n_slots, first + p.split_slots);
    const int n_tiles = end > first ? (end - first + N - 1) / N : 0;

    // Slot i of tile `tile` as a key (-1: none), published by thread i.
    auto key_of_slot = [&](int slot) {
        if (slot >= end) {
            return -1;
        }
        int64_t key;
        if constexpr (K == Keys::Dense) {
            key = (int64_t)key_base + slot;
        } else if constexpr (K == Keys::BlockSparse) {
            const int id = __ldg(blocks + (slot >> p.block_shift));
            key = id < 0 ? -1 : ((int64_t)id << p.block_shift) + (slot & ((1 << p.block_shift) - 1));
        } else {
            key = __ldg(slot_keys + slot);
        }
        if (key < 0 || key >= seq.seq_k) {
            return -1;
        }
        return key_row(tp, table, k_base, tp.k_seq_stride, tp.k_page_stride, (int)key) != 0 ? (int)key : -1;
    };
    auto stage_keys = [&](int tile, int stage) {
        if (tid < N) {
            s_keys[stage][tid] = key_of_slot(first + tile * N + tid);
        }
        __syncthreads();
    };

    const uint32_t smem = smem_u32(smem_raw);
    auto k_smem = [&](int stage) { return smem + (uint32_t)(2 * stage) * KvTile::kBytes; };
    auto v_smem = [&](int stage) { return smem + (uint32_t)(2 * stage + 1) * KvTile::kBytes; };
    auto load_tile = [&](int stage) {
        load_rows<N, D, kThreads>(tp.k, k_smem(stage), tid, [&](int r) {
            return key_row(tp, table, k_base, tp.k_seq_stride, tp.k_page_stride, s_keys[stage][r]);
        });
        load_rows<N, D, kThreads>(tp.v, v_smem(stage), tid, [&](int r) {
            return key_row(tp, table, v_base, tp.v_seq_stride, tp.v_page_stride, s_keys[stage][r]);
        });
    };

    const bool has_rows = warp * 16 < real_rows;  // warp-uniform
    const int last_key[2] = {last_key_of(warp * 16 + g), last_key_of(warp * 16 + g + 8)};

    float acc[kDimBlocks][4];
    zero_fragments(acc);
    RowState st;
    st.init();
    // Rows g and g + 8 are different tokens in general: each has its own window.
    ScoreOptions score_opts;
    if constexpr (Opts) {
        score_opts.init(tp, token_of(warp * 16 + g), token_of(warp * 16 + g + 8), seq.q_len, seq.seq_k);
    }

    if (n_tiles > 0) {
        // Q rows (padding rows zero-filled) staged where the K/V stages go, each warp's
        // fragments taken, and only then the first tile loaded: at head_dim 256 the Q tile
        // (32 KiB) is larger than a stage, and the wait is once per CTA.
        const uint64_t q_first = tp.q + 2 * ((uint64_t)b * tp.q_batch_stride +
                                             (uint64_t)(tp.cu_seqlens_q != 0 ? seq.row0 : 0) * tp.q_seq_stride);
        load_rows<kRows, D, kThreads>(tp.q, smem, tid, [&](int r) {
            return r < real_rows ? q_first + 2 * ((uint64_t)token_of(r) * tp.q_seq_stride +
                                                  (uint64_t)head_of(r) * tp.q_head_stride)
                                 : (uint64_t)0;
        });
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        uint32_t q_frag[kDimSteps][4];
        load_q_fragments<QTile>(q_frag, smem, warp * 16, lane);
        __syncthreads();  // every warp holds its fragments: the stages may be filled
        stage_keys(0, 0);
        load_tile(0);
        cp_async_commit();

        run_gathered_tiles(n_tiles, stage_keys, load_tile, [&](int stage) {
            if (has_rows) {
                float s[kKeyBlocks][4];
                tile_scores<T, D>(s, q_frag, k_smem(stage), lane);
                auto key_of = [&](int col) { return s_keys[stage][col]; };
                if constexpr (Opts) {
                    score_opts.apply(s, t4, key_of);
                }
                mask_tile(s, t4, key_of, last_key[0], last_key[1]);
                online_softmax_step<kKeyBlocks, kDimBlocks, false>(s, acc, st, p.scale_log2);
                tile_pv<T, D>(s, acc, v_smem(stage), lane);
            }
        });
    }

    // The split's state of each real row: the normalised output (0 for a row that saw no
    // key) and the LSE (-inf then), as f32 partials.
    if (!has_rows) {
        return;
    }
    if constexpr (Opts) {
        float sink[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = warp * 16 + g + 8 * r;
            sink[r] = split == 0 && row < real_rows ? sink_raw_of(tp, head_of(row), p.softmax_scale) : -INFINITY;
        }
        fold_sinks<kDimBlocks>(acc, st, sink, p.scale_log2, t4);
    }
    float* out = reinterpret_cast<float*>(p.partial_out);
    float* lse = reinterpret_cast<float*>(p.partial_lse);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = warp * 16 + g + 8 * r;
        const float total = quad_sum(st.sum[r]);
        if (row >= real_rows) {
            continue;
        }
        const bool no_key = total == 0.f;
        const float inv = no_key ? 0.f : 1.f / total;
        const int64_t n = seq.row0 + token_of(row);  // the partials' row
        const int64_t h = head_of(row);
        float* dst = out + (((int64_t)split * p.rows + n) * p.heads_q + h) * D;
#pragma unroll
        for (int d = 0; d < kDimBlocks; ++d) {
            // No-key rows write exact zeros: acc may hold 0 * NaN from masked V rows.
            const float2 v = no_key ? make_float2(0.f, 0.f) : make_float2(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv);
            *reinterpret_cast<float2*>(dst + 8 * d + 2 * t4) = v;
        }
        if (t4 == 0) {
            lse[((int64_t)split * p.heads_q + h) * p.rows + n] =
                no_key ? -INFINITY : (st.max[r] * p.scale_log2 + log2f(total)) * 0.69314718055994531f;
        }
    }
}

}  // namespace decode

// One extern "C" kernel per (key source, dtype, head_dim): decode_<source>_<dtype>_hd<D>,
// the names src/plan/decode.rs asks for. Contiguous and paged caches, padded and packed
// queries are runtime forms of each (params.h).
// The `_opt` variants (score options compiled in) are decode_<source>_opt_<dtype>_hd<D>.
#define DECODE_KERNEL(name, keys, dtype_name, dtype, d)                                          \
    extern "C" __global__ void __launch_bounds__(decode::kThreads, 1)                           \
        decode_##name##_##dtype_name##_hd##d(const __grid_constant__ DecodeParams p) {          \
        decode::decode_split<dtype, d, decode::Keys::keys>(p);                                 \
    }                                                                                           \
    extern "C" __global__ void __launch_bounds__(decode::kThreads, 1)                           \
        decode_##name##_opt_##dtype_name##_hd##d(const __grid_constant__ DecodeParams p) {      \
        decode::decode_split<dtype, d, decode::Keys::keys, true>(p);                           \
    }
#define SA_INSTANTIATE(dtype_name, dtype, d)                            \
    DECODE_KERNEL(dense, Dense, dtype_name, dtype, d)                   \
    DECODE_KERNEL(block_sparse, BlockSparse, dtype_name, dtype, d)      \
    DECODE_KERNEL(topk, TopK, dtype_name, dtype, d)
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE
