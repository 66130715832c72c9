//! Top-k token attention (`kernels/topk_attention.cu`): names, launch sizes and validation.

use super::args::{AttnBuffers, DeviceBuffer};
use super::kernels::SUPPORTED_HEAD_DIMS;
use super::validate::{check_dense, check_index, elems, to_i32};
use crate::error::{Error, Result};
use crate::params::TopkParams;
use crate::shape::{AttnOptions, AttnShape, DType};

/// Query heads of one GQA group that one warp packs as the mma's 16 rows.
pub const TOPK_HEADS_PER_WARP: usize = 16;

/// Threads per CTA of the top-k kernels: one warp.
pub const TOPK_THREADS: u32 = 32;

/// Index slots (gathered keys) per shared-memory tile.
const TOPK_TILE_KEYS: usize = 32;

/// Dynamic shared memory: K and V tiles of 32 gathered rows, two stages, plus the 16-row
/// Q tile. 18 KiB at head_dim 64, 36 KiB at 128: under the 48 KiB default. Saturates at
/// `u32::MAX` for a head_dim no kernel has.
pub fn topk_shared_mem_bytes(head_dim: usize) -> u32 {
    u32::try_from(((4 * TOPK_TILE_KEYS + TOPK_HEADS_PER_WARP) * 2).saturating_mul(head_dim)).unwrap_or(u32::MAX)
}

/// The `extern "C"` name of the top-k instantiation for `dtype` and `head_dim`.
pub fn topk_kernel_name(dtype: DType, head_dim: usize) -> Result<&'static str> {
    match (dtype, head_dim) {
        (DType::F16, 64) => Ok("topk_attn_fwd_f16_hd64"),
        (DType::F16, 128) => Ok("topk_attn_fwd_f16_hd128"),
        (DType::BF16, 64) => Ok("topk_attn_fwd_bf16_hd64"),
        (DType::BF16, 128) => Ok("topk_attn_fwd_bf16_hd128"),
        _ => Err(Error::UnsupportedHeadDim { head_dim, supported: SUPPORTED_HEAD_DIMS }),
    }
}

/// Validates a top-k launch. `dims` is `[batch, seq_q, heads_kv, k]` of the index tensor
/// (as [`crate::pattern::TopkTokens::dims`] gives it); its values live on the device and
/// are not read (the kernel skips -1, out-of-range and causally hidden entries).
pub fn topk_params(shape: &AttnShape, opts: &AttnOptions, bufs: &AttnBuffers, indices: DeviceBuffer, dims: [usize; 4]) -> Result<TopkParams> {
    let dense = check_dense(shape, opts, bufs)?;
    let [batch, seq_q, heads_kv, k] = dims;
    for (name, ours, theirs) in [("batch", batch, shape.batch), ("seq_q", seq_q, shape.seq_q), ("heads_kv", heads_kv, shape.heads_kv)] {
        if ours != theirs {
            return Err(Error::DescriptorMismatch { reason: format!("top-k indices have {name} = {ours}, the problem has {name} = {theirs}") });
        }
    }
    if k == 0 {
        return Err(Error::ZeroDimension { dim: "k" });
    }
    // topk_attention.cu walks a row in tiles of TOPK_TILE_KEYS slots and computes the tile count
    // and slot numbers in i32: `topk + TOPK_TILE_KEYS - 1` must not overflow.
    let max_k = i32::MAX as usize - (TOPK_TILE_KEYS - 1);
    if k > max_k {
        return Err(Error::DimensionTooLarge { dim: "k", value: k, max: max_k });
    }
    let indices = check_index("indices", indices, elems("indices", &[batch, seq_q, heads_kv, k])?)?;
    let head_chunks = shape.group_size().div_ceil(TOPK_HEADS_PER_WARP);
    Ok(TopkParams {
        tensors: dense.tensors,
        indices,
        batch: shape.batch as i32,
        seq_q: shape.seq_q as i32,
        seq_k: shape.seq_k as i32,
        heads_q: shape.heads_q as i32,
        heads_kv: shape.heads_kv as i32,
        topk: to_i32("k", k)?,
        head_chunks: to_i32("head_chunks", head_chunks)?,
        causal: i32::from(opts.causal),
        softmax_scale: dense.scale,
        scale_log2: dense.scale * std::f32::consts::LOG2_E,
    })
}
