// Vertical-slash estimation on the device (MInference's online estimate): which key columns
// and which diagonals collect the most attention probability of the last `last_q` query rows.
// The rule, and its host reference, are in src/pattern/vs_estimate.rs; on inputs whose sums
// have no near-ties these kernels select exactly what it selects. VsEstimateParams in
// params.h describes the four launches and the workspace they share.
//
// Cost: the probe is last_q x seq_k scores per unit, never seq_q x seq_k. The scores go
// through the workspace once (written by the mma kernel, read by the row statistics and the
// sums), so no kernel holds more than a 64 x 64 tile.
//
// Determinism: every float sum has a fixed order (a warp butterfly in the row statistics,
// the probe rows in index order in the column and diagonal sums); the selection counts with
// integer shared-memory atomics and block scans, whose results do not depend on the order.
// No float atomics.
//
// Non-finite inputs: a NaN or inf in Q or K makes scores NaN or inf, and the rows holding
// them get NaN probabilities, so the sums they reach are NaN. A NaN sum ranks below every
// number (the order key of topk_select.cu), so the selection is still a defined set of
// in-range indices: the forced ones, then the finite sums, then the lowest NaN indices.
#include "common/c_std.h"

#include "params.h"
#include "common/instantiate.cuh"
#include "common/mma.cuh"
#include "common/radix_select.cuh"

namespace vs_estimate {

constexpr int kThreads = SA_VS_ESTIMATE_THREADS;
constexpr int kTile = SA_VS_ESTIMATE_TILE;
constexpr int kSelectThreads = SA_VS_ESTIMATE_SELECT_THREADS;
// The selection runs the shared radix select (common/radix_select.cuh) with its CTA size.
static_assert(kSelectThreads == SA_TOPK_SELECT_THREADS, "vs_estimate_select is one radix-select CTA");
// The scores kernel walks head_dim in slices of 32 (two mma k-steps), so that one pair of
// 64-row slices is all the shared memory it needs at any head_dim.
constexpr int kSlice = 32;
// Slice rows padded by 8 elements (16 bytes): the 80-byte row stride puts the eight rows of
// every ldmatrix phase in distinct banks.
constexpr int kSliceStride = kSlice + 8;
static_assert(kTile == 64 && kThreads == 128, "4 warps of 16 rows over a 64 x 64 tile");

// Sequence b: the first packed query and key rows (0 when padded) and the lengths. Varlen
// bounds that are not 0 <= start <= end <= total, or lengths past the longest (the
// workspace's extent), make the sequence empty: nothing is read for it.
struct Seq {
    int q0, lq, k0, lk;
};

__device__ __forceinline__ Seq sequence(const VsEstimateParams& p, int b) {
    Seq s{0, p.seq_q, 0, p.seq_k};
    if (p.cu_seqlens_q == 0 || p.cu_seqlens_k == 0) {
        return s;
    }
    const int32_t* cq = reinterpret_cast<const int32_t*>(p.cu_seqlens_q);
    const int32_t* ck = reinterpret_cast<const int32_t*>(p.cu_seqlens_k);
    const int q0 = cq[b], q1 = cq[b + 1], k0 = ck[b], k1 = ck[b + 1];
    const bool ok = 0 <= q0 && q0 <= q1 && q1 <= p.total_q && q1 - q0 <= p.seq_q && 0 <= k0 && k0 <= k1 &&
                    k1 <= p.total_k && k1 - k0 <= p.seq_k;
    return ok ? Seq{q0, q1 - q0, k0, k1 - k0} : Seq{0, 0, 0, 0};
}

// The probe slots of a sequence with lq query rows.
__device__ __forceinline__ int probe_slots(const VsEstimateParams& p, const Seq& s) {
    return p.last_q < s.lq ? p.last_q : s.lq;
}

// Keys that probe slot t sees (keys 0 .. visible - 1; visible - 1 is its diagonal key), 0
// for a slot past the sequence's probe rows or a row above the shifted diagonal.
__device__ __forceinline__ int visible_keys(const Seq& s, int slots, int t) {
    if (t >= slots) {
        return 0;
    }
    const int v = s.lk - slots + t + 1;
    return v < 0 ? 0 : v;
}

// The workspace row of unit u's probe row r in sequence b.
__device__ __forceinline__ int64_t row_index(const VsEstimateParams& p, int b, int u, int r) {
    return ((int64_t)b * p.units + u) * p.rows + r;
}

// ---- scores = scale * Q K^T of the probe rows --------------------------------------------

// Each thread copies the same two 16-byte chunks of every head_dim slice of a 64-row tile:
// part tid % 4 of rows tid / 4 and tid / 4 + 32. Their row addresses are found once per CTA.
constexpr int kChunksPerRow = kSlice / 8;
constexpr int kRowsPerPass = kThreads / kChunksPerRow;
static_assert(kTile == 2 * kRowsPerPass, "two chunks per thread cover the tile");

// Copies slice `slice` of the thread's two rows (`src`, nullptr for a row that does not
// exist, which gets zeros) into `tile`.
__device__ __forceinline__ void load_slice(uint16_t (*tile)[kSliceStride], int slice, const uint16_t* const (&src)[2]) {
    const int row = (int)threadIdx.x / kChunksPerRow, part = (int)threadIdx.x % kChunksPerRow;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (src[i] != nullptr) {
            v = *reinterpret_cast<const uint4*>(src[i] + slice * kSlice + part * 8);
        }
        *reinterpret_cast<uint4*>(&tile[row + i * kRowsPerPass][part * 8]) = v;
    }
}

