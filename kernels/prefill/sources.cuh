// The key-tile sources of the prefill loops. A source hands its loop a stream of tiles,
// each either kBlockN contiguous keys starting at `key0`, or kBlockN slots of a gathered
// column list. Every thread of the CTA walks the same stream (it reads the same index
// entries), so control flow stays uniform and the barriers line up. Index tensors are
// untrusted: a source skips entries that are out of range or out of order, and every
// global access is bounded by the params' sizes.
//
// VerticalSlashSource walks one row block (kRowBlocks = 1), for the one-block loop (and the
// q_smem loop at head_dim 256). DenseSource and BlockSparseSource walk the merged streams
// of the q_smem loop's kRowBlocks row blocks: two up to head_dim 128, one at 256
// (prefill_row_blocks).
#pragma once
#include "common/c_std.h"

#include "common/index_list.cuh"
#include "prefill/tiles.cuh"

namespace attn {

// The base of the dense and block-sparse sources, whose tiles are all contiguous.
struct ContiguousTiles {
    static constexpr bool kGathers = false;  // never yields a gathered tile
    // Whether the stream can start at a sliding window's first tile (start_at); the others
    // hand their listed tiles to the loop, which masks what lies outside the window.
    static constexpr bool kStartsAtWindow = false;
    // Whether the CTA's row block `block` attends tile t: its bit of t.keep.
    __device__ __forceinline__ bool keeps(const TileRef& t, int block) const { return (t.keep >> block) & 1; }
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
    static constexpr bool kStartsAtWindow = false;
    static constexpr int kTileKeys = kBlockN;  // the q_smem loop's (head_dim 256) tile size
    static constexpr bool kHoistAddressing = true;
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
    // The slots of the gathered tile that starts at slot `first` which the list fills.
    __device__ __forceinline__ int gathered_slots(int first) const { return min(columns.count - first, kBlockN); }
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

// One row block's block list, as a stream: the first block_count entries of its
// block_index row. An entry is skipped when it is not above the previous kept entry (it
// would be counted twice, or is negative), or not below the first block that starts at or
// past the row block's visibility limit (block_bound: fully masked work; the limit is at
// most seq_k, so that also rejects blocks past the last one). `head` is the next kept
// block, kNone once the list is exhausted. The bound is recomputed per advance rather than
// held: the q_smem loop has no register to spare for it.
struct BlockListStream {
    static constexpr int kNone = 0x7fffffff;
    const int32_t* entries;  // the next entry to read
    int remaining;           // entries left to read
    int head;

