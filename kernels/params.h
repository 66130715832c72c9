// What the kernels and the Rust host code share: every kernel constant (tile sizes, block
// sizes, the dtype x head_dim instantiation list) and the launch-parameter structs.
// src/params.rs mirrors each constant and each struct field for field (#[repr(C)]);
// tests/params_layout.rs compiles this header with gcc and asserts that the constants, and
// every struct's size, alignment and field offsets, agree. Structs are passed by value as
// kernel parameters (FlashAttention style), so adding a field never changes a kernel
// signature. Plain C: no CUDA types here (kernels/common/instantiate.cuh maps the dtype
// names to them).
#pragma once
#include "common/c_std.h"

// ---- Kernel constants: every kernel reads these, src/params.rs mirrors them ----
// (A new SA_* macro needs its mirror there and in tests/params_layout.rs, which fails on an
// SA_* macro it does not know.)

// Index granularity of every sparse format: the query rows of one row block (block_count,
// block_index, block_offset, column_* rows; row_blocks = ceil(seq_q / SA_INDEX_BLOCK_M)) and
// the keys of one key block (block ids, vertical-slash tile starts span SA_INDEX_BLOCK_N keys).
#define SA_INDEX_BLOCK_M 64
#define SA_INDEX_BLOCK_N 64
// Prefill tiles: query rows per row block and keys per K/V tile, equal to the index block
// (kernels/prefill/tiles.cuh asserts it). The dense kernel's own key tile is chosen per
// head_dim (dense_key_tile there).
#define SA_PREFILL_TILE_M 64
#define SA_PREFILL_TILE_N 64
// Prefill threads per CTA: 4 warps. A warp owns 32 query rows of one of the CTA's two row
// blocks (dense, block-sparse) or 16 rows of its one row block (vertical-slash).
#define SA_PREFILL_THREADS 128
// Row blocks per CTA of the dense and block-sparse (and A-shape) prefill kernels up to
// head_dim SA_PREFILL_PAIR_MAX_HEAD_DIM: row blocks 2c and 2c + 1 share one CTA (128 rows,
// FlashAttention-2's forward CTA) and each K/V tile load; each warp runs two 16-row
// m-tiles of one of them. Above that head_dim (256) every prefill kernel runs one row
// block per CTA, a warp one m-tile (FlashAttention-2's 64-row CTA at 256), and so does the
// vertical-slash kernel at every head_dim.
#define SA_PREFILL_ROW_BLOCKS 2
#define SA_PREFILL_PAIR_MAX_HEAD_DIM 128
// Top-k attention: query heads of one GQA group packed as the mma's 16 rows of one warp,
// index slots (gathered keys) per shared-memory tile, threads per CTA (one warp).
#define SA_TOPK_HEADS_PER_WARP 16
#define SA_TOPK_TILE_KEYS 32
#define SA_TOPK_THREADS 32
// vertical_slash_convert: threads per block, one per (batch, head, row block).
#define SA_VS_CONVERT_THREADS 128
// Decode (kernels/decode.cu): threads per CTA (4 warps, each one 16-row m-tile), query rows
// per CTA (a GQA group's heads x the new tokens, packed as the mma's M), and the most new
// tokens per sequence.
#define SA_DECODE_THREADS 128
#define SA_DECODE_ROWS 64
#define SA_DECODE_MAX_Q_LEN 16
// merge_states (kernels/merge.cu): threads per block, a warp per output row.
#define SA_MERGE_THREADS 128
// topk_select_<f32|bf16> (kernels/topk_select.cu): threads per CTA, one CTA per score row.
#define SA_TOPK_SELECT_THREADS 256
// The dtype x head_dim instantiation lists (X-macros): every kernel family instantiates
// every pair (kernels/common/instantiate.cuh). A new head_dim is one edit here plus the
// Rust mirror; a new dtype also needs its CUDA type in instantiate.cuh.
#define SA_FOR_EACH_DTYPE(X) X(f16) X(bf16)
#define SA_FOR_EACH_HEAD_DIM(X) X(64) X(96) X(128) X(256)

// ---- Launch-parameter structs ----

