// The per-tile tensor-core math shared by the prefill main loop (kernels/prefill.cu) and
// the top-k gather kernel (kernels/topk_attention.cu): one warp, 16 query rows, a K/V tile of
// NB * 8 keys in shared memory laid out as a SmemTile<NB * 8, D> (swizzled 16-byte chunks).
//
//   load_q_fragments: the warp's Q rows as mma A fragments (ldmatrix x4, once per CTA)
//   tile_scores:      S = Q K^T for the tile, f32 C fragments
//   mask_tile:        per-element key masking of S
//   mask_tile_columns: the same for a contiguous key tile, by one threshold per row
//   tile_pv:          O += P V, P straight from the score registers (C layout == A layout)
//
// Every loop is unrolled over compile-time bounds (template parameters), so each kernel
// keeps its fragments in registers exactly as if the code were written inline.
#pragma once
#include "common/c_std.h"

#include "common/mask.cuh"
#include "common/mma.cuh"
#include "common/smem_tile.cuh"

namespace attn {

// Zeroes N C fragments (an accumulator or a score tile).
template <int N>
__device__ __forceinline__ void zero_fragments(float (&f)[N][4]) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
        f[j][0] = f[j][1] = f[j][2] = f[j][3] = 0.f;
    }
}

// Q fragments of the 16 rows from `row0` of the Q tile `QTile` (a SmemTile) at `q_smem`:
// matrix i of ldmatrix x4 = rows (i % 2) * 8.., chunk (i / 2) of each 16-dim k-step.
template <typename QTile>
__device__ __forceinline__ void load_q_fragments(uint32_t (&q_frag)[QTile::kDim / 16][4], uint32_t q_smem, int row0,
                                                 int lane) {
    static_assert(QTile::kRows % 16 == 0, "a warp reads 16 rows");
#pragma unroll
    for (int kk = 0; kk < QTile::kDim / 16; ++kk) {
        const int row = row0 + (lane & 15);
        const int chunk = kk * 2 + (lane >> 4);
        ldmatrix_x4(q_frag[kk], q_smem + QTile::chunk_offset(row, chunk));
    }
}

// The ldmatrix loops below are compile-time recursions over their steps rather than loops
// under #pragma unroll: a step's shared-memory offset (SmemTile::block_offset) must be a
// constant expression to be an immediate of the instruction (ldmatrix_x4<Offset>).
// (A generic lambda would make this a static_for, but NVRTC compiles generic lambdas in
// device code as host functions.)

// Step Step of S = Q K^T, then the next ones: k-step kk = Step / (NB / 2) of key-block pair
// nb = Step % (NB / 2). ldmatrix matrices: (keys +0, dims +0), (keys +0, dims +8),
// (keys +8, dims +0), (keys +8, dims +8): b0/b1 of key block 2nb, then of 2nb + 1.
template <typename T, int D, int NB, int Step = 0>
__device__ __forceinline__ void score_steps(float (&s)[NB][4], const uint32_t (&q_frag)[D / 16][4],
                                            const uint32_t (&base)[4]) {
    using Tile = SmemTile<NB * 8, D>;
    constexpr int kk = Step / (NB / 2);
    constexpr int nb = Step % (NB / 2);
    uint32_t kb[4];
    ldmatrix_x4<Tile::block_offset(nb, kk)>(kb, base[Tile::lane_base(kk)]);
    if constexpr (kk == 0) {  // the first k-step starts the tile from zero
        Mma<T>::mma_zero_c(s[2 * nb], q_frag[kk], kb[0], kb[1]);
        Mma<T>::mma_zero_c(s[2 * nb + 1], q_frag[kk], kb[2], kb[3]);
    } else {
        Mma<T>::mma(s[2 * nb], q_frag[kk], kb[0], kb[1]);
        Mma<T>::mma(s[2 * nb + 1], q_frag[kk], kb[2], kb[3]);
    }
    if constexpr (Step + 1 < (D / 16) * (NB / 2)) {
        score_steps<T, D, NB, Step + 1>(s, q_frag, base);
    }
}

