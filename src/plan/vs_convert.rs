//! Vertical-slash index conversion (`kernels/vs_convert.cu`, kernel
//! `vertical_slash_convert`): one thread per (batch, descriptor head, row block), in blocks of
//! [`THREADS`], for a padded batch ([`plan`]) or per sequence of a varlen or paged one
//! ([`plan_varlen`]). The rule it implements is documented in `crate::pattern::vs_convert`.

use super::buffers::DeviceBuffer;
use super::prefill::check_index_rows;
use super::{LaunchPlan, PagedKvBuffers, VarlenBuffers};
use crate::checked::to_i32;
use crate::error::Result;
use crate::params::{VsConvertParams, VS_CONVERT_THREADS};
use crate::shape::AttnShape;
use crate::source::VsIndex;

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "vs_convert";

/// The kernel's `extern "C"` name.
pub const KERNEL: &str = "vertical_slash_convert";

/// Threads per block (one per row block).
pub const THREADS: u32 = VS_CONVERT_THREADS;

/// Plans the conversion of `vertical_indexes [B, H, NNZ_V]` and `slash_indexes [B, H, NNZ_S]`
/// (sizes as `out.dims`) into `out`, after validating it: `out.dims` against the problem and
/// every buffer's length and alignment. Index values are not read (they may live on the
/// device); the kernel skips whatever is out of range or out of order.
pub fn plan(shape: &AttnShape, vertical_indexes: DeviceBuffer, slash_indexes: DeviceBuffer, out: &VsIndex<DeviceBuffer>) -> Result<LaunchPlan> {
    launch_plan(out, &params(shape, vertical_indexes, slash_indexes, out)?)
}

/// The per-sequence lengths of a varlen or paged batch, as its attention launch takes them:
/// the conversion reads the same device tensors.
#[derive(Debug, Clone, Copy)]
pub enum SeqLens<'a> {
    /// A varlen batch: `cu_seqlens_q` and `cu_seqlens_k`.
    Varlen(&'a VarlenBuffers<'a>),
    /// A paged batch: `cu_seqlens_q` and `seqlens_k` (the rest of the paging metadata is
    /// validated as the attention launch would, and not read).
    Paged(&'a PagedKvBuffers<'a>),
}

/// Plans the conversion for a varlen or paged batch, the device counterpart of
/// [`crate::pattern::vs_convert::convert_varlen`]: `shape` holds the batch and the longest
/// sequences, and each sequence's row blocks are converted on its own lengths (read on the
/// device, never on the host); row blocks past a sequence's end, and every row block of an
/// empty one, get no tiles and no columns. Validated as [`plan`], plus the length tensors'
/// sizes and, when the caller gives them, their host copies. A device length outside
/// `[0, longest]` gives that sequence empty rows.
pub fn plan_varlen(
    shape: &AttnShape,
    lens: SeqLens,
    vertical_indexes: DeviceBuffer,
    slash_indexes: DeviceBuffer,
    out: &VsIndex<DeviceBuffer>,
) -> Result<LaunchPlan> {
    let mut p = params(shape, vertical_indexes, slash_indexes, out)?;
    let entries = shape.batch() + 1;
    match lens {
        SeqLens::Varlen(v) => {
            super::varlen::check_host(shape, v)?;
            p.cu_seqlens_q = v.cu_seqlens_q.index_addr("cu_seqlens_q", entries)?;
            p.cu_seqlens_k = v.cu_seqlens_k.index_addr("cu_seqlens_k", entries)?;
        }
        SeqLens::Paged(paged) => {
            super::paged::check_metadata(shape, paged)?;
            p.cu_seqlens_q = paged.cu_seqlens_q.index_addr("cu_seqlens_q", entries)?;
            p.seqlens_k = paged.seqlens_k.index_addr("seqlens_k", shape.batch())?;
        }
    }
    launch_plan(out, &p)
}

/// The launch of `params`: one thread per row of `out`.
fn launch_plan(out: &VsIndex<DeviceBuffer>, params: &VsConvertParams) -> Result<LaunchPlan> {
    let blocks = out.dims.lens().rows.div_ceil(THREADS as usize);
    // An oversized count saturates and LaunchPlan::new refuses it as a grid error.
    let grid = [u32::try_from(blocks).unwrap_or(u32::MAX).max(1), 1, 1];
    LaunchPlan::new(MODULE, KERNEL.to_string(), grid, [THREADS, 1, 1], 0, params)
}

/// Validates a conversion and returns its params struct (for a padded batch: no length
/// tensors).
pub fn params(shape: &AttnShape, vertical_indexes: DeviceBuffer, slash_indexes: DeviceBuffer, out: &VsIndex<DeviceBuffer>) -> Result<VsConvertParams> {
    let d = out.dims;
    check_index_rows("vertical-slash", shape, d.batch(), d.heads(), d.row_blocks())?;
    let lens = d.lens();
    Ok(VsConvertParams {
        vertical_indexes: vertical_indexes.index_addr("vertical_indexes", lens.vertical)?,
        slash_indexes: slash_indexes.index_addr("slash_indexes", lens.slash)?,
        block_count: out.block_count.index_addr("block_count", lens.rows)?,
        block_offset: out.block_offset.index_addr("block_offset", lens.block_offset)?,
        column_count: out.column_count.index_addr("column_count", lens.rows)?,
        column_index: out.column_index.index_addr("column_index", lens.column_index)?,
        cu_seqlens_q: 0,
        cu_seqlens_k: 0,
        seqlens_k: 0,
        batch: to_i32("batch", d.batch())?,
        heads: to_i32("heads", d.heads())?,
        seq_q: to_i32("seq_q", shape.seq_q())?,
        seq_k: to_i32("seq_k", shape.seq_k())?,
        nnz_v: to_i32("nnz_v", d.nnz_v())?,
        nnz_s: to_i32("nnz_s", d.nnz_s())?,
        row_blocks: to_i32("row_blocks", d.row_blocks())?,
        pad0: 0,
    })
}