// vertical_slash_convert (kernels/vs_convert.cu): vertical-slash indexes -> tiles + columns,
// for a padded batch or, per sequence, a varlen or paged one.
// One thread per (batch, head, row block); grid = ceil(batch * heads * row_blocks /
// SA_VS_CONVERT_THREADS) blocks of SA_VS_CONVERT_THREADS threads. Pointers are device addresses as integers so the Rust mirror is
// plain old data; every tensor is i32, densely packed, and `heads` is the descriptor's H.
typedef struct VsConvertParams {
    uint64_t vertical_indexes;  // const int32_t [batch, heads, nnz_v], ascending keys
    uint64_t slash_indexes;     // const int32_t [batch, heads, nnz_s], descending distances
    uint64_t block_count;       // int32_t [batch, heads, row_blocks]
    uint64_t block_offset;      // int32_t [batch, heads, row_blocks, nnz_s]
    uint64_t column_count;      // int32_t [batch, heads, row_blocks]
    uint64_t column_index;      // int32_t [batch, heads, row_blocks, nnz_v]
    // Varlen and paged batches (each 0 when unused): sequence b's query rows are
    // cu_seqlens_q[b + 1] - cu_seqlens_q[b], its keys seqlens_k[b] (paged) or
    // cu_seqlens_k[b + 1] - cu_seqlens_k[b] (varlen); seq_q and seq_k are then the longest
    // sequence's. Untrusted: a length outside [0, seq_q] or [0, seq_k] gives the sequence
    // empty rows. Row blocks past a sequence's own get no tiles and no columns.
    uint64_t cu_seqlens_q;      // const int32_t [batch + 1], or 0
    uint64_t cu_seqlens_k;      // const int32_t [batch + 1], or 0
    uint64_t seqlens_k;         // const int32_t [batch], or 0
    int32_t batch;
    int32_t heads;
    int32_t seq_q;
    int32_t seq_k;
    int32_t nnz_v;
    int32_t nnz_s;
    int32_t row_blocks;  // ceil(seq_q / SA_INDEX_BLOCK_M): the third dimension of the outputs
    int32_t pad0;        // keeps the size a multiple of 8 explicitly; must be 0
} VsConvertParams;

// The dense tensors of one attention launch, the first member of AttnParams and TopkParams.
// Tensors are BSHD with strides in elements (the head_dim dimension is contiguous);
// q/k/v/out rows must be 16-byte aligned (cp.async), which the host checks.
typedef struct AttnTensorParams {
    uint64_t q;             // const T [batch, seq_q, heads_q, head_dim]
    uint64_t k;             // const T [batch, seq_k, heads_kv, head_dim]
    uint64_t v;             // const T [batch, seq_k, heads_kv, head_dim]
    uint64_t out;           // T [batch, seq_q, heads_q, head_dim]
    uint64_t lse;           // float [batch, heads_q, seq_q] (varlen: [heads_q, total_q]), natural log; 0 = not wanted
    int64_t q_batch_stride;
    int64_t q_seq_stride;
    int64_t q_head_stride;
    int64_t k_batch_stride;
    int64_t k_seq_stride;
    int64_t k_head_stride;
    int64_t v_batch_stride;
    int64_t v_seq_stride;
    int64_t v_head_stride;
    int64_t out_batch_stride;
    int64_t out_seq_stride;
    int64_t out_head_stride;
    int64_t lse_batch_stride;  // floats between batch entries of the LSE
    int64_t lse_head_stride;   // floats between heads of the LSE (rows are contiguous)
    // Varlen (packed) sequences: sequence b's query rows are rows cu_seqlens_q[b] ..
    // cu_seqlens_q[b + 1] - 1 of q / out (and columns of the LSE), its keys rows
    // cu_seqlens_k[b] .. of k / v; the batch strides are then 0 and seq_q / seq_k are the
    // longest lengths, which size the grid. 0 = padded BSHD. The entries are untrusted: a
    // sequence whose bounds are not 0 <= start <= end <= total runs as empty.
    uint64_t cu_seqlens_q;     // const int32_t [batch + 1], or 0
    uint64_t cu_seqlens_k;     // const int32_t [batch + 1], or 0
    int32_t total_q;           // packed rows of q (varlen; 0 otherwise)
    int32_t total_k;           // packed rows of k and v (varlen; 0 otherwise)
    // Paged K / V caches (with varlen queries; cu_seqlens_k unused): key j of sequence b is
    // token j & (page_size - 1) of page block_table[b * max_pages + (j >> page_shift)], at
    // page * k_page_stride + token * k_seq_stride + head * k_head_stride of k (v alike);
    // seqlens_k[b] keys. Untrusted: a length past max_pages pages makes the sequence empty,
    // and its keys stop at its first page outside [0, num_pages). 0 = not paged.
    uint64_t block_table;      // const int32_t [batch, max_pages], or 0
    uint64_t seqlens_k;        // const int32_t [batch], or 0
    int64_t k_page_stride;     // elements between pages of the k cache
    int64_t v_page_stride;     // elements between pages of the v cache
    int32_t max_pages;         // entries per block_table row
    int32_t num_pages;         // pages in each cache
    int32_t page_shift;        // log2(page_size)
    // The score options engines ask for, read only by the `_opt` kernel variants (the plain
    // kernels are built without them; the host picks `_opt` when any is on):
    // - window_left: row r (of a sequence with seq_q rows and seq_k keys) sees no key below
    //   r + seq_k - seq_q - window_left, the bottom-right diagonal minus the window; -1 = no
    //   window. Intersected with whatever else masks the key.
    // - sinks: a learned logit per query head (natural log, already in softmax units) that
    //   joins each row's softmax denominator as exp(sink) without a value row (gpt-oss).
    //   The LSE includes it. Decode adds it in split 0 only, so the merge counts it once.
    // - softcap: a raw score s becomes t = tanh(s * softcap_in), softcap_in = scale / cap,
    //   whose logit is cap * t (Gemma 2's cap * tanh(scale * s / cap)). The host then sets
    //   the family's softmax_scale to cap and scale_log2 to cap * log2(e), so the exp2
    //   softmax, the LSE and the sinks read t like any raw score. softcap_in = 0: no softcap.
    int32_t window_left;       // -1 = no window
    uint64_t sinks;            // const float [heads_q], or 0
    float softcap_in;          // scale / cap, or 0
    int32_t pad1;              // keeps the size a multiple of 8 explicitly; must be 0
} AttnTensorParams;

