// Prefill attention: ONE FlashAttention-2-style forward main loop on mma.sync m16n8k16,
// and the key-tile sources that plug into it (dense, block-sparse, vertical-slash; A-shape
// runs as block-sparse).
//
// A row block is kBlockM = 64 query rows of one (batch, query head), the index granularity
// of every sparse format, run by 4 warps of 16 rows each. A dense or block-sparse CTA holds
// SA_PREFILL_ROW_BLOCKS = 2 row blocks (8 warps, 128 rows, as FlashAttention-2's CTA) and
// walks the union of their key-tile lists: each K/V tile is loaded once for both, and a
// warp runs the mma only on the tiles its own row block keeps (RowBlockPair). The
// vertical-slash CTA holds one row block (its gathered column tiles differ per row block).
// The Q tile is loaded once and kept in registers as mma A
// fragments. K and V tiles (kBlockN = 64 keys each) are double-buffered in shared memory:
// while tile t is being computed, tile t + 1 is already in flight with cp.async. S = Q K^T
// and O += P V use f32 accumulators; the softmax is online, in exp2 with the scale folded
// in; the output is written once per row at the end. The tile sizes and thread count come
// from params.h (SA_PREFILL_*).
//
// A key-tile source hands the loop a stream of tiles, each either kBlockN contiguous keys
// starting at `key0`, or kBlockN slots of a gathered column list. Every thread of the CTA
// walks the same stream (it reads the same index entries), so control flow stays uniform
// and the barriers line up. Index tensors are untrusted: a source skips entries that are
// out of range or out of order, and every global access is bounded by the params' sizes.
#include "common/c_std.h"

#include "params.h"
#include "common/cp_async.cuh"
#include "common/epilogue.cuh"
#include "common/index_list.cuh"
#include "common/instantiate.cuh"
#include "common/mask.cuh"
#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/smem_tile.cuh"
#include "common/tile_math.cuh"

namespace attn {

constexpr int kBlockM = SA_PREFILL_TILE_M;  // query rows per row block
constexpr int kBlockN = SA_PREFILL_TILE_N;  // keys per K/V tile
constexpr int kBlockThreads = SA_PREFILL_THREADS;  // threads per row block
constexpr int kBlockWarps = kBlockThreads / 32;
static_assert(kBlockWarps * 16 == kBlockM, "each warp owns 16 query rows (one mma M)");
static_assert(SA_PREFILL_ROW_BLOCKS == 2, "RowBlockPair merges exactly two row blocks");
// The sources read the index tensors in row-block units (RowBlockPair merges two), so the
// row block must be the index block:
static_assert(kBlockM == SA_INDEX_BLOCK_M,
              "a row block is an index row block: blockIdx.x * kRowBlocks + i indexes the block_count / "
              "block_index / column_* rows, and the grid is ceil(row_blocks / kRowBlocks)");
static_assert(kBlockN == SA_INDEX_BLOCK_N,
              "key tiles are index key blocks: block-sparse block n is the tile at n * kBlockN, and a "
              "vertical-slash tile start (block_offset) begins a tile of kBlockN keys");
// publish_gathered_keys scans a gathered tile's keys in at most two warps.
static_assert(kBlockN <= 64 && kBlockN <= kBlockThreads, "a gathered tile's keys fit the first two warps");

// One tile of keys: contiguous from key0, or gathered list slots key0 .. key0 + kBlockN - 1.
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

// The base of a source whose tiles are all contiguous: no list slot ever holds a key.
// Sources cover one row block (kRowBlocks = 1) unless they say otherwise.
struct ContiguousTiles {
    static constexpr int kRowBlocks = 1;
    static constexpr bool kGathers = false;  // never yields a gathered tile
    __device__ __forceinline__ int gathered_key(const AttnParams&, int, int) const { return -1; }
    // Whether the CTA's row block `block` attends tile t: its bit of t.keep.
    __device__ __forceinline__ bool keeps(const TileRef& t, int block) const { return (t.keep >> block) & 1; }
};

// Every tile up to the row block's visibility limit: a causal launch stops at the last
// tile any of its rows can see.
struct DenseSource : ContiguousTiles {
    int next_key;
    int limit;