// The lane's four ldmatrix offsets (SmemTile::lane_offset) in a K tile of tile_scores, and
// in a V tile of tile_pv. A tile's base plus these is all the per-tile addressing; a loop
// over many tiles can compute them once (tile_scores_at, tile_pv_at).
template <int D, int NB>
__device__ __forceinline__ void k_lane_offsets(uint32_t (&off)[4], int lane) {
    using Tile = SmemTile<NB * 8, D>;
    // The lane reads row nb * 16 + r0 at chunk kk * 2 + c.
    const int r0 = (lane & 7) + ((lane >> 4) << 3);
    const int c = (lane >> 3) & 1;
#pragma unroll
    for (int b = 0; b < 4; ++b) {
        off[b] = Tile::lane_offset(r0, c, b);
    }
}

template <int D, int NB>
__device__ __forceinline__ void v_lane_offsets(uint32_t (&off)[4], int lane) {
    using Tile = SmemTile<NB * 8, D>;
    // The lane reads row kk * 16 + r0 at chunk db * 2 + c.
    const int r0 = lane & 15;
    const int c = lane >> 4;
#pragma unroll
    for (int b = 0; b < 4; ++b) {
        off[b] = Tile::lane_offset(r0, c, b);
    }
}

// The lane's four ldmatrix base addresses in a tile at `smem`, from the per-lane offsets
// that k_lane_offsets / v_lane_offsets computed once per CTA.
__device__ __forceinline__ void lane_bases(uint32_t smem, const uint32_t (&off)[4], uint32_t (&base)[4]) {
#pragma unroll
    for (int b = 0; b < 4; ++b) {
        base[b] = smem + off[b];
    }
}

// S = Q K^T for the warp's 16 rows and the NB * 8 keys of the K tile at `k_smem`, with the
// lane's offsets from k_lane_offsets.
template <typename T, int D, int NB>
__device__ __forceinline__ void tile_scores_at(float (&s)[NB][4], const uint32_t (&q_frag)[D / 16][4], uint32_t k_smem,
                                               const uint32_t (&off)[4]) {
    static_assert(NB % 2 == 0, "key blocks are loaded in pairs");
    uint32_t base[4];
    lane_bases(k_smem, off, base);
    score_steps<T, D, NB>(s, q_frag, base);
}

// S = Q K^T for the warp's 16 rows and the NB * 8 keys of the K tile at `k_smem`.
template <typename T, int D, int NB>
__device__ __forceinline__ void tile_scores(float (&s)[NB][4], const uint32_t (&q_frag)[D / 16][4], uint32_t k_smem,
                                            int lane) {
    static_assert(NB % 2 == 0, "key blocks are loaded in pairs");
    using Tile = SmemTile<NB * 8, D>;
    // As k_lane_offsets, with the tile base added per offset.
    const int r0 = (lane & 7) + ((lane >> 4) << 3);
    const int c = (lane >> 3) & 1;
    uint32_t base[4];
#pragma unroll
    for (int b = 0; b < 4; ++b) {
        base[b] = k_smem + Tile::lane_offset(r0, c, b);
    }
    score_steps<T, D, NB>(s, q_frag, base);
}

// Masks the score tile per element: `key_of(col)` is the key in tile column col (-1:
// none), `last_key0` / `last_key1` the last key fragment row g / g + 8 may see; t4 = lane % 4.
template <int NB, typename KeyOf>
__device__ __forceinline__ void mask_tile(float (&s)[NB][4], int t4, const KeyOf& key_of, int last_key0,
                                          int last_key1) {
#pragma unroll
    for (int j = 0; j < NB; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int key = key_of(8 * j + 2 * t4 + e);
            s[j][e] = mask_score(s[j][e], key, last_key0);
            s[j][2 + e] = mask_score(s[j][2 + e], key, last_key1);
        }
    }
}

