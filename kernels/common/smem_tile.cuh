// A [64 rows][D] tile of 16-bit elements in shared memory, stored in 16-byte chunks with
// an XOR swizzle: chunk c of row r sits at chunk c ^ (r % 8). ldmatrix reads eight rows at
// the same logical chunk; unswizzled, rows 128 or 256 bytes apart would all hit the same
// four banks (8-way conflict); swizzled, the eight rows cover all 32 banks. cp.async
// writes and ldmatrix reads both go through `chunk_offset`, so they always agree.
#pragma once
#include <stdint.h>

#include "common/cp_async.cuh"

namespace attn {

constexpr int kTileRows = 64;  // BLOCK_M == BLOCK_N (pattern::BLOCK_M / BLOCK_N)

template <int D>
struct SmemTile {
    static_assert(D % 64 == 0, "rows must span a multiple of 8 chunks for the swizzle");
    static constexpr int kChunks = D / 8;  // 16-byte chunks per row
    static constexpr int kBytes = kTileRows * D * 2;

    static __device__ __forceinline__ uint32_t chunk_offset(int row, int chunk) {
        return (uint32_t)(row * (D * 2) + ((chunk ^ (row & 7)) << 4));
    }
};

// Issues the cp.async copies of one [64 rows][D] tile into `smem` with `Threads` threads (this
// one is `tid`): tile row r is sequence position `position(r)` of the tensor at `base` (rows
// `seq_stride` elements apart), or zero-filled where position(r) is negative.
template <int D, int Threads, typename Position>
__device__ __forceinline__ void load_tile_rows(uint64_t base, int64_t seq_stride, uint32_t smem, int tid,
                                               const Position& position) {
    using Tile = SmemTile<D>;
    constexpr int kRowsPerPass = Threads / Tile::kChunks;
    const int chunk = tid % Tile::kChunks;
#pragma unroll
    for (int i = 0; i < kTileRows / kRowsPerPass; ++i) {
        const int row = tid / Tile::kChunks + i * kRowsPerPass;
        const int pos = position(row);
        const bool valid = pos >= 0;
        const uint64_t src = valid ? base + 2 * ((uint64_t)pos * seq_stride + chunk * 8) : base;
        cp_async_16(smem + Tile::chunk_offset(row, chunk), src, valid);
    }
}

}  // namespace attn
