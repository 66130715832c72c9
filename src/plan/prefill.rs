//! Prefill attention (`kernels/prefill.cu`): one main loop over key tiles, with the key-tile
//! source of the pattern (dense, block-sparse, vertical-slash; A-shape runs as
//! block-sparse). Every CTA has [`THREADS`] threads. Dense and block-sparse up to head_dim
//! [`PREFILL_PAIR_MAX_HEAD_DIM`]: one CTA per ([`PREFILL_ROW_BLOCKS`] row blocks of
//! [`PREFILL_TILE_M`] query rows, query head, batch), loading each K/V tile once for both
//! row blocks; vertical-slash, and every pattern at head_dim 256: one CTA per (row block,
//! query head, batch). See [`row_blocks_per_cta`].

use super::buffers::{AttnBuffers, DeviceBuffer};
use super::tensors::{check_dense, with_opt, DenseArgs};
use super::{instantiation, LaunchPlan};
use crate::checked::{to_i32, to_u32};
use crate::error::{Error, Result};
use crate::params::{AttnParams, PREFILL_PAIR_MAX_HEAD_DIM, PREFILL_ROW_BLOCKS, PREFILL_THREADS, PREFILL_TILE_M, PREFILL_TILE_N};
use crate::pattern::vertical_slash::require_causal;
use crate::shape::{AttnOptions, AttnShape, DType};
use crate::source::{row_blocks, Source};

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "prefill";

/// Threads per CTA of every prefill kernel: 4 warps, over the [`row_blocks_per_cta`] row
/// blocks of the CTA (32 rows of one row block a warp for dense and block-sparse up to
/// head_dim [`PREFILL_PAIR_MAX_HEAD_DIM`], 16 rows otherwise).
pub const THREADS: u32 = PREFILL_THREADS;

/// Row blocks one CTA of `source`'s kernel covers at `head_dim`: [`PREFILL_ROW_BLOCKS`] for
/// dense and block-sparse up to head_dim [`PREFILL_PAIR_MAX_HEAD_DIM`] (the CTA walks the
/// union of its row blocks' key tiles and loads each once), 1 above it (a warp's one m-tile
/// of accumulators takes 128 registers at head_dim 256), 1 for vertical-slash (its gathered
/// column tiles differ per row block) and top-k (not a prefill kernel). Mirrors the kernels'
/// `prefill_row_blocks` (`kernels/prefill/tiles.cuh`).
pub fn row_blocks_per_cta<B>(source: &Source<B>, head_dim: usize) -> usize {
    match source {
        Source::Dense | Source::BlockSparse(_) if head_dim <= PREFILL_PAIR_MAX_HEAD_DIM => PREFILL_ROW_BLOCKS,
        _ => 1,
    }
}

/// Threads per CTA of `source`'s kernel: [`THREADS`] for every pattern.
pub fn threads<B>(_source: &Source<B>) -> u32 {
    THREADS
}

/// Bytes per q/k/v element (f16 and bf16 alike).
const ELEM_BYTES: usize = 2;

/// Keys per K/V tile of `source`'s kernel at `head_dim` (the kernels' `dense_key_tile`,
/// `kernels/prefill/tiles.cuh`): the dense kernel takes FlashAttention-2's sm_80 choice,
/// 2 x [`PREFILL_TILE_N`] at head_dim 64 and [`PREFILL_TILE_N`] above; the sparse kernels
/// keep the index key block, [`PREFILL_TILE_N`]. (The `_opt` dense kernels take
/// [`PREFILL_TILE_N`] at every head_dim, within the shared memory sized here.)
pub fn key_tile<B>(source: &Source<B>, head_dim: usize) -> usize {
    match source {
        Source::Dense if head_dim <= 64 => 2 * PREFILL_TILE_N,
        _ => PREFILL_TILE_N,
    }
}

