//! Top-k token attention (`kernels/topk_attention.cu`): names, launch sizes and validation.
//! One warp per (query row, kv head, chunk of [`TOPK_HEADS_PER_WARP`] query heads of its
//! group), so grid = (seq_q, heads_kv * chunks, batch).

use super::buffers::{AttnBuffers, DeviceBuffer};
use super::tensors::{check_dense, with_opt, DenseArgs};
use super::{instantiation, LaunchPlan};
use crate::checked::{product, to_i32, to_u32};
use crate::error::{Error, Result};
use crate::params::{TopkParams, TOPK_HEADS_PER_WARP, TOPK_THREADS, TOPK_TILE_KEYS};
use crate::shape::{AttnOptions, AttnShape, DType};
use crate::source::TopkIndex;

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "topk_attention";

/// Dynamic shared memory: K and V tiles of [`TOPK_TILE_KEYS`] gathered rows, two stages,
/// plus the [`TOPK_HEADS_PER_WARP`]-row Q tile. 18 KiB at head_dim 64, 36 KiB at 128.
/// Saturates at `u32::MAX` for a head_dim no kernel has.
pub fn shared_mem_bytes(head_dim: usize) -> u32 {
    u32::try_from(((4 * TOPK_TILE_KEYS + TOPK_HEADS_PER_WARP) * 2).saturating_mul(head_dim)).unwrap_or(u32::MAX)
}

/// The `extern "C"` name of the instantiation for `dtype` and `head_dim`.
pub fn kernel_name(dtype: DType, head_dim: usize) -> Result<String> {
    form_kernel_name(dtype, head_dim, "")
}

/// [`kernel_name`] of a launch form: `topk_attn_fwd<form>_<dtype>_hd<D>`, `form` being
/// `_varlen`, `_paged` or nothing.
fn form_kernel_name(dtype: DType, head_dim: usize, form: &str) -> Result<String> {
    instantiation(&format!("topk_attn_fwd{form}"), dtype, head_dim)
}

/// Plans a top-k launch after validating it.
pub(super) fn plan(
    shape: &AttnShape,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    index: &TopkIndex<DeviceBuffer>,
) -> Result<LaunchPlan> {
    let params = params(shape, dtype, opts, bufs, index)?;
    launch_plan(shape, dtype, &params, "")
}

/// Plans a varlen or paged top-k launch ([`crate::plan::attention_varlen`],
/// [`crate::plan::attention_paged`]): `shape` holds the longest sequences, `dense` the
/// tensors already checked, `form` the kernel's (`_varlen`, `_paged`), and the indices are
/// packed like q, `[total_q, heads_kv, k]`.
pub(super) fn plan_packed(shape: &AttnShape, dtype: DType, dense: DenseArgs, opts: &AttnOptions, index: &TopkIndex<DeviceBuffer>, total_q: usize, form: &str) -> Result<LaunchPlan> {
    let mut params = params_of(shape, dense, opts, index, (1, total_q))?;
    // Every sequence's view starts at its own first index row.
    params.indices_batch_stride = 0;
    launch_plan(shape, dtype, &params, form)
}

/// The launch of `params`: one warp per (query row, kv head, head chunk) of `shape`; the
/// kernel's name carries `form` (`_varlen` or nothing).
fn launch_plan(shape: &AttnShape, dtype: DType, params: &TopkParams, form: &str) -> Result<LaunchPlan> {
    let grid = [
        to_u32("seq_q", shape.seq_q())?,
        to_u32("heads_kv * head_chunks", product("heads_kv * head_chunks", &[shape.heads_kv(), params.head_chunks as usize])?)?,
        to_u32("batch", shape.batch())?,
    ];
    let kernel = form_kernel_name(dtype, shape.head_dim(), &with_opt(form, &params.tensors))?;
    LaunchPlan::new(MODULE, kernel, grid, [TOPK_THREADS, 1, 1], shared_mem_bytes(shape.head_dim()), params)
}

/// Validates a top-k launch (`dtype` bounds the softmax scale, [`crate::kernel_scale_range`]).
/// The index values live on the device and are not read (the kernel skips -1, out-of-range
/// and causally hidden entries).
pub fn params(shape: &AttnShape, dtype: DType, opts: &AttnOptions, bufs: &AttnBuffers, index: &TopkIndex<DeviceBuffer>) -> Result<TopkParams> {
    params_of(shape, check_dense(shape, dtype, opts, bufs)?, opts, index, (shape.batch(), shape.seq_q()))
}

/// The params of `shape` over the checked tensors; the index must have `rows` = (batch,
/// seq_q) rows per kv head.
fn params_of(shape: &AttnShape, dense: DenseArgs, opts: &AttnOptions, index: &TopkIndex<DeviceBuffer>, rows: (usize, usize)) -> Result<TopkParams> {
    let d = index.dims;
    for (name, ours, theirs) in [("batch", d.batch(), rows.0), ("seq_q", d.seq_q(), rows.1), ("heads_kv", d.heads_kv(), shape.heads_kv())] {
        if ours != theirs {
            return Err(Error::DescriptorMismatch { reason: format!("top-k indices have {name} = {ours}, the problem has {name} = {theirs}") });
        }
    }
    let k = d.k();
    if k == 0 {
        return Err(Error::ZeroDimension { dim: "k" });
    }
    // The kernel walks a row in tiles of TOPK_TILE_KEYS slots and computes the tile count
    // and slot numbers in i32: `topk + TOPK_TILE_KEYS - 1` must not overflow.
    let max_k = i32::MAX as usize - (TOPK_TILE_KEYS - 1);
    if k > max_k {
        return Err(Error::DimensionTooLarge { dim: "k", value: k, max: max_k });
    }
    let indices = index.indices.index_addr("indices", d.len())?;
    let head_chunks = shape.group_size().div_ceil(TOPK_HEADS_PER_WARP);
    Ok(TopkParams {
        tensors: dense.tensors,
        indices,
        indices_batch_stride: shape.seq_q() as i64,
        batch: shape.batch() as i32,
        seq_q: shape.seq_q() as i32,
        seq_k: shape.seq_k() as i32,
        heads_q: shape.heads_q() as i32,
        heads_kv: shape.heads_kv() as i32,
        topk: to_i32("k", k)?,
        head_chunks: to_i32("head_chunks", head_chunks)?,
        causal: i32::from(opts.causal),
        softmax_scale: dense.scale,
        scale_log2: dense.scale_log2,
    })
}