    // The first key block row block m's rows cannot see.
    static __device__ __forceinline__ int block_bound(const AttnParams& p, int m) {
        const int limit = row_block_key_limit(m, kBlockM, p.seq_q, p.seq_k, p.causal != 0);
        return (int)(((int64_t)limit + kBlockN - 1) / kBlockN);
    }
    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        const IndexRow r = index_row(p.block_index, p.block_count, p.max_blocks, desc_row(p, c));
        entries = r.entries;
        remaining = r.count;
        head = -1;
        advance(p, c.m);
    }
    // A stream with no row block (the second of an odd row-block count): its index row is
    // never read.
    __device__ __forceinline__ void init_empty() {
        entries = nullptr;
        remaining = 0;
        head = kNone;
    }
    // Moves head to the next kept entry of row block m's list.
    __device__ __forceinline__ void advance(const AttnParams& p, int m) {
        const int prev = head;
        head = kNone;
        if (remaining <= 0) {
            return;
        }
        const int bound = block_bound(p, m);
#pragma unroll 1
        while (remaining > 0) {
            const int n = __ldg(entries);
            ++entries;
            --remaining;
            if (n > prev && n < bound) {
                head = n;
                return;
            }
        }
    }
};

// Block-sparse over the RowBlocks (1 or 2) row blocks from c.m: with two, the union of the
// two blocks' streams, in ascending block order, each tile once, with `keep` saying which
// block's list holds it (one: the second stream is empty). Every skip rule applies per row
// block, exactly as that block's own walk would.
//
// The two streams' state (eight registers) lives in shared memory between calls, leaving
// its registers to the loop, which at head_dim 128 uses all 255 (held in registers it made
// ptxas spill, under an earlier warp mapping). Every thread computes the same next state
// from the same words; thread 0 writes
// it to the other of two buffers, which the next call reads. Calls must be separated by a
// CTA barrier (the loop's two per tile; init ends with one for the first call, and the
// loop must place one between the first and second calls).
template <int RowBlocks>
struct BlockSparseSource : ContiguousTiles {
    static_assert(RowBlocks == 1 || RowBlocks == 2, "one or two row blocks per CTA");
    static constexpr int kRowBlocks = RowBlocks;
    static constexpr int kTileKeys = kBlockN;  // a tile is one index key block
    static constexpr bool kHoistAddressing = true;  // the q_smem loop's ldmatrix addresses, set up once
    struct Streams {
        BlockListStream s[2];
    };
    Streams* buffers;  // two Streams in shared memory
    int parity;        // the buffer the next call reads

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        __shared__ Streams s_streams[2];
        buffers = s_streams;
        parity = 0;
        Streams st;
        st.s[0].init(p, c);
        if (RowBlocks == 2 && c.m + 1 < p.row_blocks) {
            st.s[1].init(p, row_block_pos(p, c.b, c.h, c.m + 1));
        } else {
            st.s[1].init_empty();
        }
        if (threadIdx.x == 0) {
            buffers[0] = st;
        }
        __syncthreads();
    }
    __device__ __forceinline__ bool next(const AttnParams& p, TileRef& t) {
        Streams st = buffers[parity];
        const int n = min(st.s[0].head, st.s[1].head);
        if (n == BlockListStream::kNone) {
            return false;
        }
        t.key0 = n * kBlockN;
        t.gathered = false;
        t.keep = (st.s[0].head == n ? 1 : 0) | (st.s[1].head == n ? 2 : 0);
        // The CTA's first row block, from the special register rather than a held one.
        const int m = blockIdx.x * kRowBlocks;
        if (st.s[0].head == n) {
            st.s[0].advance(p, m);
        }
        if (st.s[1].head == n) {
            st.s[1].advance(p, m + 1);
        }
        parity ^= 1;
        if (threadIdx.x == 0) {
            buffers[parity] = st;
        }
        return true;
    }
};

// Dense over the RowBlocks (1 or 2) row blocks from c.m, in tiles of N keys
// (dense_key_tile): the tiles of the longer stream (both streams start at key 0 in N-key
// steps, so the shorter one is its prefix), each kept by the blocks whose visibility limit
// it starts below.
template <int N, int RowBlocks>
struct DenseSource : ContiguousTiles {
    static_assert(RowBlocks == 1 || RowBlocks == 2, "one or two row blocks per CTA");
    static constexpr int kRowBlocks = RowBlocks;
    static constexpr int kTileKeys = N;
    // The q_smem loop's ldmatrix addresses, set up once; at 128-key tiles (head_dim 64)
    // the scores leave no registers for them (ptxas 12.4 spilled on sm_90).
    static constexpr bool kHoistAddressing = N == kBlockN;
    static constexpr bool kStartsAtWindow = true;
    int next_key;
    int limit0, limit1;  // each row block's visibility limit (0 for a missing second block)
    int end;             // max(limit0, limit1)

    __device__ __forceinline__ void init(const AttnParams& p, const CtaPos& c) {
        next_key = 0;
        limit0 = c.key_limit;
        limit1 = RowBlocks == 2 && c.m + 1 < p.row_blocks ? row_block_pos(p, c.b, c.h, c.m + 1).key_limit : 0;
        end = max(limit0, limit1);
    }
    // Starts the stream at the N-key tile that holds `first_key`, the lowest key any row of
    // the CTA may see under a sliding window (its first row's): every earlier tile lies
    // outside every row's window. A `first_key` <= 0 changes nothing.
    __device__ __forceinline__ void start_at(int first_key) {
        if (first_key > 0) {
            next_key = min(end, first_key / N * N);
        }
    }
    __device__ __forceinline__ bool next(const AttnParams&, TileRef& t) {
        if (next_key >= end) {
            return false;
        }
        t.key0 = next_key;
        t.gathered = false;
        t.keep = (next_key < limit0 ? 1 : 0) | (next_key < limit1 ? 2 : 0);
        next_key = end - next_key > N ? next_key + N : end;
        return true;
    }
    // The same answer as t.keep's bit, from the block's limit (loop-invariant per warp), so
    // the main loop never builds t.keep: one compare per tile.
    __device__ __forceinline__ bool keeps(const TileRef& t, int block) const {
        return t.key0 < (block == 0 ? limit0 : limit1);
    }
};

}  // namespace attn