// CTA (key tile x, row tile y, unit z % units of sequence z / units): 4 warps, each 16 probe
// rows x 64 keys, the f32 accumulators kept over the whole head_dim.
template <typename T, int D>
__device__ __forceinline__ void scores(const VsEstimateParams& p) {
    static_assert(D % kSlice == 0, "head_dim is walked in 32-wide slices");
    // The host validates all of this; other params make the kernel do nothing rather than
    // address memory it was not given.
    if (p.units <= 0 || p.rows <= 0 || p.last_q <= 0 || p.heads_per_unit <= 0 || p.heads_kv <= 0 ||
        p.heads_q < p.heads_kv || (int64_t)blockIdx.z >= (int64_t)p.batch * p.units) {
        return;
    }
    const int u = (int)blockIdx.z % p.units, b = (int)blockIdx.z / p.units;
    const Seq s = sequence(p, b);
    const int key0 = (int)blockIdx.x * kTile, row0 = (int)blockIdx.y * kTile;
    const int slots = probe_slots(p, s);
    // The same answer in every thread: the tile holds no key or no probe row.
    if (key0 >= s.lk || row0 >= p.rows || slots == 0) {
        return;
    }
    const int group = p.heads_q / p.heads_kv;
    const int kv_head = u * p.heads_per_unit / group;
    const uint16_t* q = reinterpret_cast<const uint16_t*>(p.q);
    const uint16_t* k = reinterpret_cast<const uint16_t*>(p.k);
    const uint16_t* q_src[2];
    const uint16_t* k_src[2];
    auto q_row = [&](int row) -> const uint16_t* {
        const int r = row0 + row;
        const int t = r % p.last_q;
        if (r >= p.rows || t >= slots) {
            return nullptr;
        }
        const int h = u * p.heads_per_unit + r / p.last_q;
        const int64_t i = (int64_t)s.q0 + s.lq - slots + t;
        return q + (int64_t)b * p.q_batch + i * p.q_seq + (int64_t)h * p.q_head;
    };
    auto k_row = [&](int row) -> const uint16_t* {
        const int j = key0 + row;
        if (j >= s.lk) {
            return nullptr;
        }
        return k + (int64_t)b * p.k_batch + ((int64_t)s.k0 + j) * p.k_seq + (int64_t)kv_head * p.k_head;
    };
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        q_src[i] = q_row((int)threadIdx.x / kChunksPerRow + i * kRowsPerPass);
        k_src[i] = k_row((int)threadIdx.x / kChunksPerRow + i * kRowsPerPass);
    }

    __shared__ __align__(16) uint16_t q_tile[kTile][kSliceStride];
    __shared__ __align__(16) uint16_t k_tile[kTile][kSliceStride];
    const int warp = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    float acc[kTile / 8][4];
