// A [Rows][D] tile of 16-bit elements in shared memory, stored in 16-byte chunks with an
// XOR swizzle. ldmatrix reads eight rows at the same logical chunk; unswizzled, rows 128
// or 256 bytes apart would all hit the same four banks (8-way conflict). When D is a
// multiple of 64 (rows of 8k chunks), chunk c of row r sits at chunk c ^ (r % 8): the eight
// rows cover all 32 banks. At D = 96 (rows of 12 chunks, 192 bytes, so consecutive rows
// start half a bank window apart) chunk c sits at c ^ ((r / 2) % 4), which keeps it in its
// aligned group of four chunks (12 = 3 x 4) and again spreads eight rows over all banks.
// cp.async writes and ldmatrix reads both go through `chunk_offset`, so they always agree.
// The tile carries its shape: the prefill kernel's K/V and Q tiles are
// SmemTile<SA_PREFILL_TILE_N / _M, D>, the top-k kernel's SmemTile<SA_TOPK_TILE_KEYS, D>
// and SmemTile<SA_TOPK_HEADS_PER_WARP, D>.
#pragma once
#include "common/c_std.h"

#include "common/cp_async.cuh"

namespace attn {

template <int Rows, int D>
struct SmemTile {
    static_assert(D % 64 == 0 || D == 96, "the swizzles cover rows of 8k chunks, and of 12");
    static_assert(Rows % 8 == 0, "ldmatrix reads rows eight at a time");
    static constexpr int kRows = Rows;
    static constexpr int kDim = D;
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    static constexpr int kBytes = Rows * D * 2;
    // Chunk bits the swizzle changes: 3 (rows of 8k chunks) or 2 (D = 96).
    static constexpr int kSwizzleBits = D % 64 == 0 ? 3 : 2;
    // Distinct lane offsets of an ldmatrix over the tile (see lane_offset).
    static constexpr int kLaneBases = 1 << (kSwizzleBits - 1);

    // Independent of Rows: the swizzle repeats every 8 rows.
    static __device__ __forceinline__ uint32_t chunk_offset(int row, int chunk) {
        const int swizzle = kSwizzleBits == 3 ? (row & 7) : ((row >> 1) & 3);
        return (uint32_t)(row * (D * 2) + ((chunk ^ swizzle) << 4));
    }

