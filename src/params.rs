//! Rust mirrors of `kernels/params.h`: the launch-parameter structs and the kernel
//! constants (tile sizes, thread counts, the dtype x head_dim instantiation list).
//!
//! Each struct is `#[repr(C)]` with the same fields in the same order, and plain old data
//! (`bytemuck::Pod`) so it can be passed to a kernel as raw bytes. Device pointers are
//! `u64` addresses: raw pointers are not `Pod`, and the kernels cast them back.
//! `tests/params_layout.rs` compiles a host program against `params.h` and checks size,
//! alignment and every field offset against these definitions, and every constant.

/// Parameters of `vertical_slash_convert` (kernels/vs_convert.cu), passed by value. Built by
/// [`crate::plan::vs_convert::params`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VsConvertParams {
    /// Device address of `vertical_indexes`, i32 `[batch, heads, nnz_v]`.
    pub vertical_indexes: u64,
    /// Device address of `slash_indexes`, i32 `[batch, heads, nnz_s]`.
    pub slash_indexes: u64,
    /// Device address of the output `block_count`, i32 `[batch, heads, row_blocks]`.
    pub block_count: u64,
    /// Device address of the output `block_offset`, i32 `[batch, heads, row_blocks, nnz_s]`.
    pub block_offset: u64,
    /// Device address of the output `column_count`, i32 `[batch, heads, row_blocks]`.
    pub column_count: u64,
    /// Device address of the output `column_index`, i32 `[batch, heads, row_blocks, nnz_v]`.
    pub column_index: u64,
    /// Device address of `cu_seqlens_q`, i32 `[batch + 1]`, for a varlen or paged batch; 0
    /// otherwise.
    pub cu_seqlens_q: u64,
    /// Device address of `cu_seqlens_k`, i32 `[batch + 1]`, for a varlen batch; 0 otherwise.
    pub cu_seqlens_k: u64,
    /// Device address of `seqlens_k`, i32 `[batch]`, for a paged batch; 0 otherwise.
    pub seqlens_k: u64,
    /// `B`.
    pub batch: i32,
    /// The descriptor's `H` (`heads_q` or `heads_kv`).
    pub heads: i32,
    /// Query length.
    pub seq_q: i32,
    /// Key length.
    pub seq_k: i32,
    /// Verticals per head.
    pub nnz_v: i32,
    /// Slashes per head.
    pub nnz_s: i32,
    /// `ceil(seq_q / BLOCK_M)`.
    pub row_blocks: i32,
    /// Explicit tail padding (C would insert it implicitly; `Pod` forbids implicit padding).
    pub pad0: i32,
}

