// One row of a sparsity descriptor's index list: an int32 [rows][capacity] tensor whose
// per-row entry counts sit in a separate int32 [rows] tensor. Both come from the device and
// are untrusted: the count is clamped into 0..=capacity, and a capacity <= 0 gives an empty
// row whose count is never read.
#pragma once
#include "common/c_std.h"

namespace attn {

// Clamps a count read from the device into 0..=cap.
__device__ __forceinline__ int clamp_count(int32_t n, int cap) {
    return n < 0 ? 0 : (n > cap ? cap : n);
}

struct IndexRow {
    const int32_t* entries;
    int count;
};

// Row `row` of the list at `index` (`capacity` entries a row), counted by `counts[row]`.
__device__ __forceinline__ IndexRow index_row(uint64_t index, uint64_t counts, int32_t capacity, int64_t row) {
    const int cap = capacity > 0 ? capacity : 0;
    IndexRow r;
    r.count = cap > 0 ? clamp_count(reinterpret_cast<const int32_t*>(counts)[row], cap) : 0;
    r.entries = reinterpret_cast<const int32_t*>(index) + row * cap;
    return r;
}

}  // namespace attn