// attn_fwd_<pattern>_<dtype>_hd<D> (kernels/prefill.cu): prefill attention, one CTA of
// SA_PREFILL_THREADS threads per (SA_PREFILL_ROW_BLOCKS row blocks of SA_PREFILL_TILE_M
// query rows, query head, batch) for dense and block-sparse, grid = (ceil(row_blocks /
// SA_PREFILL_ROW_BLOCKS), heads_q, batch); per (row block, query head, batch) for
// vertical-slash, grid = (row_blocks, heads_q, batch). Tensors as in AttnTensorParams.
// The sparse-source fields are read only by the pattern that uses them:
//   block-sparse:    block_count [B, H, MB], block_index [B, H, MB, max_blocks]
//   vertical-slash:  block_count [B, H, MB], block_index = block_offset [B, H, MB, max_blocks
//                    = NNZ_S], column_count [B, H, MB], column_index [B, H, MB, max_columns = NNZ_V]
// where H = desc_heads (heads_q, or heads_kv for one mask per GQA group). Index values are
// untrusted: the kernel skips whatever is out of range or out of order.
typedef struct AttnParams {
    AttnTensorParams tensors;  // q, k, v, out, lse and their strides
    uint64_t block_count;   // const int32_t, see above; 0 for dense
    uint64_t block_index;   // const int32_t, see above; 0 for dense
    uint64_t column_count;  // const int32_t, vertical-slash only; 0 otherwise
    uint64_t column_index;  // const int32_t, vertical-slash only; 0 otherwise
    int32_t batch;
    int32_t seq_q;
    int32_t seq_k;
    int32_t heads_q;
    int32_t heads_kv;
    int32_t desc_heads;     // H of the descriptor (0 for dense)
    int32_t row_blocks;     // MB = ceil(seq_q / SA_INDEX_BLOCK_M)
    int32_t max_blocks;     // capacity of a block_index row
    int32_t max_columns;    // capacity of a column_index row
    int32_t causal;         // 0 or 1: bottom-right causal mask
    float softmax_scale;    // multiplies q.k
    float scale_log2;       // softmax_scale * log2(e): what the exp2-based softmax uses
} AttnParams;

// topk_attn_fwd_<dtype>_hd<D> (kernels/topk_attention.cu): every query row attends its own
// gathered keys. One warp (one CTA of SA_TOPK_THREADS threads) per (query row, kv head,
// chunk of up to SA_TOPK_HEADS_PER_WARP query heads of that kv head's GQA group); grid =
// (seq_q, heads_kv * head_chunks, batch) with head_chunks = ceil((heads_q / heads_kv) /
// SA_TOPK_HEADS_PER_WARP). Tensors as in AttnTensorParams.
// indices: const int32_t [batch, seq_q, heads_kv, topk], densely packed; -1, anything
// outside [0, seq_k) and (under causal) keys past the row's diagonal are skipped.
typedef struct TopkParams {
    AttnTensorParams tensors;  // q, k, v, out, lse and their strides
    uint64_t indices;       // const int32_t [batch, seq_q, heads_kv, topk] (varlen: [total_q, heads_kv, topk])
    int64_t indices_batch_stride;  // index rows between batch entries: seq_q (varlen: 0)
    int32_t batch;
    int32_t seq_q;
    int32_t seq_k;
    int32_t heads_q;
    int32_t heads_kv;
    int32_t topk;           // slots per index row
    int32_t head_chunks;    // ceil(group / SA_TOPK_HEADS_PER_WARP)
    int32_t causal;
    float softmax_scale;
    float scale_log2;
} TopkParams;