// Masks the score tile of a contiguous key tile by column: tile column col is visible to
// fragment row g (g + 8) iff col <= lim0 (lim1). For a tile of keys key0 + col, lim is the
// row's last visible key minus key0; a key past seq_k needs no test of its own, as no row's
// last visible key reaches it. One compare per element against a per-row threshold, where
// mask_tile rebuilds each column's key.
template <int NB>
__device__ __forceinline__ void mask_tile_columns(float (&s)[NB][4], int t4, int lim0, int lim1) {
    // Column 8j + 2t4 + e <= lim  <=>  8j + e <= lim - 2t4 (a compile-time left side). A
    // negative lim hides every column whatever its value; clamping it to -1 first keeps the
    // subtraction from wrapping.
    lim0 = max(lim0, -1) - 2 * t4;
    lim1 = max(lim1, -1) - 2 * t4;
#pragma unroll
    for (int j = 0; j < NB; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            s[j][e] = 8 * j + e <= lim0 ? s[j][e] : -INFINITY;
            s[j][2 + e] = 8 * j + e <= lim1 ? s[j][2 + e] : -INFINITY;
        }
    }
}

// Dim-block pair db = DB, then the next ones, of key step KK of O += P V (`a`: P's A
// fragment for that key step). Transposed ldmatrix matrices: (keys +0, dims +0),
// (keys +8, dims +0), (keys +0, dims +8), (keys +8, dims +8).
template <typename T, int D, int NB, int KK, int DB = 0>
__device__ __forceinline__ void pv_dim_steps(float (&acc)[D / 8][4], const uint32_t (&a)[4], const uint32_t (&base)[4]) {
    using Tile = SmemTile<NB * 8, D>;
    uint32_t vb[4];
    ldmatrix_x4_trans<Tile::block_offset(KK, DB)>(vb, base[Tile::lane_base(DB)]);
    Mma<T>::mma(acc[2 * DB], a, vb[0], vb[1]);
    Mma<T>::mma(acc[2 * DB + 1], a, vb[2], vb[3]);
    if constexpr (DB + 1 < D / 16) {
        pv_dim_steps<T, D, NB, KK, DB + 1>(acc, a, base);
    }
}

// Key step KK (keys 16 KK .. 16 KK + 15), then the next ones, of O += P V.
template <typename T, int D, int NB, int KK = 0>
__device__ __forceinline__ void pv_key_steps(const float (&p)[NB][4], float (&acc)[D / 8][4], const uint32_t (&base)[4]) {
    uint32_t a[4];
    a[0] = Mma<T>::pack(p[2 * KK][0], p[2 * KK][1]);
    a[1] = Mma<T>::pack(p[2 * KK][2], p[2 * KK][3]);
    a[2] = Mma<T>::pack(p[2 * KK + 1][0], p[2 * KK + 1][1]);
    a[3] = Mma<T>::pack(p[2 * KK + 1][2], p[2 * KK + 1][3]);
    pv_dim_steps<T, D, NB, KK>(acc, a, base);
    if constexpr (KK + 1 < NB / 2) {
        pv_key_steps<T, D, NB, KK + 1>(p, acc, base);
    }
}

// O += P V for the NB * 8 keys of the V tile at `v_smem`; `p` holds the probabilities in
// C-fragment layout, which is the A layout of the second mma.
// With the lane's offsets from v_lane_offsets.
template <typename T, int D, int NB>
__device__ __forceinline__ void tile_pv_at(const float (&p)[NB][4], float (&acc)[D / 8][4], uint32_t v_smem,
                                           const uint32_t (&off)[4]) {
    static_assert(NB % 2 == 0, "P is fed 16 keys per mma");
    uint32_t base[4];
    lane_bases(v_smem, off, base);
    pv_key_steps<T, D, NB>(p, acc, base);
}

template <typename T, int D, int NB>
__device__ __forceinline__ void tile_pv(const float (&p)[NB][4], float (&acc)[D / 8][4], uint32_t v_smem, int lane) {
    static_assert(NB % 2 == 0, "P is fed 16 keys per mma");
    using Tile = SmemTile<NB * 8, D>;
    // As v_lane_offsets, with the tile base added per offset.
    const int r0 = lane & 15;
    const int c = lane >> 4;
    uint32_t base[4];
#pragma unroll
    for (int b = 0; b < 4; ++b) {
        base[b] = v_smem + Tile::lane_offset(r0, c, b);
    }
    pv_key_steps<T, D, NB>(p, acc, base);
}

}  // namespace attn
