// Writes one warp's 16 output rows and their LSE once, at the end of the main loop:
// out = acc / sum, LSE = ln(sum) + scale * max (natural log).
//
// Non-finite values (README, "Non-finite inputs and the softmax scale"):
// - A row whose sum is 0 saw no key (every score it met was masked, or -inf). Its output is
//   exactly 0 and its LSE -inf whatever V holds: its tiles were loaded for the other rows
//   of the block, and the P.V of a masked key whose V row holds NaN or inf is 0 * NaN =
//   NaN, so acc may be NaN. That is why 0 is written rather than acc * 0.
// - A NaN sum (the row met a NaN or +inf score) gives NaN output and NaN LSE.
// - Any other row is acc / sum as computed: like FlashAttention-2 (P.V over the whole
//   tile), a NaN or inf in the V row of a key masked for this row but loaded in one of its
//   tiles reaches it through 0 * NaN.
//
// The output goes out through shared memory: a C fragment gives a lane 4 bytes of each of
// its two rows per 8 columns, so writing it directly takes D / 4 four-byte stores per lane.
// Staged, each lane stores whole 16-byte chunks of a row, and the warp's 16 rows leave in
// 16 * D * 2 / 512 stores (4 at D = 64, 8 at D = 128) that each fill whole rows.
#pragma once
#include "common/c_std.h"

#include "common/mma.cuh"
#include "common/online_softmax.cuh"
#include "common/smem_tile.cuh"

namespace attn {

// The rows one warp stages: SmemTile's swizzle also keeps the fragment writes (8 rows at
// one chunk per instruction) and the 16-byte read-back free of bank conflicts.
template <int D>
using OutTile = SmemTile<16, D>;

__device__ __forceinline__ void st_shared_u32(uint32_t addr, uint32_t v) {
    asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

__device__ __forceinline__ void copy_16_shared_to_global(uint64_t gmem, uint32_t smem) {
    uint32_t a, b, c, d;
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n" : "=r"(a), "=r"(b), "=r"(c), "=r"(d) : "r"(smem) : "memory");
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(gmem), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

// Where a warp's 16 output rows go: row r at byte address first + r * stride; rows at or
// past `count` (which may be 0 or negative) are padding and are not written. Rows must be
// 16-byte aligned (checked on the host).
struct OutRows {
    uint64_t first;
    int64_t stride;
    int count;
};

// `stage` is this warp's own OutTile<D> (OutTile<D>::kBytes of shared memory that nothing
// else reads or writes until the kernel ends; the caller's K/V buffers are free by then).
// `lse_out` receives the LSE of fragment rows g and g + 8.
template <typename T, int D>
__device__ __forceinline__ void write_output(const float (&acc)[D / 8][4], const RowState& st, uint32_t stage, int lane,
                                             float scale_log2, const OutRows& out, float (&lse_out)[2]) {
    using Tile = OutTile<D>;
    const int g = lane >> 2;
    const int t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float total = quad_sum(st.sum[r]);
        const bool no_key = total == 0.f;
        const float inv = 1.f / total;
        lse_out[r] = no_key ? -INFINITY : (st.max[r] * scale_log2 + log2f(total)) * 0.69314718055994531f;
        if (g + 8 * r >= out.count) {
            continue;  // a padding row: never read back (top-k warps often hold only a few heads)
        }
        // A mask rather than a select: the select became a branch around every pack.
        const uint32_t keep = no_key ? 0u : 0xffffffffu;
#pragma unroll
        for (int d = 0; d < D / 8; ++d) {
            // Elements 8d + 2t and 8d + 2t + 1: word t of chunk d.
            const uint32_t packed = Mma<T>::pack(acc[d][2 * r] * inv, acc[d][2 * r + 1] * inv) & keep;
            st_shared_u32(stage + Tile::chunk_offset(g + 8 * r, d) + 4 * t, packed);
        }
    }
    __syncwarp();
    if constexpr (32 % Tile::kChunks == 0) {
        // Pass i: lane l copies chunk l % kChunks of row i * kRowsPerPass + l / kChunks.
        constexpr int kRowsPerPass = 32 / Tile::kChunks;
        const int chunk = lane % Tile::kChunks;
        const int row = lane / Tile::kChunks;
        const uint64_t dst = out.first + (uint64_t)(row * out.stride) + 16 * chunk;
#pragma unroll
        for (int i = 0; i < 16 / kRowsPerPass; ++i) {
            if (row + i * kRowsPerPass < out.count) {
                copy_16_shared_to_global(dst + (uint64_t)(i * kRowsPerPass * out.stride),
                                         stage + Tile::chunk_offset(row + i * kRowsPerPass, chunk));
            }
        }
    } else {
        // Rows of 12 chunks (D = 96): pass i copies chunk i * 32 + lane of the 16 rows.
        static_assert(16 * Tile::kChunks % 32 == 0, "the lanes cover the rows in whole passes");
#pragma unroll
        for (int i = 0; i < 16 * Tile::kChunks / 32; ++i) {
            const int row = (i * 32 + lane) / Tile::kChunks;
            const int chunk = (i * 32 + lane) % Tile::kChunks;
            if (row < out.count) {
                copy_16_shared_to_global(out.first + (uint64_t)(row * out.stride) + 16 * chunk,
                                         stage + Tile::chunk_offset(row, chunk));
            }
        }
    }
}

}  // namespace attn