/// Dynamic shared memory of one CTA of `source`'s kernel at `head_dim`, 16-bit elements of
/// head_dim each: where Q stays in shared memory (dense and block-sparse; vertical-slash at
/// head_dim 256), a Q tile of [`row_blocks_per_cta`] x [`PREFILL_TILE_M`] rows, one K tile
/// and one V tile of [`key_tile`] rows; for vertical-slash up to head_dim
/// [`PREFILL_PAIR_MAX_HEAD_DIM`], two stages of K and V tiles of [`PREFILL_TILE_N`] rows (its
/// Q tile borrows stage 1 before the loop). At most 96 KiB, within the 99 KiB per block of
/// sm_86 / sm_89. Saturates at `u32::MAX` for a head_dim no kernel has.
pub fn shared_mem_bytes<B>(source: &Source<B>, head_dim: usize) -> u32 {
    let double_buffered = matches!(source, Source::VerticalSlash(_) | Source::TopK(_)) && head_dim <= PREFILL_PAIR_MAX_HEAD_DIM;
    let rows = if double_buffered {
        4 * PREFILL_TILE_N
    } else {
        row_blocks_per_cta(source, head_dim) * PREFILL_TILE_M + 2 * key_tile(source, head_dim)
    };
    u32::try_from((rows * ELEM_BYTES).saturating_mul(head_dim)).unwrap_or(u32::MAX)
}

/// The `extern "C"` name of the instantiation for `source`'s pattern, `dtype` and
/// `head_dim`: `attn_fwd_<pattern>_<dtype>_hd<D>`.
pub fn kernel_name<B>(source: &Source<B>, dtype: DType, head_dim: usize) -> Result<String> {
    form_kernel_name(source, dtype, head_dim, "")
}

/// [`kernel_name`] of a launch form: `attn_fwd_<pattern><form>_<dtype>_hd<D>`, `form` being
/// `_varlen`, `_paged` or nothing.
fn form_kernel_name<B>(source: &Source<B>, dtype: DType, head_dim: usize, form: &str) -> Result<String> {
    instantiation(&format!("attn_fwd_{}{form}", source.name()), dtype, head_dim)
}

/// Plans a prefill launch (grid = (ceil(row blocks / [`row_blocks_per_cta`]), heads_q,
/// batch)) after validating it.
pub(super) fn plan(
    shape: &AttnShape,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    source: &Source<DeviceBuffer>,
) -> Result<LaunchPlan> {
    let params = params(shape, dtype, opts, bufs, source)?;
    launch_plan(shape, dtype, source, &params, "")
}

/// Plans a varlen or paged prefill launch ([`crate::plan::attention_varlen`],
/// [`crate::plan::attention_paged`]): `shape` holds the longest sequences, `dense` the
/// tensors already checked, `form` the kernel's (`_varlen`, `_paged`).
pub(super) fn plan_form(shape: &AttnShape, dtype: DType, dense: DenseArgs, opts: &AttnOptions, source: &Source<DeviceBuffer>, form: &str) -> Result<LaunchPlan> {
    let params = params_of(shape, dense, opts, source)?;
    launch_plan(shape, dtype, source, &params, form)
}

/// The launch of `params` on `shape`'s grid, with the kernel of `source`'s pattern (its
/// name with `form` inserted after the pattern: `_varlen` or nothing).
fn launch_plan(shape: &AttnShape, dtype: DType, source: &Source<DeviceBuffer>, params: &AttnParams, form: &str) -> Result<LaunchPlan> {
    let ctas = (params.row_blocks as usize).div_ceil(row_blocks_per_cta(source, shape.head_dim()));
    let grid = [to_u32("row blocks", ctas)?, to_u32("heads_q", shape.heads_q())?, to_u32("batch", shape.batch())?];
    let kernel = form_kernel_name(source, dtype, shape.head_dim(), &with_opt(form, &params.tensors))?;
    LaunchPlan::new(MODULE, kernel, grid, [threads(source), 1, 1], shared_mem_bytes(source, shape.head_dim()), params)
}

