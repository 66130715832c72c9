// What both prefill main loops share (kernels/prefill/one_block_loop.cuh and
// q_smem_loop.cuh): the tile constants, a tile reference, the CTA's place in the
// problem, the cp.async loads of the Q and K/V tiles, and the output of one m-tile.
#pragma once
#include "common/c_std.h"

#include "params.h"
#include "common/cp_async.cuh"
#include "common/epilogue.cuh"
#include "common/mask.cuh"
#include "common/smem_tile.cuh"
#include "common/varlen.cuh"

namespace attn {

constexpr int kBlockM = SA_PREFILL_TILE_M;  // query rows per row block
constexpr int kBlockN = SA_PREFILL_TILE_N;  // keys per K/V tile (an index key block)

// Keys per K/V tile of the dense kernel at head_dim D, FlashAttention-2's choice for
// sm_80 (Flash_fwd_kernel_traits<64, 128, 128, 4> and <128, 128, 64, 4>): at head_dim 64
// the scores of 128 keys fit beside the accumulators, and each Q fragment read then feeds
// twice the mma. The sparse kernels keep the index block. Mirrored by
// plan::prefill::key_tile (src/plan/prefill.rs), which sizes the shared memory.
__host__ __device__ constexpr int dense_key_tile(int d) { return d <= 64 ? 2 * kBlockN : kBlockN; }
constexpr int kCtaThreads = SA_PREFILL_THREADS;  // threads per CTA, both loops
constexpr int kCtaWarps = kCtaThreads / 32;
// The one-block loop gives each warp one 16-row m-tile of its row block; the q_smem loop
// gives each warp prefill_row_blocks(D) m-tiles (16 or 32 rows) of one of its row blocks.
static_assert(kCtaWarps * 16 == kBlockM, "the one-block loop's warps own 16 rows (one mma M) each");
static_assert(SA_PREFILL_ROW_BLOCKS == 2, "the q_smem loop covers one or two row blocks");

// Row blocks per CTA, and m-tiles per warp, of the dense and block-sparse kernels at
// head_dim d: two up to SA_PREFILL_PAIR_MAX_HEAD_DIM, one above (where two m-tiles'
// accumulators alone would take every register). Mirrored by plan::prefill::row_blocks_per_cta.
__host__ __device__ constexpr int prefill_row_blocks(int d) {
    return d <= SA_PREFILL_PAIR_MAX_HEAD_DIM ? SA_PREFILL_ROW_BLOCKS : 1;
}
// The sources read the index tensors in row-block units (a pair source merges two), so the
// row block must be the index block:
static_assert(kBlockM == SA_INDEX_BLOCK_M,
              "a row block is an index row block: blockIdx.x * kRowBlocks + i indexes the block_count / "
              "block_index / column_* rows, and the grid is ceil(row_blocks / kRowBlocks)");
static_assert(kBlockN == SA_INDEX_BLOCK_N,
              "key tiles are index key blocks: block-sparse block n is the tile at n * kBlockN, and a "
              "vertical-slash tile start (block_offset) begins a tile of kBlockN keys");

// One tile of keys: contiguous from key0 (kBlockN keys, or a source's own kTileKeys), or
// gathered list slots key0 .. key0 + kBlockN - 1.
// `keep` has bit i set when the CTA's row block i attends the tile (a single-block source
// always sets bit 0).
struct TileRef {
    int key0;
    bool gathered;
    int keep;
};

// Where one CTA is in the problem.
struct CtaPos {
    int b, h, m;
    int key_limit;  // keys at or past this are invisible to every row of the row block
};

__device__ __forceinline__ int64_t desc_row(const AttnParams& p, const CtaPos& c) {
    // The descriptor head: the query head itself, or its GQA group when H == heads_kv.
    const int group = p.heads_q / p.heads_kv;
    const int hd = p.desc_heads == p.heads_q ? c.h : c.h / group;
    return ((int64_t)c.b * p.desc_heads + hd) * p.row_blocks + c.m;
}

// The CtaPos of row block m of head (b, h).
__device__ __forceinline__ CtaPos row_block_pos(const AttnParams& p, int b, int h, int m) {
    CtaPos c;
    c.b = b;
    c.h = h;
    c.m = m;
    c.key_limit = row_block_key_limit(m, kBlockM, p.seq_q, p.seq_k, p.causal != 0);
    return c;
}

// The global addresses of the CTA's query head's Q rows and its kv head's K and V rows
// (row 0 of each; rows follow at the tensors' sequence strides).
struct HeadBases {
    uint64_t q, k, v;
};

__device__ __forceinline__ HeadBases head_bases(const AttnParams& p, const CtaPos& c) {
    const AttnTensorParams& tp = p.tensors;
    const uint64_t kv_head = (uint64_t)(c.h / (p.heads_q / p.heads_kv));
    HeadBases h;
    h.q = tp.q + 2 * ((uint64_t)c.b * tp.q_batch_stride + (uint64_t)c.h * tp.q_head_stride);
    h.k = tp.k + 2 * ((uint64_t)c.b * tp.k_batch_stride + kv_head * tp.k_head_stride);
    h.v = tp.v + 2 * ((uint64_t)c.b * tp.v_batch_stride + kv_head * tp.v_head_stride);
    return h;
}

// The key0 at or below which a contiguous tile of N keys needs no mask for any row of the
// row block whose first row is `block_row0`: its last key is at most that row's last
// visible key (later rows see at least as far) and it ends inside seq_k. key0 + N - 1 <=
// first row's last key and seq_k - key0 >= N, taken in 64 bits once per CTA so the loop
// pays one 32-bit compare per tile; clamped at -1, below every key0.
template <int N = kBlockN>
__device__ __forceinline__ int unmasked_tile_bound(const AttnParams& p, int block_row0) {
    const int64_t first_row_last_key = last_visible_key(block_row0, p.seq_q, p.seq_k, p.causal != 0);
    int64_t t = first_row_last_key - (N - 1);
    t = t < (int64_t)p.seq_k - N ? t : (int64_t)p.seq_k - N;
    return (int)(t > -1 ? t : -1);
}

// The key held in tile row `slot` (-1: none), for contiguous tiles.
__device__ __forceinline__ int contiguous_key(const AttnParams& p, const TileRef& t, int slot) {
    return slot < p.seq_k - t.key0 ? t.key0 + slot : -1;
}

// Issues the cp.async copies of the N rows of a K or V tile from a paged cache: keys key0
// .. key0 + N - 1 (paged_row), a key past seq_k zero-filled. One block-table read per row
// and thread: a tile that spans pages costs no extra pass. 128-key tiles go two passes at
// a time: unrolled fully, every pass's page and address were live at once, and the paged
// dense head_dim 64 kernel spilled (nvcc 13, sm_90).
template <int N, int D, int Threads>
__device__ __forceinline__ void load_paged_rows(const AttnParams& p, uint64_t base, int64_t token_stride,
                                                int64_t page_stride, int key0, uint32_t smem, int tid) {
    load_rows<N, D, Threads, (N > kBlockN ? 2 : 0)>(base, smem, tid, [&](int r) {
        return r < p.seq_k - key0 ? paged_row(p.tensors, base, token_stride, page_stride, key0 + r) : 0;
    });
}

// Issues the cp.async copies of one K or V tile (N rows x D of the tensor at `base`, rows
// `row_stride` elements apart) of `t` into `smem`. `keys` holds the key of each tile row
// for gathered tiles; contiguous tiles compute theirs. A contiguous tile that ends inside
// seq_k (every tile of a sparse or dense row block but the one that crosses seq_k) takes
// the copy without per-row checks (ContiguousRowsCopy, set up here: held across the loop,
// its registers made ptxas spill); the branch is uniform.
template <int N, int D, int Threads>
__device__ __forceinline__ void load_kv_tile(const AttnParams& p, uint64_t base, int64_t row_stride, const TileRef& t,
                                             const int* keys, uint32_t smem, int tid) {
    if (contiguous_copy_fits<N, D, Threads>() && !t.gathered && p.seq_k - t.key0 >= N) {
        if constexpr (contiguous_copy_fits<N, D, Threads>()) {
            ContiguousRowsCopy<N, D, Threads> tile;
            tile.init(base, row_stride, tid);
            tile.issue(t.key0, smem);
        }
    } else {
        auto key_of = [&](int row) { return t.gathered ? keys[row] : contiguous_key(p, t, row); };
        load_tile_rows<N, D, Threads>(base, row_stride, smem, tid, key_of);
    }
}

// Loads the Q tile of this CTA (Rows x D; rows past seq_q zero-filled) into `smem`. With
// Unchecked, a tile inside seq_q (all but a head's last) takes the copy without per-row
// work.
template <int Rows, int D, int Threads, bool Unchecked = false>
__device__ __forceinline__ void load_q_tile(const AttnParams& p, uint64_t base, int row0, uint32_t smem, int tid) {
    constexpr bool kFast = Unchecked && contiguous_copy_fits<Rows, D, Threads>();
    if (kFast && p.seq_q - row0 >= Rows) {
        if constexpr (kFast) {
            ContiguousRowsCopy<Rows, D, Threads> copy;
            copy.init(base, p.tensors.q_seq_stride, tid);
            copy.issue(row0, smem);
        }
    } else {
        load_tile_rows<Rows, D, Threads>(base, p.tensors.q_seq_stride, smem, tid,
                                         [&](int row) { return row < p.seq_q - row0 ? row0 + row : -1; });
    }
}

// Writes one warp's m-tile: the 16 query rows from `row0` of the CTA's head (c.b, c.h),
// with their LSE when the launch asks for it. `stage` is OutTile<D>::kBytes of shared
// memory that only this warp uses from here on. Rows at or past seq_q are not written.
template <typename T, int D>
__device__ __forceinline__ void write_mtile(const AttnParams& p, const CtaPos& c, int row0, const float (&acc)[D / 8][4],
                                            const RowState& st, uint32_t stage, int lane) {
    const AttnTensorParams& tp = p.tensors;
    OutRows out;
    out.first = tp.out + 2 * ((uint64_t)c.b * tp.out_batch_stride + (uint64_t)row0 * tp.out_seq_stride +
                              (uint64_t)c.h * tp.out_head_stride);
    out.stride = 2 * tp.out_seq_stride;
    out.count = p.seq_q - row0;
    float lse[2];
    write_output<T, D>(acc, st, stage, lane, p.scale_log2, out, lse);
    if (tp.lse != 0 && lane % 4 == 0) {
        float* lse_rows = reinterpret_cast<float*>(tp.lse) + c.b * tp.lse_batch_stride + c.h * tp.lse_head_stride;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + lane / 4 + 8 * r;
            if (row < p.seq_q) {
                lse_rows[row] = lse[r];
            }
        }
    }
}

}  // namespace attn
