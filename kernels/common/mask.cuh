// Per-element masking of a score tile: a key is attended iff it names a real key
// (0 <= key < seq_k, which also rejects the -1 of an invalid gathered slot) and, under the
// bottom-right causal mask, key <= row + seq_k - seq_q.
#pragma once
#include "common/c_std.h"

namespace attn {

// The largest key `row` may see: seq_k - 1 without causal masking, otherwise
// min(row + seq_k - seq_q, seq_k - 1) (negative when the row sees nothing). Computed in
// 64 bits: padding rows past seq_q may push row + offset past INT32_MAX.
__device__ __forceinline__ int last_visible_key(int row, int seq_q, int seq_k, bool causal) {
    if (!causal) {
        return seq_k - 1;
    }
    const int64_t diag = (int64_t)row + seq_k - seq_q;
    return (int)(diag < seq_k - 1 ? diag : (int64_t)seq_k - 1);
}

// Number of keys that at least one row of row block `m` (BLOCK_M rows) may see: the
// visibility limit of its last real row. Tiles starting at or past it hold no work.
__device__ __forceinline__ int row_block_key_limit(int m, int block_m, int seq_q, int seq_k, bool causal) {
    const int64_t end = (int64_t)(m + 1) * block_m;
    const int last_row = (int)((end < seq_q ? end : (int64_t)seq_q) - 1);
    const int last = last_visible_key(last_row, seq_q, seq_k, causal);
    return last + 1 > 0 ? last + 1 : 0;
}

// Key range masking of one C fragment pair: `key` (any int, -1 for "none") against the
// row's last visible key.
__device__ __forceinline__ float mask_score(float s, int key, int last_key) {
    return (key >= 0 && key <= last_key) ? s : -INFINITY;
}

}  // namespace attn
