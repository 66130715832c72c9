// The per-tile tensor-core math of a warp that owns MT 16-row m-tiles with its Q rows in
// shared memory (the q_smem loop, kernels/prefill/q_smem_loop.cuh). MT is 2 up to head_dim
// 128, as in FlashAttention-2's 128-row CTA of 4 warps: each K or V fragment taken with
// ldmatrix feeds every m-tile' mma, so a warp reads a K/V tile from shared memory once per
// 32 rows instead of once per 16 (tile_math.cuh's one-m-tile warp). That halves the K/V
// shared-memory traffic per mma, which bounds the prefill loop on both A100 and H100. At
// head_dim 256, MT is 1 (FlashAttention-2's 64-row CTA at that head_dim): one m-tile's
// accumulators alone take 128 registers.
//
// The Q rows are re-read from shared memory at every k-step (one ldmatrix x4 per m-tile
// per 16 dims, shared by the tile's NB key blocks): held in registers they would take 64
// more per m-tile at head_dim 128 (128 at 256), past what the loop has beside its
// accumulators and scores.
//
// The warp's m-tiles are 16 MT consecutive query rows: m-tile i's Q rows are 16 i rows
// below m-tile 0's in the Q tile. Every function takes MT from its arrays' first extent.
#pragma once
#include "common/c_std.h"

#include "common/mma.cuh"
#include "common/smem_tile.cuh"

namespace attn {

// Rows between the warp's m-tiles in the Q tile, in 16-row blocks.
constexpr int kMTileStride16 = 1;

// Addressing. The K, V and Q tiles share one lane pattern (a lane of an ldmatrix x4 reads
// row lane % 16 of a 16-row block at chunk 2 k + lane / 16; SmemTile::lane_offset), and so
// one set of four lane addresses, `base`, those of the K tile: the V tile sits a
// compile-time VOffset bytes after it (an immediate of each ldmatrix), the warp's Q rows
// `q_delta` bytes after it. Four registers address all three tiles.
//
// With that pattern, matrix i of a K ldmatrix x4 at key-block pair NBP and k-step KK holds
// keys 16 NBP + 8 (i % 2) .. + 7 at dims 16 KK + 8 (i / 2) .. + 7: registers 0 and 2 are
// b0 and b1 of key block 2 NBP, registers 1 and 3 those of key block 2 NBP + 1.

// Every m-tile gets k-step KK of key-block pair NBP (and the next pairs) of S = Q K^T.
template <typename T, int D, int NB, int KK, int NBP = 0, int MT>
__device__ __forceinline__ void mt_score_keys(float (&s)[MT][NB][4], const uint32_t (&qa)[MT][4],
                                              const uint32_t (&base)[4]) {
    using Tile = SmemTile<NB * 8, D>;
    uint32_t kb[4];
    ldmatrix_x4<Tile::block_offset(NBP, KK)>(kb, base[Tile::lane_base(KK)]);
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        if constexpr (KK == 0) {  // the first k-step starts the tile from zero
            Mma<T>::mma_zero_c(s[i][2 * NBP], qa[i], kb[0], kb[2]);
            Mma<T>::mma_zero_c(s[i][2 * NBP + 1], qa[i], kb[1], kb[3]);
        } else {
            Mma<T>::mma(s[i][2 * NBP], qa[i], kb[0], kb[2]);
            Mma<T>::mma(s[i][2 * NBP + 1], qa[i], kb[1], kb[3]);
        }
    }
    if constexpr (NBP + 1 < NB / 2) {
        mt_score_keys<T, D, NB, KK, NBP + 1>(s, qa, base);
    }
}