// decode_<source>_<dtype>_hd<D> (kernels/decode.cu): split-KV decode. One CTA of
// SA_DECODE_THREADS per (split, kv head x token group x row chunk, batch); grid = (splits,
// heads_kv * token_groups * row_chunks, batch), token_groups = 1 (dense, block-sparse: the
// CTA packs every new token of the GQA group) or q_len (top-k: one token per CTA, since
// each token has its own keys). Each CTA writes its split's normalised output and LSE to the
// partials; merge_states combines them. Tensors as in AttnTensorParams, with:
//   q: [batch, q_len, heads_q, D], or packed [total_q, heads_q, D] with cu_seqlens_q;
//   k, v: caches [batch, seq_k, heads_kv, D] (batch stride) or paged (block_table), with
//   seqlens_k [batch] keys per sequence (required); out and lse unused.
// The new tokens are the last q_len of each sequence's keys (causal: token t sees keys up to
// seqlens_k - q_len + t). Index values and lengths are untrusted: the kernel skips a key
// slot that is out of range and a sequence whose lengths are out of bounds.
typedef struct DecodeParams {
    AttnTensorParams tensors;
    uint64_t partial_out;    // float [splits, rows, heads_q, head_dim]; row = b * q_len + t (packed: the packed row)
    uint64_t partial_lse;    // float [splits, heads_q, rows], natural log (-inf: the split saw no key)
    uint64_t block_count;    // block-sparse: const int32_t [batch, heads_kv]
    uint64_t block_index;    // block-sparse: const int32_t [batch, heads_kv, max_blocks], block ids ascending
    uint64_t indices;        // top-k: const int32_t [rows, heads_kv, topk] (keys; -1 = none)
    int32_t batch;
    int32_t q_len;           // new tokens per sequence (packed: the most), 1 .. SA_DECODE_MAX_Q_LEN
    int32_t seq_k;           // key capacity per sequence: rows of a contiguous cache, max_pages * page_size when paged
    int32_t heads_q;
    int32_t heads_kv;
    int32_t splits;          // gridDim.x
    int32_t split_slots;     // key slots per split, a multiple of the kernel's key tile
    int32_t row_chunks;      // CTAs per (kv head, token group): ceil(group * tokens / SA_DECODE_ROWS)
    int32_t block_shift;     // block-sparse: log2(block size in tokens)
    int32_t max_blocks;      // block-sparse: capacity of a block_index row
    int32_t topk;            // top-k: slots per index row
    int32_t rows;            // partial rows: batch * q_len, or total_q when packed
    int32_t causal;          // 0 or 1: token t sees keys up to seqlens_k - q_len + t
    float softmax_scale;
    float scale_log2;
    int32_t pad0;            // keeps the size a multiple of 8 explicitly; must be 0
} DecodeParams;

// merge_states_<dtype> (kernels/merge.cu): combines `states` partial attention states of the
// same rows into one, exactly, in f32: lse = ln(sum_s exp(lse_s)), out = sum_s exp(lse_s -
// lse) out_s. A state with LSE -inf contributes nothing; a row whose every state is -inf
// gets output 0 and LSE -inf. Rows are (batch b, token t, head h), head_dim floats each; a
// warp per row, SA_MERGE_THREADS / 32 rows per block. Strides in elements.
typedef struct MergeParams {
    uint64_t partial_out;    // const float: state s of row (b, t, h) at s * po_state + b * po_batch + t * po_seq + h * po_head
    uint64_t partial_lse;    // const float: at s * pl_state + b * pl_batch + h * pl_head + t
    uint64_t out;            // T: row (b, t, h) at b * out_batch + t * out_seq + h * out_head
    uint64_t lse;            // float: at b * lse_batch + h * lse_head + t; 0 = not wanted
    int64_t po_state;
    int64_t po_batch;
    int64_t po_seq;
    int64_t po_head;
    int64_t pl_state;
    int64_t pl_batch;
    int64_t pl_head;
    int64_t out_batch;
    int64_t out_seq;
    int64_t out_head;
    int64_t lse_batch;
    int64_t lse_head;
    int32_t states;
    int32_t batch;
    int32_t seq;
    int32_t heads;
    int32_t head_dim;        // a multiple of 4 (16-byte rows of f32)
    int32_t pad0;            // keeps the size a multiple of 8 explicitly; must be 0
} MergeParams;

