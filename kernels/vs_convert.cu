// Building sparse indices on the GPU.
//
// vertical_slash_convert: MInference's vertical-slash indexes -> per-row-block tiles and
// columns. The rule, and where it deliberately differs from MInference, is documented in
// src/pattern/vs_convert.rs; this kernel must produce exactly what that CPU conversion
// produces. It trusts nothing it reads: every load and store is bounds-checked against the
// sizes in the params, and counts stop at the row capacities, so arbitrary index values
// (negative, huge, unsorted) give unspecified-but-in-bounds output, never a stray access.
#include "common/c_std.h"

#include "params.h"
#include "common/vs_index.cuh"

struct SeqLens {
    int32_t q, k;
};

// The difference of entries b and b + 1 of a cu_seqlens tensor, or 0 unless it is in
// [0, longest].
__device__ __forceinline__ int32_t span(uint64_t cu, int b, int32_t longest) {
    const int32_t* c = reinterpret_cast<const int32_t*>(cu);
    const int64_t len = (int64_t)c[b + 1] - c[b];
    return len >= 0 && len <= longest ? (int32_t)len : 0;
}

// Sequence b's query and key lengths: the params' own (padded), or read from the varlen or
// paged lengths, each checked against the longest. (Plain loads: tests/vs_convert.rs also
// compiles this file as host C++.)
__device__ __forceinline__ SeqLens sequence_lens(const VsConvertParams& p, int b) {
    SeqLens l;
    l.q = p.cu_seqlens_q != 0 ? span(p.cu_seqlens_q, b, p.seq_q) : p.seq_q;
    if (p.seqlens_k != 0) {
        const int32_t k = reinterpret_cast<const int32_t*>(p.seqlens_k)[b];
        l.k = k >= 0 && k <= p.seq_k ? k : 0;
    } else {
        l.k = p.cu_seqlens_k != 0 ? span(p.cu_seqlens_k, b, p.seq_k) : p.seq_k;
    }
    return l;
}

// One thread per (batch, head, row block), SA_VS_CONVERT_THREADS to a block. Rows are
// independent and short (at most nnz_s + nnz_v steps), so a thread each keeps the code a
// straight transcription of the host rule; the work is tiny next to the attention that
// consumes it.
extern "C" __global__ void __launch_bounds__(SA_VS_CONVERT_THREADS)
vertical_slash_convert(const __grid_constant__ VsConvertParams p) {
    if (p.batch <= 0 || p.heads <= 0 || p.row_blocks <= 0 || p.seq_q <= 0 || p.seq_k <= 0 ||
        p.nnz_v < 0 || p.nnz_s < 0) {
        return;
    }
    const int64_t tasks = (int64_t)p.batch * p.heads * p.row_blocks;
    const int64_t task = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (task >= tasks) {
        return;
    }
    const int64_t head_row = task / p.row_blocks;  // b * heads + h
    const int m = (int)(task % p.row_blocks);

    const int32_t* verticals = reinterpret_cast<const int32_t*>(p.vertical_indexes) + head_row * p.nnz_v;
    const int32_t* slashes = reinterpret_cast<const int32_t*>(p.slash_indexes) + head_row * p.nnz_s;
    int32_t* tiles = reinterpret_cast<int32_t*>(p.block_offset) + task * p.nnz_s;
    int32_t* columns = reinterpret_cast<int32_t*>(p.column_index) + task * p.nnz_v;

    const int b = (int)(head_row / p.heads);
    const SeqLens lens = sequence_lens(p, b);
    int n_tiles = 0, n_columns = 0;
    if ((int64_t)m * vs_index::kBlockM < lens.q && lens.k > 0) {
        const vs_index::RowBlock rb = vs_index::row_block(lens.q, lens.k, m);
        n_tiles = vs_index::build_tiles(rb, slashes, p.nnz_s, tiles);
        n_columns = vs_index::build_columns(rb, verticals, p.nnz_v, tiles, n_tiles, columns);
    }

    // Entries past a count are -1, so the output does not depend on what the buffers held.
    for (int k = n_tiles; k < p.nnz_s; ++k) {
        tiles[k] = -1;
    }
    for (int k = n_columns; k < p.nnz_v; ++k) {
        columns[k] = -1;
    }
    reinterpret_cast<int32_t*>(p.block_count)[task] = n_tiles;
    reinterpret_cast<int32_t*>(p.column_count)[task] = n_columns;
}