#pragma unroll
    for (int n = 0; n < kTile / 8; ++n) {
        acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    }
    for (int slice = 0; slice < D / kSlice; ++slice) {
        load_slice(q_tile, slice, q_src);
        load_slice(k_tile, slice, k_src);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kSlice / 16; ++kk) {
            // A: matrices (rows +0, dims +0), (rows +8, dims +0), (rows +0, dims +8), (rows +8, dims +8).
            uint32_t a[4];
            attn::ldmatrix_x4(a, attn::smem_u32(&q_tile[warp * 16 + (lane & 15)][kk * 16 + (lane >> 4) * 8]));
#pragma unroll
            for (int nb = 0; nb < kTile / 16; ++nb) {
                // B of key blocks 2nb and 2nb + 1: (keys +0, dims +0), (keys +0, dims +8),
                // (keys +8, dims +0), (keys +8, dims +8).
                uint32_t kb[4];
                const int key = nb * 16 + (lane & 7) + ((lane >> 4) << 3);
                attn::ldmatrix_x4(kb, attn::smem_u32(&k_tile[key][kk * 16 + ((lane >> 3) & 1) * 8]));
                attn::Mma<T>::mma(acc[2 * nb], a, kb[0], kb[1]);
                attn::Mma<T>::mma(acc[2 * nb + 1], a, kb[2], kb[3]);
            }
        }
        // The next slice overwrites both tiles.
        __syncthreads();
    }

    // C fragment: (row g, keys 2t, 2t + 1) in elements 0, 1 and row g + 8 in 2, 3.
    float* out = reinterpret_cast<float*>(p.scores);
    const int g = lane / 4, t4 = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const int r = row0 + warp * 16 + g + half * 8;
        if (r >= p.rows) {
            continue;
        }
        float* row = out + row_index(p, b, u, r) * p.seq_k;
#pragma unroll
        for (int n = 0; n < kTile / 8; ++n) {
            const int j = key0 + n * 8 + 2 * t4;
            if (j < s.lk) {
                row[j] = acc[n][2 * half] * p.softmax_scale;
            }
            if (j + 1 < s.lk) {
                row[j + 1] = acc[n][2 * half + 1] * p.softmax_scale;
            }
        }
    }
}

// ---- per-row softmax statistics ------------------------------------------------------------

