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

    const vs_index::RowBlock rb = vs_index::row_block(p.seq_q, p.seq_k, m);
    const int n_tiles = vs_index::build_tiles(rb, slashes, p.nnz_s, tiles);
    const int n_columns = vs_index::build_columns(rb, verticals, p.nnz_v, tiles, n_tiles, columns);

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