    __device__ __forceinline__ void init(const AttnParams&, const CtaPos& c) {
        next_key = 0;
        limit = c.key_limit;
    }
    __device__ __forceinline__ bool next(const AttnParams&, TileRef& t) {
        if (next_key >= limit) {
            return false;
        }
        t.key0 = next_key;
        t.gathered = false;
        t.keep = 1;
        next_key = limit - next_key > kBlockN ? next_key + kBlockN : limit;
        return true;
    }
};

// The row block's block list: the first block_count entries of its block_index row. An
// entry outside [0, NB), not above the previous kept entry, or past the visibility limit
// is skipped (the last two would be double-counted or fully masked work).
struct BlockSparseSource : ContiguousTiles {
    IndexRow blocks;
    int pos;
    int prev;
    int key_blocks;
    int limit;

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        blocks = index_row(p.block_index, p.block_count, p.max_blocks, desc_row(p, c));
        pos = 0;
        prev = -1;
        key_blocks = (int)(((int64_t)p.seq_k + kBlockN - 1) / kBlockN);
        limit = c.key_limit;
    }
    __device__ __forceinline__ bool next(const AttnParams&, TileRef& t) {
        while (pos < blocks.count) {
            const int n = __ldg(blocks.entries + pos);
            ++pos;
            if (n <= prev || n >= key_blocks || (int64_t)n * kBlockN >= limit) {
                continue;
            }
            prev = n;
            t.key0 = n * kBlockN;
            t.gathered = false;
            t.keep = 1;
            return true;
        }
        return false;
    }
};

// Vertical-slash in the converted form (src/pattern/vs_convert.rs): first the tiles of
// kBlockN keys starting at each block_offset entry, then the vertical columns, gathered
// kBlockN at a time. A tile start outside [0, limit) or overlapping the previous kept tile
// is skipped; a column outside [0, seq_k), or not above every in-range column listed
// before it (see publish_gathered_keys), is masked out. The converter never lists a column
// inside one of the row's tiles; a hand-made list that did would count that key twice.
struct VerticalSlashSource {
    static constexpr int kRowBlocks = 1;
    static constexpr bool kGathers = true;
    IndexRow offsets;
    IndexRow columns;
    int pos;
    int prev_end;
    int next_slot;
    int limit;

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        const int64_t row = desc_row(p, c);
        offsets = index_row(p.block_index, p.block_count, p.max_blocks, row);
        columns = index_row(p.column_index, p.column_count, p.max_columns, row);
        pos = 0;
        prev_end = 0;
        next_slot = 0;
        limit = c.key_limit;
    }
    __device__ __forceinline__ bool next(const AttnParams&, TileRef& t) {
        while (pos < offsets.count) {
            const int o = __ldg(offsets.entries + pos);
            ++pos;
            if (o < prev_end || o >= limit) {
                continue;
            }
            // Saturating: o + kBlockN can pass INT32_MAX when seq_k is near it.
            prev_end = o > 0x7fffffff - kBlockN ? 0x7fffffff : o + kBlockN;
            t.key0 = o;
            t.gathered = false;
            t.keep = 1;
            return true;
        }
        if (next_slot < columns.count) {
            t.key0 = next_slot;
            t.gathered = true;
            t.keep = 1;
            next_slot = columns.count - next_slot > kBlockN ? next_slot + kBlockN : columns.count;
            return true;
        }
        return false;
    }
    // The key in list slot `first + i`, or -1 when the slot is past the count or the key
    // is out of range.
    __device__ __forceinline__ int gathered_key(const AttnParams& p, int first, int i) const {
        if (i >= columns.count - first) {
            return -1;
        }
        const int key = __ldg(columns.entries + first + i);
        return key >= 0 && key < p.seq_k ? key : -1;
    }
    __device__ __forceinline__ bool keeps(const TileRef& t, int block) const { return (t.keep >> block) & 1; }
};