// A warp per probe row (4 per CTA; grid (ceil(rows / 4), units, batch)): the max over the
// keys the row sees, then 1 / sum of exp(score - max), each reduced by a fixed butterfly.
// fmaxf skips NaN as the host's f64::max does; a row seeing no key gets (0, 0) and is
// skipped by the sums.
__device__ __forceinline__ void row_stats(const VsEstimateParams& p) {
    const int r = (int)blockIdx.x * (kThreads / 32) + (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int u = (int)blockIdx.y, b = (int)blockIdx.z;
    if (p.last_q <= 0 || r >= p.rows || u >= p.units || b >= p.batch) {
        return;
    }
    const Seq s = sequence(p, b);
    const int visible = visible_keys(s, probe_slots(p, s), r % p.last_q);
    const int64_t at = row_index(p, b, u, r);
    float* stats = reinterpret_cast<float*>(p.row_stats) + at * 2;
    if (visible == 0) {
        if (lane == 0) {
            stats[0] = 0.f;
            stats[1] = 0.f;
        }
        return;
    }
    const float* row = reinterpret_cast<const float*>(p.scores) + at * p.seq_k;
    float m = -INFINITY;
    for (int j = lane; j < visible; j += 32) {
        m = fmaxf(m, row[j]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    }
    float l = 0.f;
    for (int j = lane; j < visible; j += 32) {
        l += __expf(row[j] - m);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        l += __shfl_xor_sync(0xffffffffu, l, o);
    }
    if (lane == 0) {
        stats[0] = m;
        stats[1] = 1.f / l;
    }
}

// ---- column and diagonal sums --------------------------------------------------------------

// Thread c of the grid (ceil(seq_k / 128), units, batch) owns key column c and distance c:
// it adds the probabilities of every probe row of its unit in row order. For a kv group
// that is the sum over its query heads, which ranks as the host's mean does. Row r sees column
// c and distance c exactly when c < visible(r); distance c of row r is key visible - 1 - c.
__device__ __forceinline__ void sums(const VsEstimateParams& p) {
    const int c = (int)blockIdx.x * kThreads + (int)threadIdx.x;
    const int u = (int)blockIdx.y, b = (int)blockIdx.z;
    if (p.last_q <= 0 || u >= p.units || b >= p.batch) {
        return;
    }
    const Seq s = sequence(p, b);
    if (c >= s.lk) {
        return;
    }
    const int slots = probe_slots(p, s);
    const float* scores = reinterpret_cast<const float*>(p.scores);
    const float* stats = reinterpret_cast<const float*>(p.row_stats);
    float column = 0.f, diagonal = 0.f;
    // Row r is slot t of head r / last_q; it sees column c when c < lk - slots + t + 1.
    // The row and statistics pointers step along with r (no 64-bit products in the loop).
    const int64_t first = row_index(p, b, u, 0);
    const float2* st = reinterpret_cast<const float2*>(stats) + first;
    const float* row = scores + first * p.seq_k;
    for (int r = 0, t = 0; r < p.rows; ++r, t = t + 1 == p.last_q ? 0 : t + 1, ++st, row += p.seq_k) {
        const int visible = visible_keys(s, slots, t);
        if (c >= visible) {
            continue;
        }
        const float2 mi = *st;
        column += __expf(row[c] - mi.x) * mi.y;
        diagonal += __expf(row[visible - 1 - c] - mi.x) * mi.y;
    }
    const int64_t out = ((int64_t)b * p.units + u) * p.seq_k + c;
    reinterpret_cast<float*>(p.vertical_scores)[out] = column;
    reinterpret_cast<float*>(p.slash_scores)[out] = diagonal;
}

// ---- top-k selection -------------------------------------------------------------------------

// The order key of a sum: unsigned order = float order, every NaN lowest (as topk_select.cu).
// Forced entries get the largest key, above +inf.
__device__ __forceinline__ uint32_t order_key(float x, bool forced) {
    const uint32_t bits = __float_as_uint(x);
    if (forced) {
        return 0xffffffffu;
    }
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    return (bits & 0x80000000u) != 0u ? ~bits : (bits | 0x80000000u);
}

// The order keys of one unit's column or distance sums, the forced ones first.
struct SumKeys {
    const float* sums;
    int forced;
    __device__ __forceinline__ uint32_t key(int64_t j) const { return order_key(sums[j], j < forced); }
};

// CTA (unit x, kind y: 0 columns, 1 distances, sequence z). Candidates are 0 .. n, n the
// sequence's keys (0 for an empty sequence). With n <= nnz every candidate is kept and the
// row continues with n, n + 1, ...: keys and distances no row of the sequence sees, the
// padding of src/pattern/estimate_varlen.rs. Otherwise a radix select finds the nnz-th
// largest key (four 8-bit passes) and a compaction in index order takes everything above it
// and the first ties, which is the lower-index rule. Columns are written ascending,
// distances descending (position nnz - 1 - rank), to every query head of the unit.
__device__ __forceinline__ void select_top(const VsEstimateParams& p) {
    const int u = (int)blockIdx.x, kind = (int)blockIdx.y, b = (int)blockIdx.z, tid = (int)threadIdx.x;
    if (u >= p.units || b >= p.batch || p.heads_per_unit <= 0) {
        return;
    }
    const int nnz = kind == 0 ? p.nnz_v : p.nnz_s;
    const int forced = kind == 0 ? p.forced_columns : p.forced_diagonals;
    if (nnz <= 0) {
        return;
    }
    const Seq s = sequence(p, b);
    const int n = s.lq > 0 && s.lk > 0 ? s.lk : 0;
    int32_t* out = reinterpret_cast<int32_t*>(kind == 0 ? p.vertical_indexes : p.slash_indexes) +
                   ((int64_t)b * p.heads_q + (int64_t)u * p.heads_per_unit) * nnz;
    auto put = [&](int rank, int value) {
        const int at = kind == 0 ? rank : nnz - 1 - rank;
        for (int h = 0; h < p.heads_per_unit; ++h) {
            out[(int64_t)h * nnz + at] = value;
        }
    };
    if (n <= nnz) {
        for (int i = tid; i < nnz; i += kSelectThreads) {
            put(i, i);
        }
        return;
    }
    const float* sums = reinterpret_cast<const float*>(kind == 0 ? p.vertical_scores : p.slash_scores) +
                        ((int64_t)b * p.units + u) * p.seq_k;

    topk_select::select_top_keys(SumKeys{sums, forced}, n, nnz, [&](int rank, int64_t j) { put(rank, (int)j); });
}

}  // namespace vs_estimate

#define SA_INSTANTIATE(dtype_name, dtype, d)                                                        \
    extern "C" __global__ void __launch_bounds__(SA_VS_ESTIMATE_THREADS)                            \
        vs_estimate_scores_##dtype_name##_hd##d(const __grid_constant__ VsEstimateParams p) {       \
        vs_estimate::scores<dtype, d>(p);                                                           \
    }
SA_INSTANTIATE_EACH_DTYPE_AND_HEAD_DIM
#undef SA_INSTANTIATE

extern "C" __global__ void __launch_bounds__(SA_VS_ESTIMATE_THREADS)
vs_estimate_row_stats(const __grid_constant__ VsEstimateParams p) {
    vs_estimate::row_stats(p);
}

extern "C" __global__ void __launch_bounds__(SA_VS_ESTIMATE_THREADS)
vs_estimate_sums(const __grid_constant__ VsEstimateParams p) {
    vs_estimate::sums(p);
}

extern "C" __global__ void __launch_bounds__(SA_VS_ESTIMATE_SELECT_THREADS)
vs_estimate_select(const __grid_constant__ VsEstimateParams p) {
    vs_estimate::select_top(p);
}
