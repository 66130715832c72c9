// Launch-parameter structs shared by the kernels and the Rust host code.
// src/params.rs mirrors each struct field for field (#[repr(C)]); a test asserts that
// size, alignment and every field offset agree. Structs are passed by value as kernel
// parameters (FlashAttention style), so adding a field never changes a kernel signature.
#pragma once
#include <stdint.h>

// vertical_slash_convert (kernels/index.cu): vertical-slash indexes -> tiles + columns.
// One thread per (batch, head, row block); grid = ceil(batch * heads * row_blocks / 128)
// blocks of 128 threads. Pointers are device addresses as integers so the Rust mirror is
// plain old data; every tensor is i32, densely packed, and `heads` is the descriptor's H.
typedef struct VsConvertParams {
    uint64_t vertical_indexes;  // const int32_t [batch, heads, nnz_v], ascending keys
    uint64_t slash_indexes;     // const int32_t [batch, heads, nnz_s], descending distances
    uint64_t block_count;       // int32_t [batch, heads, row_blocks]
    uint64_t block_offset;      // int32_t [batch, heads, row_blocks, nnz_s]
    uint64_t column_count;      // int32_t [batch, heads, row_blocks]
    uint64_t column_index;      // int32_t [batch, heads, row_blocks, nnz_v]
    int32_t batch;
    int32_t heads;
    int32_t seq_q;
    int32_t seq_k;
    int32_t nnz_v;
    int32_t nnz_s;
    int32_t row_blocks;  // ceil(seq_q / 64): the third dimension of the outputs
    int32_t pad0;        // keeps the size a multiple of 8 explicitly; must be 0
} VsConvertParams;