// The CtaPos of row block m of head (b, h).
__device__ __forceinline__ CtaPos row_block_pos(const AttnParams& p, int b, int h, int m) {
    CtaPos c;
    c.b = b;
    c.h = h;
    c.m = m;
    c.key_limit = row_block_key_limit(m, kBlockM, p.seq_q, p.seq_k, p.causal != 0);
    return c;
}

// Row blocks c.m and c.m + 1 under one CTA: the union of the two blocks' tile streams of a
// contiguous single-block source S, in ascending key order, each tile once, with `keep`
// saying which block's stream holds it. Each block's stream is S's own walk of that block,
// so every skip rule (entries past the count, out of range, past the visibility limit, not
// above the block's previous kept entry) applies per row block exactly as in S. S must
// yield strictly ascending key0 values (DenseSource and BlockSparseSource do). Without a
// row block c.m + 1 (an odd row-block count) the second stream is empty and its index row
// is never read.
template <typename S>
struct RowBlockPair : ContiguousTiles {
    static constexpr int kRowBlocks = 2;
    static constexpr int kNone = 0x7fffffff;
    S first, second;
    int head0, head1;  // key0 of each stream's next tile, kNone when it is exhausted

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        first.init(p, c);
        head0 = pull(p, first);
        head1 = kNone;
        if (c.m + 1 < p.row_blocks) {
            second.init(p, row_block_pos(p, c.b, c.h, c.m + 1));
            head1 = pull(p, second);
        }
    }
    static __device__ __forceinline__ int pull(const AttnParams& p, S& s) {
        TileRef t;
        return s.next(p, t) ? t.key0 : kNone;
    }
    __device__ __forceinline__ bool next(const AttnParams& p, TileRef& t) {
        const int k = min(head0, head1);
        if (k == kNone) {
            return false;
        }
        t.key0 = k;
        t.gathered = false;
        t.keep = (head0 == k ? 1 : 0) | (head1 == k ? 2 : 0);
        if (head0 == k) {
            head0 = pull(p, first);
        }
        if (head1 == k) {
            head1 = pull(p, second);
        }
        return true;
    }
};

// Dense over row blocks c.m and c.m + 1: the tiles of the longer stream (both streams start
// at key 0 in kBlockN steps, so the shorter one is its prefix), each kept by the blocks whose
// visibility limit it starts below. The same tiles and keep bits as RowBlockPair<DenseSource>
// with less state.
struct DenseSourcePair : ContiguousTiles {
    static constexpr int kRowBlocks = 2;
    int next_key;
    int limit0, limit1;  // each row block's visibility limit (0 for a missing second block)
    int end;             // max(limit0, limit1)

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        next_key = 0;
        limit0 = c.key_limit;
        limit1 = c.m + 1 < p.row_blocks ? row_block_pos(p, c.b, c.h, c.m + 1).key_limit : 0;
        end = max(limit0, limit1);
    }
    __device__ __forceinline__ bool next(const AttnParams&, TileRef& t) {
        if (next_key >= end) {
            return false;
        }
        t.key0 = next_key;
        t.gathered = false;
        t.keep = (next_key < limit0 ? 1 : 0) | (next_key < limit1 ? 2 : 0);
        next_key = end - next_key > kBlockN ? next_key + kBlockN : end;
        return true;
    }
    // The same answer as t.keep's bit, from the block's limit (loop-invariant per warp), so
    // the main loop never builds t.keep: one compare per tile.
    __device__ __forceinline__ bool keeps(const TileRef& t, int block) const {
        return t.key0 < (block == 0 ? limit0 : limit1);
    }
};
using BlockSparseSourcePair = RowBlockPair<BlockSparseSource>;

