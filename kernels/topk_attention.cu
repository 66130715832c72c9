// Top-k token attention (DSA, NSA's selection branch, HiP): query row i of kv head hk
// attends exactly the keys listed in indices[b, i, hk, :]. The listed keys are shared by
// the whole GQA group of hk, so the group's query heads are packed as the M dimension of
// the mma (16 rows per warp): each gathered K/V row is loaded once and used by every head
// of the group.
//
// One warp per (b, i, hk, chunk of 16 heads). Keys are walked 32 index slots at a time:
// lane l validates slot l and publishes its key; the K and V rows of the tile are then
// gathered into shared memory with cp.async (zero-filled for skipped slots), double
// buffered, and the same pieces as kernels/attention.cu compute the tile (common/
// tile_math.cuh, online_softmax.cuh, epilogue.cuh). Skipped slots (-1, out of range,
// causally hidden) are masked to -inf.
// Repeated keys in a row would be counted twice: the host rejects them before upload.
#include <stdint.h>
#include <math.h>

#include "params.h"
#include "common/cp_async.cuh"
#include "common/epilogue.cuh"
#include "common/mask.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/smem_tile.cuh"
#include "common/tile_math.cuh"

namespace topk {

using namespace attn;

constexpr int kRows = 16;     // query heads per warp (mma M)
constexpr int kSlots = 32;    // index slots (keys) per tile
constexpr int kThreads = 32;  // one warp

template <int D>
struct Layout {
    static constexpr int kChunks = D / 8;
    static constexpr int kTileBytes = kSlots * D * 2;
    static constexpr int kQBytes = kRows * D * 2;
    // K stage 0, V stage 0, K stage 1, V stage 1, then Q.
    static constexpr int kBytes = 4 * kTileBytes + kQBytes;
};

template <typename T, int D>
__device__ __forceinline__ void topk_attention_fwd(const TopkParams& p) {
    using L = Layout<D>;
    using Tile = SmemTile<D>;  // only its swizzled chunk_offset: the row count differs
    constexpr int kDimBlocks = D / 8;
    constexpr int kKeyBlocks = kSlots / 8;
    constexpr int kDimSteps = D / 16;

    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int s_keys[2][kSlots];

    const int lane = threadIdx.x;
    const int g = lane / 4;
    const int t4 = lane % 4;
    const int i = blockIdx.x;
    const int b = blockIdx.z;
    if (p.heads_kv <= 0 || p.head_chunks <= 0 || p.heads_q < p.heads_kv) {
        return;
    }
    const int hk = blockIdx.y / p.head_chunks;
    const int chunk = blockIdx.y % p.head_chunks;
    const int group = p.heads_q / p.heads_kv;
    const int head0 = hk * group + chunk * kRows;       // first query head of this warp
    const int rows = min(kRows, group - chunk * kRows);  // real rows (heads) of this warp
    const bool causal = p.causal != 0;
    const int last_key = last_visible_key(i, p.seq_q, p.seq_k, causal);

    const uint32_t smem = smem_u32(smem_raw);
    auto k_smem = [&](int stage) { return smem + (uint32_t)(2 * stage) * L::kTileBytes; };
    auto v_smem = [&](int stage) { return smem + (uint32_t)(2 * stage + 1) * L::kTileBytes; };
    const uint32_t q_smem = smem + 4u * L::kTileBytes;

    const AttnTensorParams& tp = p.tensors;
    const uint64_t k_base = tp.k + 2 * ((uint64_t)b * tp.k_batch_stride + (uint64_t)hk * tp.k_head_stride);
    const uint64_t v_base = tp.v + 2 * ((uint64_t)b * tp.v_batch_stride + (uint64_t)hk * tp.v_head_stride);
    const int32_t* slots = reinterpret_cast<const int32_t*>(p.indices) +
                           (((int64_t)b * p.seq_q + i) * p.heads_kv + hk) * (int64_t)p.topk;
    const int n_tiles = p.topk > 0 ? (p.topk + kSlots - 1) / kSlots : 0;

    // Lane l validates slot l of tile `tile` and publishes its key (-1: skipped).
    auto stage_keys = [&](int tile, int stage) {
        const int slot = tile * kSlots + lane;
        int key = -1;
        if (slot < p.topk) {
            key = __ldg(slots + slot);
            key = (key >= 0 && key <= last_key) ? key : -1;
        }
        s_keys[stage][lane] = key;
        __syncthreads();
    };
    // Gathers the K and V rows of a tile (keys published in s_keys[stage]).
    auto load_tile = [&](int stage) {
        // Partly unrolled: fully unrolled, the precomputed addresses of head_dim 128 push
        // the warp to ~250 registers.
#pragma unroll 4
        for (int it = 0; it < kSlots * L::kChunks / kThreads; ++it) {
            const int idx = it * kThreads + lane;
            const int row = idx / L::kChunks;
            const int c = idx % L::kChunks;
            const int key = s_keys[stage][row];
            const bool valid = key >= 0;
            const uint64_t k_src = valid ? k_base + 2 * ((uint64_t)key * tp.k_seq_stride + c * 8) : k_base;
            const uint64_t v_src = valid ? v_base + 2 * ((uint64_t)key * tp.v_seq_stride + c * 8) : v_base;
            cp_async_16(k_smem(stage) + Tile::chunk_offset(row, c), k_src, valid);
            cp_async_16(v_smem(stage) + Tile::chunk_offset(row, c), v_src, valid);
        }
    };

    float acc[kDimBlocks][4];
    zero_fragments(acc);
    RowState st;
    st.init();

    if (n_tiles > 0 && last_key >= 0) {
        // Q: row r is query head head0 + r of query row i; padding rows are zero.
        const uint64_t q_row0 = tp.q + 2 * ((uint64_t)b * tp.q_batch_stride + (uint64_t)i * tp.q_seq_stride);
#pragma unroll
        for (int it = 0; it < kRows * L::kChunks / kThreads; ++it) {
            const int idx = it * kThreads + lane;
            const int row = idx / L::kChunks;
            const int c = idx % L::kChunks;
            const bool valid = row < rows;
            const uint64_t src = valid ? q_row0 + 2 * ((uint64_t)(head0 + row) * tp.q_head_stride + c * 8) : q_row0;
            cp_async_16(q_smem + Tile::chunk_offset(row, c), src, valid);
        }
        cp_async_commit();
        stage_keys(0, 0);
        load_tile(0);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        uint32_t q_frag[kDimSteps][4];
        load_q_fragments<D>(q_frag, q_smem, 0, lane);

        for (int tile = 0; tile < n_tiles; ++tile) {
            const int stage = tile & 1;
            if (tile + 1 < n_tiles) {
                stage_keys(tile + 1, stage ^ 1);
                load_tile(stage ^ 1);
            }
            cp_async_commit();
            cp_async_wait<1>();
            __syncthreads();

            float s[kKeyBlocks][4];
            tile_scores<T, D>(s, q_frag, k_smem(stage), lane);
            // Every head of the warp shares query row i, hence one visibility rule.
            auto key_of = [&](int col) { return s_keys[stage][col]; };
            mask_tile(s, t4, key_of, last_key, last_key);
            online_softmax_step<kKeyBlocks, kDimBlocks>(s, acc, st, p.scale_log2);
            tile_pv<T, D>(s, acc, v_smem(stage), lane);
            __syncthreads();  // the stage is read by every lane before it is refilled
        }
        cp_async_wait<0>();
    }

    uint64_t row_ptr[2];
    int head[2] = {head0 + g, head0 + g + 8};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const bool real = (g + 8 * r) < rows;
        row_ptr[r] = real ? tp.out + 2 * ((uint64_t)b * tp.out_batch_stride + (uint64_t)i * tp.out_seq_stride +
                                         (uint64_t)head[r] * tp.out_head_stride)
                          : 0;
    }
    float lse[2];
    write_output<T, kDimBlocks>(acc, st, row_ptr, lane, p.scale_log2, lse);
    if (tp.lse != 0 && t4 == 0) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (row_ptr[r] != 0) {
                reinterpret_cast<float*>(tp.lse)[((int64_t)b * p.heads_q + head[r]) * p.seq_q + i] = lse[r];
            }
        }
    }
}

}  // namespace topk

// One extern "C" kernel per (dtype, head_dim), generated from this list; src/attention
// asks for topk_attn_fwd_<dtype>_hd<D>.
#define TOPK_KERNEL(dtype_name, dtype, d)                                                      \
    extern "C" __global__ void __launch_bounds__(topk::kThreads)                              \
        topk_attn_fwd_##dtype_name##_hd##d(const __grid_constant__ TopkParams p) {            \
        topk::topk_attention_fwd<dtype, d>(p);                                                \
    }

TOPK_KERNEL(f16, half, 64)
TOPK_KERNEL(f16, half, 128)
TOPK_KERNEL(bf16, __nv_bfloat16, 64)
TOPK_KERNEL(bf16, __nv_bfloat16, 128)
