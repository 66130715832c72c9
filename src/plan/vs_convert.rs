//! Vertical-slash index conversion (`kernels/vs_convert.cu`, kernel
//! `vertical_slash_convert`): one thread per (batch, descriptor head, row block), in blocks of
//! [`THREADS`]. The rule it implements is documented in `crate::pattern::vs_convert`.

use super::buffers::DeviceBuffer;
use super::prefill::check_index_rows;
use super::LaunchPlan;
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
    let params = params(shape, vertical_indexes, slash_indexes, out)?;
    let blocks = out.dims.lens().rows.div_ceil(THREADS as usize);
    // An oversized count saturates and LaunchPlan::new refuses it as a grid error.
    let grid = [u32::try_from(blocks).unwrap_or(u32::MAX).max(1), 1, 1];
    LaunchPlan::new(MODULE, KERNEL.to_string(), grid, [THREADS, 1, 1], 0, &params)
}

/// Validates a conversion and returns its params struct.
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