// Publishes the keys of a gathered tile into s_keys[stage], keeping list entry `tid` (its
// in-range key `v`, or -1) only if it is above every in-range entry listed before it, in
// this tile or an earlier one: the kept keys are then strictly ascending, so no key is
// attended twice whatever the list holds, and a valid (ascending) list loses nothing.
// That is a prefix maximum: a shuffle scan inside each of the first two warps, warp 0's
// total handed to warp 1 through shared memory, and the running maximum of the earlier
// tiles kept in carry[stage ^ 1] (gathered tiles alternate stages). Every thread of the
// CTA must call it (two barriers).
__device__ __forceinline__ void publish_gathered_keys(int v, int tid, int stage, int (&keys)[2][kBlockN], int (&carry)[2],
                                                      int& warp0_max) {
    const int lane = tid % 32;
    int inclusive = v;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
        inclusive = lane >= offset ? max(inclusive, up) : inclusive;
    }
    const int shifted = __shfl_up_sync(0xffffffffu, inclusive, 1);
    const int exclusive = lane == 0 ? -1 : shifted;
    if (tid == 31) {
        warp0_max = inclusive;
    }
    __syncthreads();
    if (tid < kBlockN) {
        int before = max(carry[stage ^ 1], exclusive);
        before = tid >= 32 ? max(before, warp0_max) : before;
        keys[stage][tid] = v > before ? v : -1;
        if (tid == kBlockN - 1) {
            carry[stage] = max(before, v);
        }
    }
    __syncthreads();
}

// The key held in tile row `slot` (-1: none), for contiguous tiles.
__device__ __forceinline__ int contiguous_key(const AttnParams& p, const TileRef& t, int slot) {
    return slot < p.seq_k - t.key0 ? t.key0 + slot : -1;
}

// Issues the cp.async copies of the K and V tiles (kBlockN rows x D each) of `t` into
// `k_smem` and `v_smem`. `keys` holds the key of each tile row for gathered tiles;
// contiguous tiles compute theirs. A contiguous tile that ends inside seq_k (every tile of a
// sparse or dense row block but the one that crosses seq_k) takes the copy without per-row
// checks (ContiguousRowsCopy: k_copy and v_copy, set up once per CTA for k_base and v_base
// when Hoisted, else set up here for the tile); the branch is uniform.
template <int D, int Threads, bool Hoisted>
__device__ __forceinline__ void load_kv_tiles(const AttnParams& p, uint64_t k_base, uint64_t v_base,
                                              const ContiguousRowsCopy<kBlockN, D, Threads>& k_copy,
                                              const ContiguousRowsCopy<kBlockN, D, Threads>& v_copy, const TileRef& t,
                                              const int* keys, uint32_t k_smem, uint32_t v_smem, int tid) {
    const AttnTensorParams& tp = p.tensors;
    if (!t.gathered && p.seq_k - t.key0 >= kBlockN) {
        if constexpr (Hoisted) {
            k_copy.issue(t.key0, k_smem);
            v_copy.issue(t.key0, v_smem);
        } else {
            ContiguousRowsCopy<kBlockN, D, Threads> k_tile, v_tile;
            k_tile.init(k_base, tp.k_seq_stride, tid);
            v_tile.init(v_base, tp.v_seq_stride, tid);
            k_tile.issue(t.key0, k_smem);
            v_tile.issue(t.key0, v_smem);
        }
    } else {
        auto key_of = [&](int row) { return t.gathered ? keys[row] : contiguous_key(p, t, row); };
        load_tile_rows<kBlockN, D, Threads>(k_base, tp.k_seq_stride, k_smem, tid, key_of);
        load_tile_rows<kBlockN, D, Threads>(v_base, tp.v_seq_stride, v_smem, tid, key_of);
    }
}

// Loads the Q tile of this CTA (Rows x D; rows past seq_q zero-filled) into `smem`.
template <int Rows, int D, int Threads>
__device__ __forceinline__ void load_q_tile(const AttnParams& p, uint64_t base, int row0, uint32_t smem, int tid) {
    load_tile_rows<Rows, D, Threads>(base, p.tensors.q_seq_stride, smem, tid,
                                         [&](int row) { return row < p.seq_q - row0 ? row0 + row : -1; });
}

