// The per-tile tensor-core math shared by the prefill main loop (kernels/prefill.cu) and
// the top-k gather kernel (kernels/topk_attention.cu): one warp, 16 query rows, a K/V tile of
// NB * 8 keys in shared memory laid out as a SmemTile<NB * 8, D> (swizzled 16-byte chunks).
//
//   load_q_fragments: the warp's Q rows as mma A fragments (ldmatrix x4, once per CTA)
//   tile_scores:      S = Q K^T for the tile, f32 C fragments
//   mask_tile:        per-element key masking of S
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

// S = Q K^T for the warp's 16 rows and the NB * 8 keys of the K tile at `k_smem`.
template <typename T, int D, int NB>
__device__ __forceinline__ void tile_scores(float (&s)[NB][4], const uint32_t (&q_frag)[D / 16][4], uint32_t k_smem,
                                            int lane) {
    static_assert(NB % 2 == 0, "key blocks are loaded in pairs");
    using Tile = SmemTile<NB * 8, D>;
    zero_fragments(s);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int nb = 0; nb < NB / 2; ++nb) {
            // Matrices: (keys +0, dims +0), (keys +0, dims +8), (keys +8, dims +0),
            // (keys +8, dims +8): b0/b1 of key block 2nb, then of 2nb + 1.
            const int key_row = nb * 16 + (lane & 7) + ((lane >> 4) << 3);
            const int chunk = kk * 2 + ((lane >> 3) & 1);
            uint32_t kb[4];
            ldmatrix_x4(kb, k_smem + Tile::chunk_offset(key_row, chunk));
            Mma<T>::mma(s[2 * nb], q_frag[kk], kb[0], kb[1]);
            Mma<T>::mma(s[2 * nb + 1], q_frag[kk], kb[2], kb[3]);
        }
    }
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

// O += P V for the NB * 8 keys of the V tile at `v_smem`; `p` holds the probabilities in
// C-fragment layout, which is the A layout of the second mma.
template <typename T, int D, int NB>
__device__ __forceinline__ void tile_pv(const float (&p)[NB][4], float (&acc)[D / 8][4], uint32_t v_smem, int lane) {
    static_assert(NB % 2 == 0, "P is fed 16 keys per mma");
    using Tile = SmemTile<NB * 8, D>;
#pragma unroll
    for (int kk = 0; kk < NB / 2; ++kk) {
        uint32_t a[4];
        a[0] = Mma<T>::pack(p[2 * kk][0], p[2 * kk][1]);
        a[1] = Mma<T>::pack(p[2 * kk][2], p[2 * kk][3]);
        a[2] = Mma<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[3] = Mma<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
        for (int db = 0; db < D / 16; ++db) {
            // Transposed matrices: (keys +0, dims +0), (keys +8, dims +0),
            // (keys +0, dims +8), (keys +8, dims +8).
            const int key_row = kk * 16 + (lane & 15);
            const int chunk = db * 2 + (lane >> 4);
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, v_smem + Tile::chunk_offset(key_row, chunk));
            Mma<T>::mma(acc[2 * db], a, vb[0], vb[1]);
            Mma<T>::mma(acc[2 * db + 1], a, vb[2], vb[3]);
        }
    }
}

}  // namespace attn