/// The dense tensors of one attention launch: the first member of [`AttnParams`] and
/// [`TopkParams`] (`AttnTensorParams` in kernels/params.h). Filled by the same validation
/// for both kernels.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnTensorParams {
    /// Device address of q, `[batch, seq_q, heads_q, head_dim]`.
    pub q: u64,
    /// Device address of k, `[batch, seq_k, heads_kv, head_dim]`.
    pub k: u64,
    /// Device address of v, `[batch, seq_k, heads_kv, head_dim]`.
    pub v: u64,
    /// Device address of the output, `[batch, seq_q, heads_q, head_dim]`.
    pub out: u64,
    /// Device address of the f32 LSE `[batch, heads_q, seq_q]` (varlen: `[heads_q,
    /// total_q]`), or 0 when not wanted.
    pub lse: u64,
    /// Elements between consecutive batches of q.
    pub q_batch_stride: i64,
    /// Elements between consecutive sequence positions of q.
    pub q_seq_stride: i64,
    /// Elements between consecutive heads of q.
    pub q_head_stride: i64,
    /// Elements between consecutive batches of k.
    pub k_batch_stride: i64,
    /// Elements between consecutive sequence positions of k.
    pub k_seq_stride: i64,
    /// Elements between consecutive heads of k.
    pub k_head_stride: i64,
    /// Elements between consecutive batches of v.
    pub v_batch_stride: i64,
    /// Elements between consecutive sequence positions of v.
    pub v_seq_stride: i64,
    /// Elements between consecutive heads of v.
    pub v_head_stride: i64,
    /// Elements between consecutive batches of output.
    pub out_batch_stride: i64,
    /// Elements between consecutive sequence positions of output.
    pub out_seq_stride: i64,
    /// Elements between consecutive heads of output.
    pub out_head_stride: i64,
    /// f32 values between consecutive batches of the LSE.
    pub lse_batch_stride: i64,
    /// f32 values between consecutive heads of the LSE.
    pub lse_head_stride: i64,
    /// Varlen: device address of i32 `cu_seqlens_q [batch + 1]`; 0 for padded BSHD.
    pub cu_seqlens_q: u64,
    /// Varlen: device address of i32 `cu_seqlens_k [batch + 1]`; 0 for padded BSHD.
    pub cu_seqlens_k: u64,
    /// Varlen: packed rows of q; 0 otherwise.
    pub total_q: i32,
    /// Varlen: packed rows of k and v; 0 otherwise.
    pub total_k: i32,
    /// Paged K / V: device address of i32 `block_table [batch, max_pages]`; 0 if not paged.
    pub block_table: u64,
    /// Paged K / V: device address of i32 `seqlens_k [batch]`; 0 if not paged.
    pub seqlens_k: u64,
    /// Paged K / V: elements between pages of the k cache.
    pub k_page_stride: i64,
    /// Paged K / V: elements between pages of the v cache.
    pub v_page_stride: i64,
    /// Paged K / V: entries per block-table row.
    pub max_pages: i32,
    /// Paged K / V: pages in each cache.
    pub num_pages: i32,
    /// Paged K / V: log2 of the page size.
    pub page_shift: i32,
    /// Sliding window: keys more than this many below a row's bottom-right diagonal are
    /// masked; -1 = none. Read by the `_opt` kernels only.
    pub window_left: i32,
    /// Device address of f32 `sinks [heads_q]` (per-head softmax sink logits); 0 = none.
    pub sinks: u64,
    /// Softcap: `scale / cap`, 0 = no softcap (the family's softmax scale is then `cap`).
    pub softcap_in: f32,
    /// Explicit tail padding; must be 0.
    pub pad1: i32,
}

/// Parameters of the prefill attention kernels `attn_fwd_<pattern>_<dtype>_hd<D>`
/// (kernels/prefill.cu), passed by value. Built by [`crate::plan::prefill::params`],
/// which validates every size and address it writes here; the field docs in
/// kernels/params.h say which pattern reads which index tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    /// q, k, v, out, the LSE and their strides.
    pub tensors: AttnTensorParams,
    /// i32 `block_count [B, H, MB]` (block-sparse, vertical-slash); 0 for dense.
    pub block_count: u64,
    /// i32 `block_index [B, H, MB, max_blocks]` (block-sparse) or `block_offset`
    /// (vertical-slash); 0 for dense.
    pub block_index: u64,
    /// i32 `column_count [B, H, MB]` (vertical-slash only).
    pub column_count: u64,
    /// i32 `column_index [B, H, MB, max_columns]` (vertical-slash only).
    pub column_index: u64,
    /// Batch size.
    pub batch: i32,
    /// Query rows per sequence.
    pub seq_q: i32,
    /// Keys per sequence.
    pub seq_k: i32,
    /// Query heads.
    pub heads_q: i32,
    /// Key/value heads (divides heads_q).
    pub heads_kv: i32,
    /// `H` of the descriptor: heads_q, or heads_kv for one mask per GQA group (0 for dense).
    pub desc_heads: i32,
    /// `MB = ceil(seq_q / BLOCK_M)`.
    pub row_blocks: i32,
    /// Capacity of a `block_index` / `block_offset` row.
    pub max_blocks: i32,
    /// Capacity of a `column_index` row.
    pub max_columns: i32,
    /// 1 for the bottom-right causal mask, 0 otherwise.
    pub causal: i32,
    /// Multiplies q·k.
    pub softmax_scale: f32,
    /// `softmax_scale * log2(e)`: the kernels' softmax runs in exp2.
    pub scale_log2: f32,
}