// merge_state_in_place_<dtype> (kernels/merge.cu): folds a second state into a first, in
// place (FlashInfer's merge_state_in_place, with natural-log LSEs): v and lse become the
// merge of (v, lse) and (v_other, lse_other), by the rule and with the non-finite cases of
// MergeParams, computed in f32 and rounded to T. Rows (b, t, h) of head_dim elements; a warp
// per row, SA_MERGE_THREADS / 32 rows per block. Strides in elements.
typedef struct MergeInPlaceParams {
    uint64_t v;               // T, read and written: row (b, t, h) at b * v_batch + t * v_seq + h * v_head
    uint64_t lse;             // float, read and written: at b * lse_batch + h * lse_head + t
    uint64_t v_other;         // const T: at b * v_other_batch + t * v_other_seq + h * v_other_head
    uint64_t lse_other;       // const float: at b * lse_other_batch + h * lse_other_head + t
    int64_t v_batch;
    int64_t v_seq;
    int64_t v_head;
    int64_t lse_batch;
    int64_t lse_head;
    int64_t v_other_batch;
    int64_t v_other_seq;
    int64_t v_other_head;
    int64_t lse_other_batch;
    int64_t lse_other_head;
    int32_t batch;
    int32_t seq;
    int32_t heads;
    int32_t head_dim;         // a multiple of 4 (8-byte rows of f16 / bf16, 16-byte of f32)
} MergeInPlaceParams;

// topk_select_<f32|bf16> (kernels/topk_select.cu): the indices of the k largest scores of
// every row of scores [batch, seq_q, heads, seq_k] (f32 or bf16, densely packed), written to indices [batch,
// seq_q, heads, k] (int32_t, densely packed) in ascending key order, then -1 padding. One
// CTA of SA_TOPK_SELECT_THREADS per row; grid = (rows, 1, 1), rows = batch * seq_q * heads.
// Order: a larger score first, NaN below -inf, ties to the lower key. With causal, row i
// considers only keys j <= i + seq_k - seq_q.
typedef struct TopkSelectParams {
    uint64_t scores;        // const float or bf16 [rows, seq_k]
    uint64_t indices;       // int32_t [rows, k]
    int32_t rows;           // batch * seq_q * heads = gridDim.x
    int32_t seq_q;
    int32_t heads;
    int32_t seq_k;
    int32_t k;              // 1 ..= seq_k
    int32_t causal;         // 0 or 1: bottom-right aligned
} TopkSelectParams;

// vs_estimate_* (kernels/vs_estimate.cu): MInference's vertical-slash estimation on the
// device, in four launches on one stream, each reading what the previous wrote to the
// caller's f32 workspace (src/plan/vs_estimate.rs lays it out):
//   vs_estimate_scores_<dtype>_hd<D>: scores [batch, units, rows, seq_k] = scale * q . k of
//       each probe row against every key of its sequence (mma.sync, 64 rows x 64 keys per CTA);
//   vs_estimate_row_stats: per probe row, the max and 1 / sum(exp(score - max)) over the
//       keys it sees (a warp per row);
//   vs_estimate_sums: per key column and per diagonal distance, the sum over probe rows of
//       the softmax probabilities, in row order (a thread per column);
//   vs_estimate_select: the top nnz_v columns / nnz_s distances per unit (forced first), ties
//       to the lower index, written ascending / descending to every query head of the unit.
// A unit is a query head (heads_per_unit 1) or a kv head's group of query heads
// (heads_per_unit = heads_q / heads_kv); its rows are heads_per_unit x last_q probe slots.
// Probe slot t of a sequence with lq queries and lk keys is query lq - min(last_q, lq) + t,
// which sees keys j < lk - min(last_q, lq) + t + 1 (bottom-right causal).
typedef struct VsEstimateParams {
    uint64_t q;                 // const T: row (b, i, h) at b * q_batch + i * q_seq + h * q_head
    uint64_t k;                 // const T: row (b, j, h) at b * k_batch + j * k_seq + h * k_head
    uint64_t cu_seqlens_q;      // int32_t [batch + 1] for a varlen batch (packed rows, batch strides 0); 0 = padded
    uint64_t cu_seqlens_k;      // int32_t [batch + 1] with cu_seqlens_q; 0 = padded
    uint64_t scores;            // float workspace [batch, units, rows, seq_k]
    uint64_t row_stats;         // float workspace [batch, units, rows, 2]: max, 1 / sum
    uint64_t vertical_scores;   // float workspace [batch, units, seq_k]
    uint64_t slash_scores;      // float workspace [batch, units, seq_k], by distance
    uint64_t vertical_indexes;  // int32_t out [batch, heads_q, nnz_v], ascending
    uint64_t slash_indexes;     // int32_t out [batch, heads_q, nnz_s], descending
    int64_t q_batch;
    int64_t q_seq;
    int64_t q_head;
    int64_t k_batch;
    int64_t k_seq;
    int64_t k_head;
    int32_t batch;
    int32_t seq_q;              // the longest sequence's query rows (varlen) or seq_q
    int32_t seq_k;              // the longest sequence's keys (varlen) or seq_k
    int32_t heads_q;
    int32_t heads_kv;
    int32_t head_dim;
    int32_t last_q;             // probe slots per head: min(config last_q, seq_q)
    int32_t heads_per_unit;     // 1, or heads_q / heads_kv
    int32_t units;              // heads_q / heads_per_unit
    int32_t rows;               // heads_per_unit * last_q
    int32_t nnz_v;              // 1 ..= seq_k
    int32_t nnz_s;              // 1 ..= seq_k
    int32_t forced_columns;     // columns 0 .. n rank first
    int32_t forced_diagonals;   // distances 0 .. n rank first
    int32_t total_q;            // varlen: packed query rows (0 when padded)
    int32_t total_k;            // varlen: packed key rows (0 when padded)
    float softmax_scale;
    int32_t pad0;               // keeps the size a multiple of 8 explicitly; must be 0
} VsEstimateParams;