// k-step KK, then the next ones, of S = Q K^T for every m-tile: the Q fragments of the
// step (a QTile of QRows rows, the warp's first m-tile at base + q_delta), then every key
// block of the K tile at base. The Q address is one add per k-step, rather than four more
// registers held across the loop.
template <typename T, int D, int NB, int QRows, int KK = 0, int MT>
__device__ __forceinline__ void mt_score_steps(float (&s)[MT][NB][4], const uint32_t (&base)[4], uint32_t q_delta) {
    static_assert(MT == 1 || MT == 2, "a warp owns one or two m-tiles");
    using QTile = SmemTile<QRows, D>;
    const uint32_t q_base = base[QTile::lane_base(KK)] + q_delta;
    uint32_t qa[MT][4];
    ldmatrix_x4<QTile::block_offset(0, KK)>(qa[0], q_base);
    if constexpr (MT == 2) {
        ldmatrix_x4<QTile::block_offset(kMTileStride16, KK)>(qa[1], q_base);
    }
    mt_score_keys<T, D, NB, KK>(s, qa, base);
    if constexpr (KK + 1 < D / 16) {
        mt_score_steps<T, D, NB, QRows, KK + 1>(s, base, q_delta);
    }
}

// Dim-block pair DB, then the next ones, of key step KK of O += P V for every m-tile
// (`a[i][KK]`: m-tile i's P fragment for the step, from mt_pack_p), from the V tile
// VOffset bytes past base. Transposed ldmatrix matrices as pv_dim_steps (tile_math.cuh).
template <typename T, int D, int NB, int VOffset, int KK, int DB = 0, int MT>
__device__ __forceinline__ void mt_pv_dim_steps(float (&acc)[MT][D / 8][4], const uint32_t (&a)[MT][NB / 2][4],
                                                const uint32_t (&base)[4]) {
    using Tile = SmemTile<NB * 8, D>;
    uint32_t vb[4];
    ldmatrix_x4_trans<Tile::block_offset(KK, DB) + VOffset>(vb, base[Tile::lane_base(DB)]);
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        Mma<T>::mma(acc[i][2 * DB], a[i][KK], vb[0], vb[1]);
        Mma<T>::mma(acc[i][2 * DB + 1], a[i][KK], vb[2], vb[3]);
    }
    if constexpr (DB + 1 < D / 16) {
        mt_pv_dim_steps<T, D, NB, VOffset, KK, DB + 1>(acc, a, base);
    }
}

// P for every m-tile as mma A fragments, one per 16-key step: `p[i]` holds m-tile i's
// probabilities in C-fragment layout, which is the A layout once packed to T. Packed
// before the barrier that separates S from P V, P takes half the registers of the f32
// scores while the barrier and the next K tile's loads go by.
template <typename T, int NB, int MT>
__device__ __forceinline__ void mt_pack_p(const float (&p)[MT][NB][4], uint32_t (&a)[MT][NB / 2][4]) {
#pragma unroll
    for (int i = 0; i < MT; ++i) {
#pragma unroll
        for (int kk = 0; kk < NB / 2; ++kk) {
            a[i][kk][0] = Mma<T>::pack(p[i][2 * kk][0], p[i][2 * kk][1]);
            a[i][kk][1] = Mma<T>::pack(p[i][2 * kk][2], p[i][2 * kk][3]);
            a[i][kk][2] = Mma<T>::pack(p[i][2 * kk + 1][0], p[i][2 * kk + 1][1]);
            a[i][kk][3] = Mma<T>::pack(p[i][2 * kk + 1][2], p[i][2 * kk + 1][3]);
        }
    }
}

// Key step KK (keys 16 KK .. 16 KK + 15), then the next ones, of O += P V for every
// m-tile, from P packed by mt_pack_p and the V tile VOffset bytes past base.
template <typename T, int D, int NB, int VOffset, int KK = 0, int MT>
__device__ __forceinline__ void mt_pv_key_steps(const uint32_t (&a)[MT][NB / 2][4], float (&acc)[MT][D / 8][4],
                                                const uint32_t (&base)[4]) {
    mt_pv_dim_steps<T, D, NB, VOffset, KK>(acc, a, base);
    if constexpr (KK + 1 < NB / 2) {
        mt_pv_key_steps<T, D, NB, VOffset, KK + 1>(a, acc, base);
    }
}

}  // namespace attn