/// Parameters of the top-k token attention kernels `topk_attn_fwd_<dtype>_hd<D>`
/// (kernels/topk_attention.cu), passed by value. Built by
/// [`crate::plan::topk_attention::params`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopkParams {
    /// q, k, v, out, the LSE and their strides.
    pub tensors: AttnTensorParams,
    /// Device address of the i32 `indices [batch, seq_q, heads_kv, topk]`.
    pub indices: u64,
    /// Index rows between batch entries: `seq_q`, or 0 for varlen (packed rows).
    pub indices_batch_stride: i64,
    /// Batch size.
    pub batch: i32,
    /// Query rows per sequence.
    pub seq_q: i32,
    /// Keys per sequence.
    pub seq_k: i32,
    /// Query heads.
    pub heads_q: i32,
    /// Key/value heads (divides heads_q).
    pub heads_kv: i32,
    /// Slots per index row.
    pub topk: i32,
    /// `ceil((heads_q / heads_kv) / 16)`: warps per (query row, kv head).
    pub head_chunks: i32,
    /// 1 for the bottom-right causal mask, 0 otherwise.
    pub causal: i32,
    /// Multiplies q·k.
    pub softmax_scale: f32,
    /// `softmax_scale * log2(e)`.
    pub scale_log2: f32,
}

/// Parameters of the split-KV decode kernels `decode_<source>_<dtype>_hd<D>`
/// (kernels/decode.cu), passed by value. Built by [`crate::plan::decode`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DecodeParams {
    /// q, k, v (out and lse unused) and their strides, the paging metadata, `seqlens_k`.
    pub tensors: AttnTensorParams,
    /// Device address of the f32 partial outputs `[splits, rows, heads_q, head_dim]`.
    pub partial_out: u64,
    /// Device address of the f32 partial LSEs `[splits, heads_q, rows]`.
    pub partial_lse: u64,
    /// Block-sparse: i32 `block_count [batch, heads_kv]`; 0 otherwise.
    pub block_count: u64,
    /// Block-sparse: i32 `block_index [batch, heads_kv, max_blocks]`; 0 otherwise.
    pub block_index: u64,
    /// Top-k: i32 `indices [rows, heads_kv, topk]`; 0 otherwise.
    pub indices: u64,
    /// Batch size.
    pub batch: i32,
    /// New tokens per sequence (packed: the most).
    pub q_len: i32,
    /// Key capacity per sequence.
    pub seq_k: i32,
    /// Query heads.
    pub heads_q: i32,
    /// Key/value heads.
    pub heads_kv: i32,
    /// KV splits (gridDim.x).
    pub splits: i32,
    /// Key slots per split.
    pub split_slots: i32,
    /// CTAs per (kv head, token group).
    pub row_chunks: i32,
    /// Block-sparse: log2 of the block size.
    pub block_shift: i32,
    /// Block-sparse: capacity of a block_index row.
    pub max_blocks: i32,
    /// Top-k: slots per index row.
    pub topk: i32,
    /// Rows of the partials: `batch * q_len`, or `total_q`.
    pub rows: i32,
    /// 1: causal within the new tokens.
    pub causal: i32,
    /// Multiplies q·k.
    pub softmax_scale: f32,
    /// `softmax_scale * log2(e)`.
    pub scale_log2: f32,
    /// Must be 0.
    pub pad0: i32,
}

/// Parameters of `merge_states_<dtype>` (kernels/merge.cu), passed by value. Built by
/// [`crate::plan::merge`]. Strides in elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MergeParams {
    /// f32 partial outputs: state `s` of row (b, t, h) at
    /// `s * po_state + b * po_batch + t * po_seq + h * po_head`.
    pub partial_out: u64,
    /// f32 partial LSEs at `s * pl_state + b * pl_batch + h * pl_head + t`.
    pub partial_lse: u64,
    /// The merged output, row (b, t, h) at `b * out_batch + t * out_seq + h * out_head`.
    pub out: u64,
    /// The merged f32 LSE at `b * lse_batch + h * lse_head + t`; 0 = not wanted.
    pub lse: u64,
    /// See `partial_out`.
    pub po_state: i64,
    /// See `partial_out`.
    pub po_batch: i64,
    /// See `partial_out`.
    pub po_seq: i64,
    /// See `partial_out`.
    pub po_head: i64,
    /// See `partial_lse`.
    pub pl_state: i64,
    /// See `partial_lse`.
    pub pl_batch: i64,
    /// See `partial_lse`.
    pub pl_head: i64,
    /// See `out`.
    pub out_batch: i64,
    /// See `out`.
    pub out_seq: i64,
    /// See `out`.
    pub out_head: i64,
    /// See `lse`.
    pub lse_batch: i64,
    /// See `lse`.
    pub lse_head: i64,
    /// Partial states per row.
    pub states: i32,
    /// Batch size.
    pub batch: i32,
    /// Tokens per batch entry.
    pub seq: i32,
    /// Heads.
    pub heads: i32,
    /// Elements per row (a multiple of 4).
    pub head_dim: i32,
    /// Must be 0.
    pub pad0: i32,
}