// Threads per CTA of every vs_estimate_* kernel but the selection.
#define SA_VS_ESTIMATE_THREADS 128
// Threads per CTA of vs_estimate_select.
#define SA_VS_ESTIMATE_SELECT_THREADS 256
// Probe rows and keys per CTA of vs_estimate_scores (one mma tile of 4 warps).
#define SA_VS_ESTIMATE_TILE 64
// The query rows of a chunked index launch (topk_select_rows_*, indexer_scores_*): flat query
// rows r in [first_row, first_row + rows) of an index tensor of total_q rows, each resolved
// to its sequence b, its position i in it, the sequence's query count len_q and key count
// len_k (kernels/common/index_rows.cuh):
// - queries: cu_seqlens_q == 0: every sequence has seq_q rows (r = b * seq_q + i); otherwise
//   the packed rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1] (int32 [batch + 1] on the device);
// - keys: cu_seqlens_k != 0: packed keys cu_seqlens_k[b] .. cu_seqlens_k[b + 1] of total_k;
//   else seqlens_k != 0: seqlens_k[b] keys (int32 [batch], paged caches); else seq_k keys.
// seq_k is also the score row length, so a sequence with more keys, or device bounds that are
// not 0 <= start <= end <= total, or a row outside its sequence, has no keys (its index row is
// all -1). With causal, row i of a sequence sees keys j <= i + len_k - len_q (bottom-right).
typedef struct IndexRowsParams {
    uint64_t cu_seqlens_q;  // const int32_t [batch + 1], or 0
    uint64_t cu_seqlens_k;  // const int32_t [batch + 1], or 0
    uint64_t seqlens_k;     // const int32_t [batch], or 0 (only with cu_seqlens_k == 0)
    int32_t batch;
    int32_t seq_q;          // rows per sequence without cu_seqlens_q (else the longest, unused)
    int32_t seq_k;          // keys per sequence, or the most any sequence may have; score row length
    int32_t total_q;        // rows of the whole index tensor
    int32_t total_k;        // packed key rows (with cu_seqlens_k)
    int32_t first_row;      // this launch's first row
    int32_t rows;           // this launch's rows
    int32_t causal;         // 0 or 1
} IndexRowsParams;

// topk_select_rows_<f32|bf16> (kernels/topk_select.cu): the selection of topk_select_<dtype>
// for a chunk of query rows: scores [rows, heads * group, seq_k] (row r - first_row, densely
// packed; a row reads only its candidates), indices [total_q, heads, k] (int32_t; rows
// first_row .. first_row + rows written). Index head h ranks keys by the f32 sum of score
// heads h * group .. (h + 1) * group - 1, added in ascending order (group 1: the score
// itself): one index set per GQA group from per-query-head scores. One CTA of
// SA_TOPK_SELECT_THREADS per (row, head); grid = (rows * heads, 1, 1).
typedef struct TopkSelectRowsParams {
    uint64_t scores;        // const float or bf16 [rows, heads * group, seq_k]
    uint64_t indices;       // int32_t [total_q, heads, k]
    IndexRowsParams rows;
    int32_t heads;
    int32_t k;              // 1 ..= seq_k
    int32_t group;          // score heads per index head, >= 1
    int32_t pad0;           // keeps the size a multiple of 8 explicitly; must be 0
} TopkSelectRowsParams;

// Threads per CTA of indexer_scores_*: one key each.
#define SA_INDEXER_THREADS 128
// The most heads * head_dim elements of one query row's indexer heads (held in shared memory
// as f32).
#define SA_INDEXER_MAX_QROW 8192