template <typename T, int D, typename Source>
__device__ __forceinline__ void attention_fwd(const AttnParams& p) {
    constexpr int kRowBlocks = Source::kRowBlocks;  // row blocks per CTA (1 or 2)
    constexpr int kThreads = kRowBlocks * kBlockThreads;
    constexpr int kWarps = kThreads / 32;
    constexpr int kCtaM = kRowBlocks * kBlockM;  // query rows per CTA
    using KvTile = SmemTile<kBlockN, D>;
    using QTile = SmemTile<kCtaM, D>;
    static_assert(QTile::kBytes <= 2 * KvTile::kBytes, "the Q tile borrows stage 1 (its K and V) before the loop");
    constexpr int kDimBlocks = D / 8;     // n-blocks of the output accumulator
    constexpr int kKeyBlocks = kBlockN / 8;  // n-blocks of the score tile
    constexpr int kDimSteps = D / 16;     // k-steps of Q K^T

    extern __shared__ __align__(128) unsigned char smem_raw[];
    __shared__ int s_keys[2][kBlockN];  // keys of gathered tiles, per stage
    __shared__ int s_carry[2];          // running max of gathered keys (publish_gathered_keys)
    __shared__ int s_warp0_max;

    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int lane = tid % 32;
    const int g = lane / 4;
    const int t4 = lane % 4;

    // The CTA's first row block; a paired source reads the second one itself.
    const CtaPos c = row_block_pos(p, blockIdx.z, blockIdx.y, blockIdx.x * kRowBlocks);
    const bool causal = p.causal != 0;
    const int row0 = c.m * kBlockM;
    // This warp's row block within the CTA: the bit of TileRef::keep it answers to.
    const int block = warp / kBlockWarps;
    const int kv_head = c.h / (p.heads_q / p.heads_kv);

    const AttnTensorParams& tp = p.tensors;
    const uint64_t q_base = tp.q + 2 * ((uint64_t)c.b * tp.q_batch_stride + (uint64_t)c.h * tp.q_head_stride);
    const uint64_t k_base = tp.k + 2 * ((uint64_t)c.b * tp.k_batch_stride + (uint64_t)kv_head * tp.k_head_stride);
    const uint64_t v_base = tp.v + 2 * ((uint64_t)c.b * tp.v_batch_stride + (uint64_t)kv_head * tp.v_head_stride);
    // Dense and block-sparse CTAs set up their contiguous K/V tile copies once. The
    // vertical-slash CTA, whose contiguous tiles are few (its slash tiles), sets them up per
    // tile: held for the whole loop, their registers took its head_dim 64 kernel from 167
    // to 169 on sm_90, past the 168 that fit three 128-thread CTAs per SM.
    constexpr bool kHoistAddressing = !Source::kGathers;
    ContiguousRowsCopy<kBlockN, D, kThreads> k_copy{}, v_copy{};
    if constexpr (kHoistAddressing) {
        k_copy.init(k_base, tp.k_seq_stride, tid);
        v_copy.init(v_base, tp.v_seq_stride, tid);
    }

    // Stage s: K at [2s], V at [2s + 1]; Q borrows stage 1 (its K slot, and its V slot for
    // a 128-row Q tile) before the loop.
    const uint32_t smem = smem_u32(smem_raw);
    auto k_smem = [&](int stage) { return smem + (uint32_t)(2 * stage) * KvTile::kBytes; };
    auto v_smem = [&](int stage) { return smem + (uint32_t)(2 * stage + 1) * KvTile::kBytes; };

    // This thread's two fragment rows and their last visible keys.
    const int my_row[2] = {row0 + warp * 16 + g, row0 + warp * 16 + g + 8};
    const int last_key[2] = {last_visible_key(my_row[0], p.seq_q, p.seq_k, causal),
                             last_visible_key(my_row[1], p.seq_q, p.seq_k, causal)};
    // A contiguous tile whose last key is at most the warp's row block's first row's last
    // visible key, and that ends inside seq_k, is visible to every row of the block: no mask
    // needed. That is key0 <= no_mask_key0, one 32-bit compare per tile: key0 + kBlockN - 1
    // <= first row's last key and seq_k - key0 >= kBlockN, taken in 64 bits once here
    // (clamped at -1, below every key0).
    const int no_mask_key0 = [&] {
        const int64_t first_row_last_key = last_visible_key(row0 + block * kBlockM, p.seq_q, p.seq_k, causal);
        int64_t t = first_row_last_key - (kBlockN - 1);
        t = t < (int64_t)p.seq_k - kBlockN ? t : (int64_t)p.seq_k - kBlockN;
        return (int)(t > -1 ? t : -1);
    }();

    float acc[kDimBlocks][4];
    zero_fragments(acc);
    RowState st;
    st.init();

    Source src;
    src.init(p, c);
    TileRef cur;
    bool has = src.next(p, cur);

    if (tid == 0) {
        s_carry[0] = s_carry[1] = -1;  // published by the first barrier of the first gathered tile
    }
    // Publishes the keys of a gathered tile before its loads are issued (uniform branch).
    auto stage_keys = [&](const TileRef& t, int stage) {
        if (t.gathered) {
            const int v = tid < kBlockN ? src.gathered_key(p, t.key0, tid) : -1;
            publish_gathered_keys(v, tid, stage, s_keys, s_carry, s_warp0_max);
        }
    };

    if (has) {
        load_q_tile<kCtaM, D, kThreads>(p, q_base, row0, k_smem(1), tid);
        cp_async_commit();
        stage_keys(cur, 0);
        load_kv_tiles<D, kThreads, kHoistAddressing>(p, k_base, v_base, k_copy, v_copy, cur, s_keys[0], k_smem(0),
                                                     v_smem(0), tid);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();

        uint32_t q_frag[kDimSteps][4];
        load_q_fragments<QTile>(q_frag, k_smem(1), warp * 16, lane);
        __syncthreads();  // stage 1 is free for the first prefetch

        // The lane's ldmatrix offsets in a K and a V tile. Dense and block-sparse CTAs compute
        // them once for every tile, made opaque to the optimizer, which would otherwise sink
        // them into the loop and recompute them on every tile; vertical-slash CTAs leave them
        // to it, as their copies (kHoistAddressing); held, they took its head_dim 64 kernel from
        // 167 to 173 registers on sm_90.
        uint32_t k_off[4], v_off[4];
        k_lane_offsets<D, kKeyBlocks>(k_off, lane);
        v_lane_offsets<D, kKeyBlocks>(v_off, lane);
        if constexpr (kHoistAddressing) {
            asm volatile("" : "+r"(k_off[0]), "+r"(k_off[1]), "+r"(k_off[2]), "+r"(k_off[3]), "+r"(v_off[0]),
                         "+r"(v_off[1]), "+r"(v_off[2]), "+r"(v_off[3]));
        }

        int stage = 0;
        while (has) {
            TileRef nxt;
            const bool has_next = src.next(p, nxt);
            if (has_next) {
                stage_keys(nxt, stage ^ 1);
                load_kv_tiles<D, kThreads, kHoistAddressing>(p, k_base, v_base, k_copy, v_copy, nxt, s_keys[stage ^ 1],
                                                             k_smem(stage ^ 1), v_smem(stage ^ 1), tid);
            }
            cp_async_commit();  // possibly empty, so "all but the newest group" is this tile
            cp_async_wait<1>();
            __syncthreads();

            // Only the warps of a row block that keeps the tile compute on it (a warp-uniform
            // branch); every warp takes part in the loads and the barriers.
            if (src.keeps(cur, block)) {
                // S = Q K^T for this warp's 16 rows and the tile's kBlockN keys.
                float s[kKeyBlocks][4];
                tile_scores_at<T, D>(s, q_frag, k_smem(stage), k_off);

                // Masked where the tile is gathered (per element, by the published keys), or
                // crosses seq_k or the causal diagonal of the row block's first row (by one
                // threshold per row: tile column col holds key key0 + col, visible iff
                // col <= last_key - key0, which also rejects keys past seq_k as last_key <
                // seq_k; no overflow: last_key >= seq_k - seq_q and key0 < seq_k).
                const bool gathered = Source::kGathers && cur.gathered;
                if (gathered) {
                    mask_tile(s, t4, [&](int col) { return s_keys[stage][col]; }, last_key[0], last_key[1]);
                } else if (cur.key0 > no_mask_key0) {
                    mask_tile_columns(s, t4, last_key[0] - cur.key0, last_key[1] - cur.key0);
                }

                online_softmax_step<kKeyBlocks, kDimBlocks>(s, acc, st, p.scale_log2);

                // O += P V: P straight from the score registers (C layout == A layout).
                tile_pv_at<T, D>(s, acc, v_smem(stage), v_off);
            }
            __syncthreads();  // every warp is done with this stage before it is refilled

            cur = nxt;
            has = has_next;
            stage ^= 1;
        }
        cp_async_wait<0>();
    }

    // The output is staged in stage 0 (its K buffer, and its V buffer for 8 warps), a
    // 16-row slice per warp: every warp has passed the loop's last barrier, so no warp still
    // reads a K/V tile, and every cp.async has completed. OutTile rows are 16-row slices of
    // a KvTile, so they fit. The warps of a row block past seq_q (the second block of an odd
    // row-block count) write nothing: write_output skips rows at or past seq_q.
    static_assert(kWarps * OutTile<D>::kBytes == kRowBlocks * KvTile::kBytes,
                  "the warps' output rows fill stage 0's K (and V) tile");
    const int warp_row0 = row0 + warp * 16;
    OutRows out;
    out.first = tp.out + 2 * ((uint64_t)c.b * tp.out_batch_stride + (uint64_t)warp_row0 * tp.out_seq_stride +
                              (uint64_t)c.h * tp.out_head_stride);
    out.stride = 2 * tp.out_seq_stride;
    out.count = p.seq_q - warp_row0;
    float lse[2];
    write_output<T, D>(acc, st, k_smem(0) + (uint32_t)warp * OutTile<D>::kBytes, lane, p.scale_log2, out, lse);
    if (tp.lse != 0 && t4 == 0) {
        float* lse_rows = reinterpret_cast<float*>(tp.lse) + ((int64_t)c.b * p.heads_q + c.h) * p.seq_q;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            if (my_row[r] < p.seq_q) {
                lse_rows[my_row[r]] = lse[r];
            }
        }
    }
}

}  // namespace attn