/// Parameters of `merge_state_in_place_<dtype>` (kernels/merge.cu), passed by value: `v` and
/// `lse` become the merge of themselves with `v_other` and `lse_other`. Built by
/// [`crate::plan::merge::plan_in_place`]. Strides in elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MergeInPlaceParams {
    /// The first state's output rows (the dtype), read and written: row (b, t, h) at
    /// `b * v_batch + t * v_seq + h * v_head`.
    pub v: u64,
    /// The first state's f32 LSE, read and written, at `b * lse_batch + h * lse_head + t`.
    pub lse: u64,
    /// The second state's output rows (the dtype), at
    /// `b * v_other_batch + t * v_other_seq + h * v_other_head`.
    pub v_other: u64,
    /// The second state's f32 LSE, at `b * lse_other_batch + h * lse_other_head + t`.
    pub lse_other: u64,
    /// See `v`.
    pub v_batch: i64,
    /// See `v`.
    pub v_seq: i64,
    /// See `v`.
    pub v_head: i64,
    /// See `lse`.
    pub lse_batch: i64,
    /// See `lse`.
    pub lse_head: i64,
    /// See `v_other`.
    pub v_other_batch: i64,
    /// See `v_other`.
    pub v_other_seq: i64,
    /// See `v_other`.
    pub v_other_head: i64,
    /// See `lse_other`.
    pub lse_other_batch: i64,
    /// See `lse_other`.
    pub lse_other_head: i64,
    /// Batch size.
    pub batch: i32,
    /// Tokens per batch entry.
    pub seq: i32,
    /// Heads.
    pub heads: i32,
    /// Elements per row (a multiple of 4).
    pub head_dim: i32,
}

// ---- Kernel constants: mirrors of kernels/params.h (tests/params_layout.rs checks them) ----

/// Query rows of one index row block, in every sparse format (`SA_INDEX_BLOCK_M`):
/// `row_blocks = ceil(seq_q / INDEX_BLOCK_M)`.
pub const INDEX_BLOCK_M: usize = 64;
/// Keys of one index key block, in every sparse format (`SA_INDEX_BLOCK_N`): block ids and
/// vertical-slash tile starts address ranges of this many keys.
pub const INDEX_BLOCK_N: usize = 64;
/// Query rows per row block of the prefill kernels (`SA_PREFILL_TILE_M`; equal to
/// [`INDEX_BLOCK_M`], which kernels/prefill.cu asserts).
pub const PREFILL_TILE_M: usize = 64;
/// Keys per K/V tile of the prefill kernels (`SA_PREFILL_TILE_N`; equal to [`INDEX_BLOCK_N`]).
pub const PREFILL_TILE_N: usize = 64;
/// Threads per CTA of every prefill kernel (`SA_PREFILL_THREADS`): 4 warps. A warp owns 32
/// query rows of one of the CTA's [`PREFILL_ROW_BLOCKS`] row blocks in the dense and
/// block-sparse kernels, 16 rows of its one row block in the vertical-slash kernel.
pub const PREFILL_THREADS: u32 = 128;
/// Row blocks per CTA of the dense and block-sparse prefill kernels up to head_dim
/// [`PREFILL_PAIR_MAX_HEAD_DIM`] (`SA_PREFILL_ROW_BLOCKS`); above it, and in the
/// vertical-slash kernel, a CTA has one.
pub const PREFILL_ROW_BLOCKS: usize = 2;
/// The largest head_dim at which the dense and block-sparse prefill kernels take
/// [`PREFILL_ROW_BLOCKS`] row blocks per CTA (`SA_PREFILL_PAIR_MAX_HEAD_DIM`): above it one
/// m-tile's accumulators per warp are all the registers allow.
pub const PREFILL_PAIR_MAX_HEAD_DIM: usize = 128;
/// Query heads of one GQA group that one top-k warp packs as the mma's 16 rows
/// (`SA_TOPK_HEADS_PER_WARP`).
pub const TOPK_HEADS_PER_WARP: usize = 16;
/// Index slots (gathered keys) per shared-memory tile of the top-k kernels (`SA_TOPK_TILE_KEYS`).
pub const TOPK_TILE_KEYS: usize = 32;
/// Threads per CTA of the top-k kernels: one warp (`SA_TOPK_THREADS`).
pub const TOPK_THREADS: u32 = 32;
/// Threads per block of `vertical_slash_convert`, one per row block (`SA_VS_CONVERT_THREADS`).
pub const VS_CONVERT_THREADS: u32 = 128;
/// Threads per CTA of the decode kernels: 4 warps, each one 16-row m-tile (`SA_DECODE_THREADS`).
pub const DECODE_THREADS: u32 = 128;
/// Query rows per decode CTA: a GQA group's heads x the new tokens (`SA_DECODE_ROWS`).
pub const DECODE_ROWS: usize = 64;
/// The most new tokens per sequence a decode launch takes (`SA_DECODE_MAX_Q_LEN`).
pub const DECODE_MAX_Q_LEN: usize = 16;
/// Threads per block of `merge_states`, a warp per output row (`SA_MERGE_THREADS`).
pub const MERGE_THREADS: u32 = 128;
/// Threads per CTA of `topk_select_<f32|bf16>`, one CTA per score row (`SA_TOPK_SELECT_THREADS`).
pub const TOPK_SELECT_THREADS: u32 = 256;
/// Head dimensions every kernel family is instantiated for (`SA_FOR_EACH_HEAD_DIM`).
pub const HEAD_DIMS: &[usize] = &[64, 96, 128, 256];
/// Dtypes every kernel family is instantiated for (`SA_FOR_EACH_DTYPE`, by [`crate::shape::DType::name`]).
pub const DTYPES: &[crate::shape::DType] = &[crate::shape::DType::F16, crate::shape::DType::BF16];