// indexer_scores_<f16|bf16>_d<head_dim> (kernels/indexer.cu): DeepSeek's lightning-indexer
// scores for a chunk of query rows (IndexRowsParams), written to the f32 workspace scores
// [rows, groups, seq_k] (row r - first_row, densely packed):
//   score[r, g, s] = sum over h of w[r, g, h] * relu(sum over d of q[r, g, h, d] * k[s, g, d])
// in f32, h and d ascending, relu(x) = x > 0 ? x : 0 (so relu(NaN) = 0). Only a row's
// candidate keys (its causal limit) are written. q [total_q, groups, heads, head_dim], w
// [total_q, groups, heads] (float, or T with w_same_dtype), k [keys, groups, head_dim]: the
// sequence's keys start at b * seq_k (contiguous), cu_seqlens_k[b] (varlen), or come from
// pages (block_table != 0: key s of sequence b is token s & (page_size - 1) of page
// block_table[b * max_pages + (s >> page_shift)] of k [num_pages, page_size, groups,
// head_dim]; a key on an entry outside [0, num_pages) scores NaN). Grid = (rows * groups,
// ceil(seq_k / SA_INDEXER_THREADS), 1), SA_INDEXER_THREADS threads, one key per thread.
typedef struct IndexerParams {
    uint64_t q;             // const T
    uint64_t k;             // const T
    uint64_t w;             // const float or T
    uint64_t scores;        // float [rows, groups, seq_k]
    uint64_t block_table;   // const int32_t [batch, max_pages], or 0
    IndexRowsParams rows;
    int32_t groups;
    int32_t heads;          // heads * head_dim <= SA_INDEXER_MAX_QROW
    int32_t w_same_dtype;   // 0: w is float; 1: w is T
    int32_t max_pages;
    int32_t page_shift;     // log2(page_size)
    int32_t num_pages;
} IndexerParams;

// ---- Block selection on the device (kernels/block_select.cu) ----
// Threads per CTA of block_pool_<dtype> (one CTA per pooled block and output head) and of
// block_score / block_select_blocks (one CTA per row block of a selection head).
#define SA_BLOCK_POOL_THREADS 128
#define SA_BLOCK_SELECT_THREADS 256
// The widest pooled input (3 x head_dim 256: SeerAttention's max, min, mean of K) and the
// widest feature row block_pool writes (a gate's hidden size, or head_dim unprojected).
#define SA_BLOCK_POOL_MAX_IN 768
#define SA_BLOCK_POOL_MAX_OUT 256
// The most key blocks a selection row may have (seq_k up to 512K at SA_INDEX_BLOCK_N = 64):
// the sort keys of one row live in shared memory, 64 KiB of them at this size, within the
// 99 KiB an sm_86 / sm_89 block may opt in to.
#define SA_BLOCK_SELECT_MAX_KEY_BLOCKS 8192

// block_pool_<f16|bf16>: pools blocks of `block` rows of x (Q or K) into f32 feature rows
// out [batch, out_heads, blocks, out_dim]. Grid = (blocks, out_heads, batch).
typedef struct BlockPoolParams {
    uint64_t x;                 // const dtype, [batch, seq, heads, head_dim] or packed [total, heads, head_dim]
    uint64_t cu_seqlens;        // 0, or const int32_t [batch + 1]: x is packed
    uint64_t cu_seqlens_other;  // 0, or the other tensor's (K for Q) boundaries, for RoPE positions
    uint64_t weight;            // 0, or const dtype [out_heads, in_dim, out_dim] (a gate projection)
    uint64_t out;               // float [batch, out_heads, blocks, out_dim]
    int64_t batch_stride;       // elements; unused when packed
    int64_t seq_stride;
    int64_t head_stride;
    int32_t batch;
    int32_t seq;                // rows per sequence (the longest, when packed)
    int32_t total;              // packed rows (bound for cu_seqlens)
    int32_t seq_other;          // the other tensor's seq (longest)
    int32_t total_other;
    int32_t heads;              // heads of x
    int32_t out_heads;          // a multiple of heads: output head h reads x head h / (out_heads / heads)
    int32_t head_dim;
    int32_t blocks;             // ceil(seq / block) = gridDim.x
    int32_t block;              // rows per block: SA_INDEX_BLOCK_M (Q) or SA_INDEX_BLOCK_N (K)
    int32_t pool_max_min;       // 0: mean (in_dim = head_dim); 1: max, min, mean (in_dim = 3 * head_dim)
    int32_t out_dim;            // with a weight: its output size; without: in_dim
    int32_t rope;               // 0 or 1: rotate-half RoPE at the block's first position
    int32_t rope_from_end;      // 1 for Q: positions shifted by (own other length - own length)
    float rope_log2_theta;      // log2 of the RoPE base
    int32_t reserved;
} BlockPoolParams;

