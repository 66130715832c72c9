//! A launch computed once and executed by either backend (cudarc on a GPU, or the PTX
//! simulator on the CPU), so the launch arithmetic is never duplicated per backend.

use crate::error::{Error, Result};
use crate::params::{VsConvertParams, VS_CONVERT_THREADS};

/// Everything a backend needs to run one kernel: which function, the launch geometry, and
/// the kernel's single by-value parameter struct (see kernels/params.h) as raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    /// Module (the `kernels/<module>.cu` file stem).
    pub module: &'static str,
    /// `extern "C"` kernel name inside the module.
    pub kernel: &'static str,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Dynamic shared memory in bytes.
    pub shared_mem_bytes: u32,
    /// The parameter struct, byte for byte as the kernel declares it.
    pub params: Vec<u8>,
}

/// Hardware limits every launch must respect (true of every sm_80+ GPU).
const MAX_GRID_YZ: u32 = 65_535;
const MAX_GRID_X: u32 = i32::MAX as u32;
const MAX_THREADS_PER_BLOCK: u32 = 1024;

impl LaunchPlan {
    /// Builds a plan, checking the grid against the hardware limits so that an oversized
    /// problem is an error here instead of a launch failure on the device.
    pub fn new<P: bytemuck::Pod>(
        module: &'static str,
        kernel: &'static str,
        grid: [u32; 3],
        block: [u32; 3],
        shared_mem_bytes: u32,
        params: &P,
    ) -> Result<Self> {
        let limits = [MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ];
        for (axis, (&g, &limit)) in grid.iter().zip(&limits).enumerate() {
            if g == 0 || g > limit {
                return Err(Error::InvalidParameter {
                    name: "grid",
                    reason: format!("{kernel}: grid dimension {axis} is {g}, must be in 1..={limit} (problem too large for one launch)"),
                });
            }
        }
        let threads: u64 = block.iter().map(|&b| b as u64).product();
        if threads == 0 || threads > MAX_THREADS_PER_BLOCK as u64 {
            return Err(Error::InvalidParameter {
                name: "block",
                reason: format!("{kernel}: {threads} threads per block, must be in 1..={MAX_THREADS_PER_BLOCK}"),
            });
        }
        Ok(Self { module, kernel, grid, block, shared_mem_bytes, params: bytemuck::bytes_of(params).to_vec() })
    }
}

/// The launch of `vertical_slash_convert` (kernels/vs_convert.cu): one thread per
/// (batch, head, row block), in blocks of [`VS_CONVERT_THREADS`].
pub fn vs_convert(params: &VsConvertParams) -> Result<LaunchPlan> {
    let blocks = params.grid_blocks();
    let grid_x = u32::try_from(blocks).map_err(|_| Error::InvalidParameter {
        name: "grid",
        reason: format!("vertical_slash_convert needs {blocks} blocks, more than one launch can have"),
    })?;
    LaunchPlan::new("vs_convert", "vertical_slash_convert", [grid_x.max(1), 1, 1], [VS_CONVERT_THREADS, 1, 1], 0, params)
}

/// The launch of the prefill attention kernel for `source`'s pattern, `dtype` and the
/// shape's head_dim: one CTA of [`crate::attention::THREADS`] threads per (row block of
/// 64 query rows, query head, batch), so grid = (ceil(seq_q / 64), heads_q, batch).
/// Everything is validated first ([`crate::attention::attn_params`]).
pub fn attention(
    shape: &crate::shape::AttnShape,
    dtype: crate::shape::DType,
    opts: &crate::shape::AttnOptions,
    bufs: &crate::attention::AttnBuffers,
    source: &crate::attention::SourceBuffers,
) -> Result<LaunchPlan> {
    use crate::attention::{attn_params, kernel_name, shared_mem_bytes, THREADS};
    let params = attn_params(shape, opts, bufs, source)?;
    let kernel = kernel_name(source.pattern(), dtype, shape.head_dim)?;
    let grid_dim = |dim: &'static str, value: usize| {
        u32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: u32::MAX as usize })
    };
    let grid = [grid_dim("row blocks", params.row_blocks as usize)?, grid_dim("heads_q", shape.heads_q)?, grid_dim("batch", shape.batch)?];
    LaunchPlan::new("prefill", kernel, grid, [THREADS, 1, 1], shared_mem_bytes(shape.head_dim), &params)
}

/// The launch of top-k token attention (kernels/topk_attention.cu): one warp per (query row, kv
/// head, chunk of 16 query heads of its group), so grid = (seq_q, heads_kv * chunks,
/// batch). `dims` is the index tensor's `[batch, seq_q, heads_kv, k]`. Validated first
/// ([`crate::attention::topk_params`]).
pub fn topk_attention(
    shape: &crate::shape::AttnShape,
    dtype: crate::shape::DType,
    opts: &crate::shape::AttnOptions,
    bufs: &crate::attention::AttnBuffers,
    indices: crate::attention::DeviceBuffer,
    dims: [usize; 4],
) -> Result<LaunchPlan> {
    use crate::attention::{topk_kernel_name, topk_params, topk_shared_mem_bytes, TOPK_THREADS};
    let params = topk_params(shape, opts, bufs, indices, dims)?;
    let kernel = topk_kernel_name(dtype, shape.head_dim)?;
    let grid_dim = |dim: &'static str, value: u64| {
        u32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value: value as usize, max: u32::MAX as usize })
    };
    let grid = [
        grid_dim("seq_q", params.seq_q as u64)?,
        grid_dim("heads_kv * head_chunks", params.heads_kv as u64 * params.head_chunks as u64)?,
        grid_dim("batch", params.batch as u64)?,
    ];
    LaunchPlan::new("topk_attention", kernel, grid, [TOPK_THREADS, 1, 1], topk_shared_mem_bytes(shape.head_dim), &params)
}