/// Parameters of `topk_select_<f32|bf16>` (kernels/topk_select.cu), passed by value. Built by
/// [`crate::plan::topk_select::params`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopkSelectParams {
    /// Device address of `scores`, f32 or bf16 `[batch, seq_q, heads, seq_k]`.
    pub scores: u64,
    /// Device address of the output `indices`, i32 `[batch, seq_q, heads, k]`.
    pub indices: u64,
    /// `batch * seq_q * heads`: one CTA each.
    pub rows: i32,
    /// Query rows per sequence.
    pub seq_q: i32,
    /// Heads (one score row per head).
    pub heads: i32,
    /// Keys per row.
    pub seq_k: i32,
    /// Slots per output row, `1..=seq_k`.
    pub k: i32,
    /// 0 or 1: row `i` considers only keys `j <= i + seq_k - seq_q`.
    pub causal: i32,
}

/// Threads per CTA of the `vs_estimate_*` kernels but the selection (`SA_VS_ESTIMATE_THREADS`).
pub const VS_ESTIMATE_THREADS: u32 = 128;
/// Threads per CTA of `vs_estimate_select`, one histogram bucket each (`SA_VS_ESTIMATE_SELECT_THREADS`).
pub const VS_ESTIMATE_SELECT_THREADS: u32 = 256;
/// Probe rows and keys per CTA of `vs_estimate_scores_*` (`SA_VS_ESTIMATE_TILE`).
pub const VS_ESTIMATE_TILE: usize = 64;

