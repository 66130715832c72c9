// Tensor-core kernels for ptx-sim's tests. One warp per launch.
//
// The *_doc kernels load every fragment register with the layout that the PTX ISA documents
// (sections "Matrix Fragments for mma.m16n8k16 with floating point type" and "Matrix
// Fragments for mma.m16n8k8"), so a correct product checks the simulator's mma against the
// documented layout. The ldmatrix kernels build the same fragments with ldmatrix from shared
// memory instead, which checks ldmatrix (and .trans) against the same layout.
#include <stdint.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>

__device__ __forceinline__ uint32_t pack_h(const uint16_t* m, int i0, int i1) {
    return (uint32_t)m[i0] | ((uint32_t)m[i1] << 16);
}

// A: 16x16 row-major bits, B: 16x8 stored as B[k][n] row-major (k rows), C, D: 16x8 f32.
// a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..);
// b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g); c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..).
template <bool BF16>
__device__ void mma_k16_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
    int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    uint32_t a0 = pack_h(A, g * 16 + 2 * t, g * 16 + 2 * t + 1);
    uint32_t a1 = pack_h(A, (g + 8) * 16 + 2 * t, (g + 8) * 16 + 2 * t + 1);
    uint32_t a2 = pack_h(A, g * 16 + 2 * t + 8, g * 16 + 2 * t + 9);
    uint32_t a3 = pack_h(A, (g + 8) * 16 + 2 * t + 8, (g + 8) * 16 + 2 * t + 9);
    uint32_t b0 = pack_h(B, (2 * t) * 8 + g, (2 * t + 1) * 8 + g);
    uint32_t b1 = pack_h(B, (2 * t + 8) * 8 + g, (2 * t + 9) * 8 + g);
    float c0 = C[g * 8 + 2 * t], c1 = C[g * 8 + 2 * t + 1];
    float c2 = C[(g + 8) * 8 + 2 * t], c3 = C[(g + 8) * 8 + 2 * t + 1];
    float d0, d1, d2, d3;
    if (BF16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    } else {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    }
    D[g * 8 + 2 * t] = d0; D[g * 8 + 2 * t + 1] = d1;
    D[(g + 8) * 8 + 2 * t] = d2; D[(g + 8) * 8 + 2 * t + 1] = d3;
}

extern "C" __global__ void mma_f16_f32_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) { mma_k16_doc<false>(A, B, C, D); }
extern "C" __global__ void mma_bf16_f32_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) { mma_k16_doc<true>(A, B, C, D); }

// f16 accumulation: C and D are 16x8 f16; c0 = (g, 2t..2t+1), c1 = (g+8, 2t..2t+1).
extern "C" __global__ void mma_f16_f16_doc(const uint16_t* A, const uint16_t* B, const uint16_t* C, uint16_t* D) {
    int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    uint32_t a0 = pack_h(A, g * 16 + 2 * t, g * 16 + 2 * t + 1);
    uint32_t a1 = pack_h(A, (g + 8) * 16 + 2 * t, (g + 8) * 16 + 2 * t + 1);
    uint32_t a2 = pack_h(A, g * 16 + 2 * t + 8, g * 16 + 2 * t + 9);
    uint32_t a3 = pack_h(A, (g + 8) * 16 + 2 * t + 8, (g + 8) * 16 + 2 * t + 9);
    uint32_t b0 = pack_h(B, (2 * t) * 8 + g, (2 * t + 1) * 8 + g);
    uint32_t b1 = pack_h(B, (2 * t + 8) * 8 + g, (2 * t + 9) * 8 + g);
    uint32_t c0 = pack_h(C, g * 8 + 2 * t, g * 8 + 2 * t + 1);
    uint32_t c1 = pack_h(C, (g + 8) * 8 + 2 * t, (g + 8) * 8 + 2 * t + 1);
    uint32_t d0, d1;
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%8,%9};"
                 : "=r"(d0), "=r"(d1)
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(c0), "r"(c1));
    D[g * 8 + 2 * t] = (uint16_t)d0; D[g * 8 + 2 * t + 1] = (uint16_t)(d0 >> 16);
    D[(g + 8) * 8 + 2 * t] = (uint16_t)d1; D[(g + 8) * 8 + 2 * t + 1] = (uint16_t)(d1 >> 16);
}

