// Device-side vertical-slash conversion of one row block (see src/pattern/vs_convert.rs
// for the rule). Kept in a header so an attention kernel could build its indices inline.
#pragma once
#include "common/c_std.h"

#include "params.h"

namespace vs_index {

constexpr int64_t kBlockM = SA_INDEX_BLOCK_M;  // query rows per row block (pattern::BLOCK_M)
constexpr int64_t kBlockN = SA_INDEX_BLOCK_N;  // keys per tile (pattern::BLOCK_N); must equal kBlockM
static_assert(kBlockM == kBlockN, "ranges grow in BLOCK_M steps and are cut into BLOCK_N tiles");

// A row block placed in key coordinates. 64-bit: `hi` can pass INT32_MAX.
struct RowBlock {
    int64_t hi;     // one past the diagonal key of the block's last row (full BLOCK_M rows)
    int64_t limit;  // keys below this are visible to at least one actual row of the block
};

__device__ __forceinline__ RowBlock row_block(int32_t seq_q, int32_t seq_k, int32_t m) {
    const int64_t offset = (int64_t)seq_k - seq_q;
    const int64_t block_end = ((int64_t)m + 1) * kBlockM;
    const int64_t last_row = (block_end < seq_q ? block_end : (int64_t)seq_q) - 1;
    const int64_t limit = last_row + offset + 1;
    RowBlock rb;
    rb.hi = block_end + offset;
    rb.limit = limit < seq_k ? limit : (int64_t)seq_k;
    return rb;
}

// Appends the tile starts of range [start, end) below the visibility limit; stops at the
// row capacity.
__device__ __forceinline__ int emit_range(const RowBlock& rb, int64_t start, int64_t end, int32_t* out,
                                          int cap, int count) {
    for (int64_t o = start; o < end && o < rb.limit && count < cap; o += kBlockN) {
        out[count++] = (int32_t)o;
    }
    return count;
}

// Slashes (farthest first) -> ascending, disjoint tile starts. Entries that are negative
// or lie beyond the block are skipped, so any input is safe.
__device__ __forceinline__ int build_tiles(const RowBlock& rb, const int32_t* slashes, int nnz_s, int32_t* out) {
    int count = 0;
    // end < 0 means no range is open yet (a real range ends at kBlockM or later). A flag
    // would do, but nvcc keeps bools in 16-bit registers; this keeps the PTX to 32/64-bit.
    int64_t start = 0, end = -1;
    for (int s = 0; s < nnz_s; ++s) {
        const int64_t d = slashes[s];
        if (d < 0 || d >= rb.hi) {
            continue;
        }
        const int64_t reach = rb.hi - d;
        const int64_t e = reach > kBlockM ? reach : kBlockM;
        if (end < 0) {
            start = e - kBlockM;
            end = e;
        } else if (e - kBlockM > end) {
            count = emit_range(rb, start, end, out, nnz_s, count);
            start = e - kBlockM;
            end = e;
        } else if (e > end) {
            end += kBlockM;
        }
    }
    if (end >= 0) {
        count = emit_range(rb, start, end, out, nnz_s, count);
    }
    return count;
}

// Verticals (ascending) that are visible and outside every tile -> columns. `tiles` holds
// this thread's own `n_tiles` ascending starts.
__device__ __forceinline__ int build_columns(const RowBlock& rb, const int32_t* verticals, int nnz_v,
                                             const int32_t* tiles, int n_tiles, int32_t* out) {
    int count = 0;
    int t = 0;
    for (int k = 0; k < nnz_v; ++k) {
        const int64_t v = verticals[k];
        if (v < 0) {
            continue;
        }
        if (v >= rb.limit || count >= nnz_v) {
            break;
        }
        while (t < n_tiles && (int64_t)tiles[t] + kBlockN <= v) {
            ++t;
        }
        if (t < n_tiles && (int64_t)tiles[t] <= v) {
            continue;
        }
        out[count++] = (int32_t)v;
    }
    return count;
}

}  // namespace vs_index