/// Parameters of the four `vs_estimate_*` kernels (kernels/vs_estimate.cu), passed by value,
/// the same struct for each. Built by [`crate::plan::vs_estimate::params`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VsEstimateParams {
    /// Device address of q (f16 / bf16), row `(b, i, h)` at `b * q_batch + i * q_seq + h * q_head`.
    pub q: u64,
    /// Device address of k, row `(b, j, h)` at `b * k_batch + j * k_seq + h * k_head`.
    pub k: u64,
    /// Device address of `cu_seqlens_q`, i32 `[batch + 1]`, for a varlen batch; 0 otherwise.
    pub cu_seqlens_q: u64,
    /// Device address of `cu_seqlens_k`, i32 `[batch + 1]`, for a varlen batch; 0 otherwise.
    pub cu_seqlens_k: u64,
    /// Workspace: f32 scores `[batch, units, rows, seq_k]`.
    pub scores: u64,
    /// Workspace: f32 `[batch, units, rows, 2]`, each probe row's max and 1 / sum.
    pub row_stats: u64,
    /// Workspace: f32 `[batch, units, seq_k]` column sums.
    pub vertical_scores: u64,
    /// Workspace: f32 `[batch, units, seq_k]` diagonal sums, by distance.
    pub slash_scores: u64,
    /// Output: i32 `[batch, heads_q, nnz_v]`, ascending key positions.
    pub vertical_indexes: u64,
    /// Output: i32 `[batch, heads_q, nnz_s]`, descending distances.
    pub slash_indexes: u64,
    /// q batch stride in elements (0 for packed rows).
    pub q_batch: i64,
    /// q row stride.
    pub q_seq: i64,
    /// q head stride.
    pub q_head: i64,
    /// k batch stride in elements (0 for packed rows).
    pub k_batch: i64,
    /// k row stride.
    pub k_seq: i64,
    /// k head stride.
    pub k_head: i64,
    /// Sequences.
    pub batch: i32,
    /// Query rows (the longest sequence's, for varlen).
    pub seq_q: i32,
    /// Keys (the longest sequence's, for varlen): the workspace rows' length.
    pub seq_k: i32,
    /// Query heads.
    pub heads_q: i32,
    /// Key heads.
    pub heads_kv: i32,
    /// Head dimension.
    pub head_dim: i32,
    /// Probe slots per head, `min(last_q, seq_q)`.
    pub last_q: i32,
    /// Query heads per estimation unit: 1, or `heads_q / heads_kv` per kv group.
    pub heads_per_unit: i32,
    /// `heads_q / heads_per_unit`.
    pub units: i32,
    /// Probe rows per unit, `heads_per_unit * last_q`.
    pub rows: i32,
    /// Verticals per head.
    pub nnz_v: i32,
    /// Slashes per head.
    pub nnz_s: i32,
    /// Columns `0..n` ranked first.
    pub forced_columns: i32,
    /// Distances `0..n` ranked first.
    pub forced_diagonals: i32,
    /// Packed query rows of a varlen batch; 0 otherwise.
    pub total_q: i32,
    /// Packed key rows of a varlen batch; 0 otherwise.
    pub total_k: i32,
    /// Multiplies every `q . k`.
    pub softmax_scale: f32,
    /// Explicit tail padding; must be 0.
    pub pad0: i32,
}
/// Threads per CTA of `indexer_scores_*`, one key each (`SA_INDEXER_THREADS`).
pub const INDEXER_THREADS: u32 = 128;
/// The most `heads * head_dim` of one query row's indexer heads (`SA_INDEXER_MAX_QROW`; held
/// in shared memory as f32).
pub const INDEXER_MAX_QROW: usize = 8192;

/// The query rows of a chunked index launch (`topk_select_rows_*`, `indexer_scores_*`): each
/// flat row resolves to its sequence, position and key count on the device
/// (kernels/common/index_rows.cuh). Built by [`crate::plan::indexer`] and
/// [`crate::plan::topk_select::plan_rows`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IndexRowsParams {
    /// i32 `[batch + 1]` packed query rows, or 0: every sequence has `seq_q` rows.
    pub cu_seqlens_q: u64,
    /// i32 `[batch + 1]` packed keys, or 0.
    pub cu_seqlens_k: u64,
    /// i32 `[batch]` keys per sequence (paged), or 0.
    pub seqlens_k: u64,
    /// Sequences.
    pub batch: i32,
    /// Rows per sequence without `cu_seqlens_q`.
    pub seq_q: i32,
    /// Keys per sequence, or the most any may have: the score row length.
    pub seq_k: i32,
    /// Rows of the whole index tensor.
    pub total_q: i32,
    /// Packed key rows (with `cu_seqlens_k`).
    pub total_k: i32,
    /// The launch's first row.
    pub first_row: i32,
    /// The launch's rows.
    pub rows: i32,
    /// 0 or 1: bottom-right causal limit per sequence.
    pub causal: i32,
}

/// Parameters of `topk_select_rows_<f32|bf16>` (kernels/topk_select.cu). Built by
/// [`crate::plan::topk_select::plan_rows`] and [`crate::plan::indexer`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TopkSelectRowsParams {
    /// f32 or bf16 `[rows, heads * group, seq_k]`: the chunk's scores.
    pub scores: u64,
    /// i32 `[total_q, heads, k]`.
    pub indices: u64,
    /// The chunk's rows.
    pub rows: IndexRowsParams,
    /// Heads (index sets) per row.
    pub heads: i32,
    /// Slots per index row.
    pub k: i32,
    /// Score heads per index head (their f32 sum ranks the keys), at least 1.
    pub group: i32,
    /// Must be 0 (explicit padding).
    pub pad0: i32,
}