    // ldmatrix addressing. A lane of an ldmatrix x4 over the tile reads row `r0 + 16 n` at
    // chunk `2 k + c` (r0 < 16 and c in {0, 1} fixed by the lane; n the 16-row block, k the
    // 16-element column step). The swizzle XORs only the low kSwizzleBits chunk bits, with
    // the same value for row r0 + 16 n as for r0, so with k = L a + b (b < L = kLaneBases):
    //   chunk_offset(r0 + 16 n, 2 k + c) = lane_offset(r0, c, b) + block_offset(n, k)
    // The lane part takes L values, computed once per tile, or once per loop
    // (tile_math.cuh: k_lane_offsets, v_lane_offsets; step k uses base[lane_base(k)]);
    // block_offset is a compile-time immediate of the ldmatrix (ldmatrix_x4<Offset>).
    static __device__ __forceinline__ uint32_t lane_offset(int r0, int c, int b) { return chunk_offset(r0, 2 * b + c); }
    static constexpr __host__ __device__ int lane_base(int k) { return k % kLaneBases; }
    static constexpr __host__ __device__ int block_offset(int n, int k) {
        return n * 16 * (D * 2) + (k / kLaneBases) * (kLaneBases * 32);
    }
};

// load_tile_rows with each row's address given directly: `row_src(r)` is the byte address
// of tile row r's first element (chunk c is 16 c bytes further), or 0 for a row to
// zero-fill; `fallback` is any valid address of the tensor (the source operand of a
// zero-fill copy). Paged K/V caches give their rows this way.
template <int Rows, int D, int Threads, int Unroll = 0, typename RowSrc>
__device__ __forceinline__ void load_rows(uint64_t fallback, uint32_t smem, int tid, const RowSrc& row_src) {
    using Tile = SmemTile<Rows, D>;
    static_assert(Rows * Tile::kChunks % Threads == 0, "the threads cover the tile in whole passes");
    constexpr int kPasses = Rows * Tile::kChunks / Threads;
    // Each thread keeps one chunk column when the threads cover whole rows.
    constexpr bool kSameChunk = Threads % Tile::kChunks == 0;
    constexpr int kRowsPerPass = kSameChunk ? Threads / Tile::kChunks : 0;
    constexpr bool kFull = kSameChunk && (Unroll <= 0 || Unroll >= kPasses);
    const int chunk0 = tid % Tile::kChunks;
#pragma unroll(kFull || Unroll <= 0 ? kPasses : Unroll)
    for (int i = 0; i < kPasses; ++i) {
        const int idx = i * Threads + tid;
        const int row = kFull ? tid / Tile::kChunks + i * kRowsPerPass : idx / Tile::kChunks;
        const int chunk = kFull ? chunk0 : idx % Tile::kChunks;
        const uint64_t row_addr = row_src(row);
        const bool valid = row_addr != 0;
        const uint64_t src = valid ? row_addr + 16 * chunk : fallback;
        cp_async_16(smem + Tile::chunk_offset(row, chunk), src, valid);
    }
}

// Issues the cp.async copies of one SmemTile<Rows, D> into `smem` with `Threads` threads
// (this one is `tid`): tile row r is row `position(r)` of the tensor at `base` (rows
// `row_stride` elements apart), or zero-filled where position(r) is negative. Pass i copies
// chunk (i * Threads + tid) of the tile in row-major order: when Threads is a multiple of
// the row's chunks, thread tid copies chunk tid % chunks of every (Threads / chunks)-th row
// from tid / chunks.
//
// `Unroll` is the unroll count of the loop over those rows (0: fully unrolled). Fully
// unrolled, each pass's row and chunk are per-thread constants and nvcc folds the
// shared-memory offsets: right for a kernel with registers to spare. A kernel short of
// registers that loads tiles inside its main loop (the top-k kernel) passes a small
// `Unroll`: each pass's row and chunk are then recomputed from one linear index, so nvcc
// does not hoist every pass's addresses out of the caller's loop and keep them all live
// (for the top-k kernel at head_dim 64: 100 registers instead of 125).
template <int Rows, int D, int Threads, int Unroll = 0, typename Position>
__device__ __forceinline__ void load_tile_rows(uint64_t base, int64_t row_stride, uint32_t smem, int tid,
                                               const Position& position) {
    load_rows<Rows, D, Threads, Unroll>(base, smem, tid, [&](int row) {
        const int pos = position(row);
        return pos >= 0 ? base + 2 * (uint64_t)pos * (uint64_t)row_stride : 0;
    });
}


// Pass Pass, then the next ones, of ContiguousRowsCopy::issue: a compile-time recursion so
// that each pass's shared offset is an immediate of its cp.async (cp_async_16_at).
template <int Passes, uint32_t PassSmemBytes, int Pass = 0>
__device__ __forceinline__ void contiguous_passes(uint32_t dst, uint64_t src, uint64_t pass_bytes) {
    cp_async_16_at<Pass * PassSmemBytes>(dst, src);
    if constexpr (Pass + 1 < Passes) {
        contiguous_passes<Passes, PassSmemBytes, Pass + 1>(dst, src + pass_bytes, pass_bytes);
    }
}

// The cp.async copies of a SmemTile<Rows, D> whose rows are `Rows` consecutive rows of one
// tensor, all of them in range, starting at element row `row0` (rows `row_stride` elements
// apart). The same copies as load_tile_rows with position(r) = row0 + r, without its
// per-row work: every source address is one 64-bit add from the previous pass's (the rows
// of consecutive passes are kRowsPerPass apart), where load_tile_rows multiplies each row
// by the stride, checks it and selects a fallback address. This is the main-loop load of
// every full contiguous K/V tile. init computes the thread's own part of the address (its
// row and chunk, the tensor base, the stride in bytes); issue adds the tile's, one 64-bit
// multiply-add: 2 * ((row0 + row) * stride + chunk * 8) is 2 * (row * stride + chunk * 8)
// + row0 * (2 * stride), in the same 64-bit arithmetic. A loop may init once and issue per
// tile, or (the prefill loops, short of registers) init per tile.
// Whether ContiguousRowsCopy fits a SmemTile<Rows, D> copied by `Threads` threads: each
// thread keeps one chunk column, the passes cover the rows, and every pass's rows share a
// swizzle. Not at D = 96 (12 chunks a row), whose tiles take load_tile_rows.
template <int Rows, int D, int Threads>
__host__ __device__ constexpr bool contiguous_copy_fits() {
    constexpr int chunks = D / 8;
    return Threads % chunks == 0 && Rows % (Threads / chunks) == 0 && (Threads / chunks) % 8 == 0;
}

template <int Rows, int D, int Threads>
struct ContiguousRowsCopy {
    using Tile = SmemTile<Rows, D>;
    static_assert(Threads % Tile::kChunks == 0, "every thread copies the same chunk of each of its rows");
    static constexpr int kRowsPerPass = Threads / Tile::kChunks;
    static_assert(Rows % kRowsPerPass == 0, "the threads cover the tile in whole passes");
    static_assert(kRowsPerPass % 8 == 0, "every pass's rows have the same swizzle (row % 8)");

    uint64_t src0;       // the thread's source address in row 0 of the tile
    uint64_t row_bytes;  // 2 * row_stride
    uint32_t dst0;        // the thread's shared offset in pass 0 (passes add constants)

    __device__ __forceinline__ void init(uint64_t base, int64_t row_stride, int tid) {
        const int row = tid / Tile::kChunks;
        const int chunk = tid % Tile::kChunks;
        // The swizzle repeats every 8 rows, so pass i's shared offset is pass 0's plus a constant.
        dst0 = Tile::chunk_offset(row, chunk);
        src0 = base + 2 * ((uint64_t)row * row_stride + chunk * 8);
        row_bytes = 2 * (uint64_t)row_stride;
        // Opaque to the optimizer, so these are computed here, once, rather than sunk into
        // the loop branch that uses them and recomputed on every tile.
        asm volatile("" : "+l"(src0), "+l"(row_bytes));
    }
    // Copies rows row0 .. row0 + Rows - 1 into the tile at `smem`. The pass stride is
    // derived here (one multiply by a constant) rather than held: the prefill loop holds
    // two copies for its whole length and is short of registers.
    __device__ __forceinline__ void issue(int row0, uint32_t smem) const {
        contiguous_passes<Rows / kRowsPerPass, kRowsPerPass * D * 2>(smem + dst0, src0 + (uint64_t)row0 * row_bytes,
                                                                   row_bytes * kRowsPerPass);
    }
};

}  // namespace attn