// block_score: scores [batch, sel_heads, row_blocks, key_blocks] (float) = scale * q . k of
// the feature rows, averaged over the q_heads / sel_heads query heads of a selection head;
// -inf outside the (causal) candidates. Grid = (row_blocks, sel_heads, batch); dynamic
// shared memory = (q_heads / sel_heads) * dim floats.
typedef struct BlockScoreParams {
    uint64_t q_features;        // const float [batch, q_heads, row_blocks, dim]
    uint64_t k_features;        // const float [batch, k_heads, key_blocks, dim]
    uint64_t scores;            // float [batch, sel_heads, row_blocks, key_blocks]
    uint64_t cu_seqlens_q;      // 0, or const int32_t [batch + 1]
    uint64_t cu_seqlens_k;      // 0, or const int32_t [batch + 1]
    int32_t batch;
    int32_t seq_q;              // longest
    int32_t seq_k;
    int32_t total_q;
    int32_t total_k;
    int32_t q_heads;            // query feature heads (heads_q)
    int32_t k_heads;            // key feature heads, dividing q_heads
    int32_t sel_heads;          // dividing q_heads
    int32_t row_blocks;
    int32_t key_blocks;
    int32_t dim;
    int32_t causal;
    float scale;
    int32_t reserved;
} BlockScoreParams;

// block_select_blocks: one row of scores [batch, heads, row_blocks, key_blocks] per CTA to
// block_count [batch, heads, row_blocks] and block_index [..., max_blocks] (ids ascending,
// -1 padding). top_k > 0: the top_k best candidates (forced ones included, all forced ones
// kept); top_k == 0: the fewest, best first, whose weight reaches threshold * the row's
// total (weights: softmax of the candidates, or the scores themselves with mass_scores).
// Grid = (row_blocks, heads, batch); dynamic shared memory = sort_len * 8 + (sort_len / 32
// + 1) * 4 bytes.
typedef struct BlockSelectParams {
    uint64_t scores;            // const float [batch, heads, row_blocks, key_blocks]
    uint64_t cu_seqlens_q;      // 0, or const int32_t [batch + 1]
    uint64_t cu_seqlens_k;
    uint64_t block_count;       // int32_t [batch, heads, row_blocks]
    uint64_t block_index;       // int32_t [batch, heads, row_blocks, max_blocks]
    int32_t batch;
    int32_t heads;
    int32_t seq_q;              // longest
    int32_t seq_k;
    int32_t total_q;
    int32_t total_k;
    int32_t row_blocks;
    int32_t key_blocks;
    int32_t sort_len;           // power of two >= key_blocks
    int32_t max_blocks;
    int32_t top_k;              // 0: budget mode
    int32_t causal;
    int32_t force_sink;
    int32_t force_diagonal;
    int32_t mass_scores;        // 0: scores are logits (softmax weights); 1: they are masses
    float threshold;            // (0, 1], budget mode
} BlockSelectParams;

// xattn_score_<f16|bf16>: XAttention's block scores [batch, sel_heads, row_blocks,
// key_blocks] (float): per reshaped query row (stride rows of Q, reversed), the softmax of
// scale / stride * its dot products with the reshaped key columns (stride rows of K),
// summed over the block's rows and columns and averaged over the heads_q / sel_heads
// query heads; -inf outside the (causal) candidates. Grid = (row_blocks, sel_heads,
// batch); dynamic shared memory = stride * head_dim floats.
typedef struct XattnScoreParams {
    uint64_t q;                 // const dtype, [batch, seq_q, heads_q, head_dim] or packed
    uint64_t k;                 // const dtype, [batch, seq_k, heads_kv, head_dim] or packed
    uint64_t scores;            // float [batch, sel_heads, row_blocks, key_blocks]
    uint64_t cu_seqlens_q;      // 0, or const int32_t [batch + 1]
    uint64_t cu_seqlens_k;
    int64_t q_batch_stride;
    int64_t q_seq_stride;
    int64_t q_head_stride;
    int64_t k_batch_stride;
    int64_t k_seq_stride;
    int64_t k_head_stride;
    int32_t batch;
    int32_t seq_q;              // longest
    int32_t seq_k;
    int32_t total_q;
    int32_t total_k;
    int32_t heads_q;
    int32_t heads_kv;
    int32_t sel_heads;
    int32_t head_dim;
    int32_t row_blocks;
    int32_t key_blocks;
    int32_t stride;             // divides SA_INDEX_BLOCK_M and SA_INDEX_BLOCK_N
    int32_t causal;
    float scale;                // the softmax scale; logits are scale / stride * dot
} XattnScoreParams;
