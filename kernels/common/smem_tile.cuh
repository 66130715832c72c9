// A [64 rows][D] tile of 16-bit elements in shared memory, stored in 16-byte chunks with
// an XOR swizzle: chunk c of row r sits at chunk c ^ (r % 8). ldmatrix reads eight rows at
// the same logical chunk; unswizzled, rows 128 or 256 bytes apart would all hit the same
// four banks (8-way conflict); swizzled, the eight rows cover all 32 banks. cp.async
// writes and ldmatrix reads both go through `chunk_offset`, so they always agree.
#pragma once
#include <stdint.h>

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

}  // namespace attn