/// Parameters of `indexer_scores_<f16|bf16>_d<head_dim>` (kernels/indexer.cu). Built by
/// [`crate::plan::indexer`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IndexerParams {
    /// Indexer queries `[total_q, groups, heads, head_dim]`.
    pub q: u64,
    /// Indexer keys `[keys, groups, head_dim]` (contiguous, packed, or pages).
    pub k: u64,
    /// Head weights `[total_q, groups, heads]`, f32 or the dtype of q.
    pub w: u64,
    /// f32 workspace `[rows, groups, seq_k]`.
    pub scores: u64,
    /// i32 `[batch, max_pages]`, or 0 (not paged).
    pub block_table: u64,
    /// The chunk's rows.
    pub rows: IndexRowsParams,
    /// Index groups per row.
    pub groups: i32,
    /// Indexer heads per group.
    pub heads: i32,
    /// 0: w is f32; 1: w has q's dtype.
    pub w_same_dtype: i32,
    /// Block-table entries per sequence.
    pub max_pages: i32,
    /// log2 of the page size.
    pub page_shift: i32,
    /// Pages in the key cache.
    pub num_pages: i32,
}

/// Threads per CTA of `block_pool_<dtype>` (`SA_BLOCK_POOL_THREADS`).
pub const BLOCK_POOL_THREADS: u32 = 128;
/// Threads per CTA of `block_score` and `block_select_blocks` (`SA_BLOCK_SELECT_THREADS`).
pub const BLOCK_SELECT_THREADS: u32 = 256;
/// The widest pooled input of `block_pool_<dtype>`: 3 x head_dim 256 (`SA_BLOCK_POOL_MAX_IN`).
pub const BLOCK_POOL_MAX_IN: usize = 768;
/// The widest feature row `block_pool_<dtype>` writes (`SA_BLOCK_POOL_MAX_OUT`).
pub const BLOCK_POOL_MAX_OUT: usize = 256;
/// The most key blocks one selection row may have (`SA_BLOCK_SELECT_MAX_KEY_BLOCKS`).
pub const BLOCK_SELECT_MAX_KEY_BLOCKS: usize = 8192;

/// Parameters of `block_pool_<f16|bf16>` (kernels/block_select.cu). Built by
/// [`crate::plan::block_select`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockPoolParams {
    /// Q or K, `[batch, seq, heads, head_dim]` or packed `[total, heads, head_dim]`.
    pub x: u64,
    /// 0, or i32 `[batch + 1]`: x is packed.
    pub cu_seqlens: u64,
    /// 0, or the other tensor's boundaries (K's for Q), for the RoPE positions.
    pub cu_seqlens_other: u64,
    /// 0, or a gate projection `[out_heads, in_dim, out_dim]` of x's dtype.
    pub weight: u64,
    /// f32 `[batch, out_heads, blocks, out_dim]`.
    pub out: u64,
    /// Element strides of x (batch unused when packed).
    pub batch_stride: i64,
    /// Elements from one row to the next.
    pub seq_stride: i64,
    /// Elements from one head to the next.
    pub head_stride: i64,
    /// Sequences.
    pub batch: i32,
    /// Rows per sequence (the longest when packed).
    pub seq: i32,
    /// Packed rows.
    pub total: i32,
    /// The other tensor's longest sequence.
    pub seq_other: i32,
    /// The other tensor's packed rows.
    pub total_other: i32,
    /// Heads of x.
    pub heads: i32,
    /// Output heads, a multiple of `heads`.
    pub out_heads: i32,
    /// Head dimension of x.
    pub head_dim: i32,
    /// Pooled blocks per sequence (grid x).
    pub blocks: i32,
    /// Rows per block.
    pub block: i32,
    /// 0: mean; 1: max, min, mean concatenated.
    pub pool_max_min: i32,
    /// Feature width written.
    pub out_dim: i32,
    /// 0 or 1: RoPE at the block's first position.
    pub rope: i32,
    /// 1 for Q: positions aligned to the end of the keys.
    pub rope_from_end: i32,
    /// log2 of the RoPE base.
    pub rope_log2_theta: f32,
    /// Padding (0).
    pub reserved: i32,
}