// m16n8k8: A 16x8 (a0 = (g, 2t..2t+1), a1 = (g+8, 2t..)), B 8x8 (b0 = (k 2t..2t+1, n g)).
template <bool BF16>
__device__ void mma_k8_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
    int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    uint32_t a0 = pack_h(A, g * 8 + 2 * t, g * 8 + 2 * t + 1);
    uint32_t a1 = pack_h(A, (g + 8) * 8 + 2 * t, (g + 8) * 8 + 2 * t + 1);
    uint32_t b0 = pack_h(B, (2 * t) * 8 + g, (2 * t + 1) * 8 + g);
    float c0 = C[g * 8 + 2 * t], c1 = C[g * 8 + 2 * t + 1];
    float c2 = C[(g + 8) * 8 + 2 * t], c3 = C[(g + 8) * 8 + 2 * t + 1];
    float d0, d1, d2, d3;
    if (BF16) {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a0), "r"(a1), "r"(b0), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    } else {
        asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};"
                     : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                     : "r"(a0), "r"(a1), "r"(b0), "f"(c0), "f"(c1), "f"(c2), "f"(c3));
    }
    D[g * 8 + 2 * t] = d0; D[g * 8 + 2 * t + 1] = d1;
    D[(g + 8) * 8 + 2 * t] = d2; D[(g + 8) * 8 + 2 * t + 1] = d3;
}
extern "C" __global__ void mma_k8_f16_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) { mma_k8_doc<false>(A, B, C, D); }
extern "C" __global__ void mma_k8_bf16_doc(const uint16_t* A, const uint16_t* B, const float* C, float* D) { mma_k8_doc<true>(A, B, C, D); }

// The FlashAttention way: A (16x16 row-major) via ldmatrix.x4; B via ldmatrix.x2.trans from
// a row-major [k][n] tile (V-style) or via ldmatrix.x2 from an [n][k] tile (K-style).
extern "C" __global__ void mma_ldmatrix(const uint16_t* A, const uint16_t* Bkn, const uint16_t* Bnk, float* D_trans, float* D_plain) {
    __shared__ __align__(16) uint16_t sA[16 * 16];
    __shared__ __align__(16) uint16_t sBkn[16 * 8];
    __shared__ __align__(16) uint16_t sBnk[8 * 16];
    int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
    for (int i = lane; i < 256; i += 32) sA[i] = A[i];
    for (int i = lane; i < 128; i += 32) { sBkn[i] = Bkn[i]; sBnk[i] = Bnk[i]; }
    __syncwarp();
    // x4: lanes 0-15 address rows 0-15 at column 0 (matrices 0, 1), lanes 16-31 rows 0-15 at column 8.
    uint32_t a_addr = (uint32_t)__cvta_generic_to_shared(&sA[(lane & 15) * 16 + (lane >> 4) * 8]);
    uint32_t a0, a1, a2, a3;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3) : "r"(a_addr));
    // .trans from [k][n]: lanes 0-15 address k rows 0-15.
    uint32_t bt_addr = (uint32_t)__cvta_generic_to_shared(&sBkn[(lane & 15) * 8]);
    uint32_t bt0, bt1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(bt0), "=r"(bt1) : "r"(bt_addr));
    // plain from [n][k]: lanes 0-7 address n rows at k 0, lanes 8-15 n rows at k 8.
    uint32_t bp_addr = (uint32_t)__cvta_generic_to_shared(&sBnk[(lane & 7) * 16 + ((lane >> 3) & 1) * 8]);
    uint32_t bp0, bp1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(bp0), "=r"(bp1) : "r"(bp_addr));
    float d[4], e[4];
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(bt0), "r"(bt1), "f"(0.0f));
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};"
                 : "=f"(e[0]), "=f"(e[1]), "=f"(e[2]), "=f"(e[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(bp0), "r"(bp1), "f"(0.0f));
    D_trans[g * 8 + 2 * t] = d[0]; D_trans[g * 8 + 2 * t + 1] = d[1];
    D_trans[(g + 8) * 8 + 2 * t] = d[2]; D_trans[(g + 8) * 8 + 2 * t + 1] = d[3];
    D_plain[g * 8 + 2 * t] = e[0]; D_plain[g * 8 + 2 * t + 1] = e[1];
    D_plain[(g + 8) * 8 + 2 * t] = e[2]; D_plain[(g + 8) * 8 + 2 * t + 1] = e[3];
}

// Raw ldmatrix: every lane writes the registers it received, for x1, x2, x4, with and
// without .trans. Shared holds four 8x8 matrices of b16 (matrix m at rows 8m..8m+7 of a 32x8 tile).
extern "C" __global__ void ldmatrix_raw(const uint16_t* src, uint32_t* out) {
    __shared__ __align__(16) uint16_t s[32 * 8];
    int lane = threadIdx.x;
    for (int i = lane; i < 256; i += 32) s[i] = src[i];
    __syncwarp();
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(&s[lane * 8]);
    uint32_t r[14];
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r[0]) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];" : "=r"(r[1]), "=r"(r[2]) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r[7]) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];" : "=r"(r[8]), "=r"(r[9]) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[10]), "=r"(r[11]), "=r"(r[12]), "=r"(r[13]) : "r"(addr));
    for (int i = 0; i < 14; ++i) out[lane * 14 + i] = r[i];
}