/// Validates a launch and returns its params struct. The struct is the same for every dtype
/// and head_dim instantiation of the source's pattern; `dtype` bounds the softmax scale
/// ([`crate::kernel_scale_range`]).
pub fn params(shape: &AttnShape, dtype: DType, opts: &AttnOptions, bufs: &AttnBuffers, source: &Source<DeviceBuffer>) -> Result<AttnParams> {
    params_of(shape, check_dense(shape, dtype, opts, bufs)?, opts, source)
}

/// The params of `shape` (for varlen: the longest sequences) over the checked tensors.
fn params_of(shape: &AttnShape, dense: DenseArgs, opts: &AttnOptions, source: &Source<DeviceBuffer>) -> Result<AttnParams> {
    // A CTA's row block is one index row block, and its key tiles are index key blocks.
    const _: () = assert!(PREFILL_TILE_M == crate::params::INDEX_BLOCK_M && PREFILL_TILE_N == crate::params::INDEX_BLOCK_N);
    let mut p = AttnParams {
        tensors: dense.tensors,
        // AttnShape bounds every dimension by i32::MAX.
        batch: shape.batch() as i32,
        seq_q: shape.seq_q() as i32,
        seq_k: shape.seq_k() as i32,
        heads_q: shape.heads_q() as i32,
        heads_kv: shape.heads_kv() as i32,
        row_blocks: to_i32("row blocks", row_blocks(shape.seq_q()))?,
        causal: i32::from(opts.causal),
        softmax_scale: dense.scale,
        scale_log2: dense.scale_log2,
        ..AttnParams::default()
    };
    match source {
        Source::Dense => {}
        Source::BlockSparse(x) => {
            let d = x.dims;
            check_index_rows("block-sparse", shape, d.batch(), d.heads(), d.row_blocks())?;
            p.block_count = x.block_count.index_addr("block_count", d.count_len())?;
            p.block_index = x.block_index.index_addr("block_index", d.index_len())?;
            p.desc_heads = to_i32("heads", d.heads())?;
            p.max_blocks = to_i32("max_blocks", d.max_blocks())?;
        }
        Source::VerticalSlash(x) => {
            require_causal(opts.causal)?;
            let d = x.dims;
            check_index_rows("vertical-slash", shape, d.batch(), d.heads(), d.row_blocks())?;
            let lens = d.lens();
            p.block_count = x.block_count.index_addr("block_count", lens.rows)?;
            p.block_index = x.block_offset.index_addr("block_offset", lens.block_offset)?;
            p.column_count = x.column_count.index_addr("column_count", lens.rows)?;
            p.column_index = x.column_index.index_addr("column_index", lens.column_index)?;
            p.desc_heads = to_i32("heads", d.heads())?;
            p.max_blocks = to_i32("nnz_s", d.nnz_s())?;
            p.max_columns = to_i32("nnz_v", d.nnz_v())?;
        }
        Source::TopK(_) => {
            return Err(Error::InvalidParameter { name: "source", reason: "top-k indices run on the top-k attention kernel, not prefill".into() })
        }
    }
    Ok(p)
}

/// Batch, descriptor heads and row blocks of an index against the problem.
pub(crate) fn check_index_rows(kind: &str, shape: &AttnShape, batch: usize, heads: usize, rows: usize) -> Result<()> {
    let want_rows = row_blocks(shape.seq_q());
    let problem = if batch != shape.batch() {
        Some(format!("{kind} descriptor has batch {batch}, the problem has batch {}", shape.batch()))
    } else if heads != shape.heads_q() && heads != shape.heads_kv() {
        Some(format!("{kind} descriptor has {heads} heads; it must have heads_q ({}) or heads_kv ({})", shape.heads_q(), shape.heads_kv()))
    } else if rows != want_rows {
        let block = crate::params::INDEX_BLOCK_M;
        Some(format!("{kind} descriptor has {rows} row blocks; seq_q = {} needs ceil({}/{block}) = {want_rows}", shape.seq_q(), shape.seq_q()))
    } else {
        None
    };
    match problem {
        Some(reason) => Err(Error::DescriptorMismatch { reason }),
        None => Ok(()),
    }
}