/// Parameters of `block_score` (kernels/block_select.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockScoreParams {
    /// f32 `[batch, q_heads, row_blocks, dim]`.
    pub q_features: u64,
    /// f32 `[batch, k_heads, key_blocks, dim]`.
    pub k_features: u64,
    /// f32 `[batch, sel_heads, row_blocks, key_blocks]`, written.
    pub scores: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_q: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_k: u64,
    /// Sequences.
    pub batch: i32,
    /// Longest query length.
    pub seq_q: i32,
    /// Longest key length.
    pub seq_k: i32,
    /// Packed query rows.
    pub total_q: i32,
    /// Packed key rows.
    pub total_k: i32,
    /// Query feature heads.
    pub q_heads: i32,
    /// Key feature heads.
    pub k_heads: i32,
    /// Selection heads.
    pub sel_heads: i32,
    /// Row blocks (grid x).
    pub row_blocks: i32,
    /// Key blocks.
    pub key_blocks: i32,
    /// Feature width.
    pub dim: i32,
    /// 0 or 1.
    pub causal: i32,
    /// Score scale.
    pub scale: f32,
    /// Padding (0).
    pub reserved: i32,
}

/// Parameters of `block_select_blocks` (kernels/block_select.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockSelectParams {
    /// f32 `[batch, heads, row_blocks, key_blocks]`.
    pub scores: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_q: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_k: u64,
    /// i32 `[batch, heads, row_blocks]`, written.
    pub block_count: u64,
    /// i32 `[batch, heads, row_blocks, max_blocks]`, written.
    pub block_index: u64,
    /// Sequences.
    pub batch: i32,
    /// Selection heads.
    pub heads: i32,
    /// Longest query length.
    pub seq_q: i32,
    /// Longest key length.
    pub seq_k: i32,
    /// Packed query rows.
    pub total_q: i32,
    /// Packed key rows.
    pub total_k: i32,
    /// Row blocks (grid x).
    pub row_blocks: i32,
    /// Key blocks per score row.
    pub key_blocks: i32,
    /// Power of two at least `key_blocks`.
    pub sort_len: i32,
    /// Slots per index row.
    pub max_blocks: i32,
    /// Blocks kept per row; 0 for budget mode.
    pub top_k: i32,
    /// 0 or 1.
    pub causal: i32,
    /// 0 or 1.
    pub force_sink: i32,
    /// 0 or 1.
    pub force_diagonal: i32,
    /// 0: scores are logits; 1: masses.
    pub mass_scores: i32,
    /// Budget mode's mass threshold, (0, 1].
    pub threshold: f32,
}

/// Parameters of `xattn_score_<f16|bf16>` (kernels/block_select.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct XattnScoreParams {
    /// Q, `[batch, seq_q, heads_q, head_dim]` or packed.
    pub q: u64,
    /// K, `[batch, seq_k, heads_kv, head_dim]` or packed.
    pub k: u64,
    /// f32 `[batch, sel_heads, row_blocks, key_blocks]`, written.
    pub scores: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_q: u64,
    /// 0, or i32 `[batch + 1]`.
    pub cu_seqlens_k: u64,
    /// Element strides of Q (batch unused when packed).
    pub q_batch_stride: i64,
    /// Q's row stride.
    pub q_seq_stride: i64,
    /// Q's head stride.
    pub q_head_stride: i64,
    /// Element strides of K.
    pub k_batch_stride: i64,
    /// K's row stride.
    pub k_seq_stride: i64,
    /// K's head stride.
    pub k_head_stride: i64,
    /// Sequences.
    pub batch: i32,
    /// Longest query length.
    pub seq_q: i32,
    /// Longest key length.
    pub seq_k: i32,
    /// Packed query rows.
    pub total_q: i32,
    /// Packed key rows.
    pub total_k: i32,
    /// Query heads.
    pub heads_q: i32,
    /// Key heads.
    pub heads_kv: i32,
    /// Selection heads.
    pub sel_heads: i32,
    /// Head dimension.
    pub head_dim: i32,
    /// Row blocks (grid x).
    pub row_blocks: i32,
    /// Key blocks.
    pub key_blocks: i32,
    /// Rows per reshaped row / column, dividing 64.
    pub stride: i32,
    /// 0 or 1.
    pub causal: i32,
    /// The softmax scale (logits are `scale / stride * dot`).
    pub scale: f32,
}