// One extern "C" kernel per (pattern, dtype, head_dim). The launch bounds say one CTA per
// SM is enough: without it, ptxas capped the 256-thread dense head_dim 64 kernel at 128
// registers on sm_90 (two CTAs per SM) and spilled.
// One extern "C" kernel per (pattern, dtype, head_dim): every pattern at every pair of
// params.h's SA_FOR_EACH_DTYPE x SA_FOR_EACH_HEAD_DIM. The name is what src/plan/prefill.rs asks
// for (attn_fwd_<pattern>_<dtype>_hd<D>).
#define ATTN_KERNEL(pattern, source, dtype_name, dtype, d)                                        \
    extern "C" __global__ void __launch_bounds__(attn::source::kRowBlocks * attn::kBlockThreads, 1) \
        attn_fwd_##pattern##_##dtype_name##_hd##d(const __grid_constant__ AttnParams p) {        \
        attn::attention_fwd<dtype, d, attn::source>(p);                                           \
    }

#define SA_INSTANTIATE(dtype_name, dtype, d)                           \
    ATTN_KERNEL(dense, DenseSourcePair, dtype_name, dtype, d)              \
    ATTN_KERNEL(block_sparse, BlockSparseSourcePair, dtype_name, dtype, d) \
    ATTN_KERNEL(vertical_slash, VerticalSlashSource, dtype_name, dtype, d)
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE
