//! Launch planning: every kernel's launch is computed here once, as a [`LaunchPlan`], and
//! executed by either backend (cudarc on a GPU, `crate::sim` on the PTX simulator), so
//! the launch arithmetic and the validation are never duplicated per backend.
//!
//! One file per kernel family, named like its `kernels/<family>.cu`: each holds the
//! family's kernel names, thread count, shared memory, params builder and grid.
//! - [`prefill`]: dense, block-sparse, vertical-slash (and A-shape as block-sparse);
//! - [`topk_attention`]: per-query top-k token attention;
//! - [`vs_convert`]: vertical-slash index conversion;
//! - [`vs_estimate`]: vertical-slash estimation (MInference) from Q and K;
//! - [`topk_select`]: token top-k selection from a score tensor (whole, or a chunk of rows);
//! - [`indexer`]: DeepSeek's lightning-indexer scores and their top-k, chunk by chunk;
//! - [`minference`]: MInference end to end (estimate, convert, vertical-slash attention) as
//!   one [`pipeline::PipelinePlan`] over one caller [`workspace`];
//! - [`seer`]: block-sparse attention end to end (block scoring: pooled, SeerAttention's
//!   gate or XAttention; selection; attention), likewise;
//! - [`merge`]: merging partial attention states by their LSE (split-KV decode, context
//!   parallelism);
//! - [`decode`]: split-KV decode (with [`decode_splits`], its split heuristic, and
//!   [`decode_host`], the host checks of its index tensors).
//!
//! [`attention`] is the one entry point for every attention source.

pub mod block_select;
mod buffers;
pub mod decode;
pub mod decode_host;
pub mod decode_splits;
pub mod indexer;
pub mod merge;
pub mod minference;
pub mod prefill;
pub mod seer;
mod support;
mod tensors;
pub mod topk_attention;
pub mod topk_select;
pub mod vs_estimate;
pub mod paged;
pub mod pipeline;
pub mod varlen;
pub mod vs_convert;
pub mod workspace;

pub use buffers::{AttnBuffers, AttnLayouts, DeviceBuffer};
pub use paged::{attention_paged, PagedHost, PagedKvBuffers};
pub use support::{support, SupportQuery, Unsupported};
pub use varlen::{attention_varlen, VarlenBuffers};

use crate::error::{Error, Result};
use crate::params::HEAD_DIMS;
use crate::shape::{AttnOptions, AttnShape, DType};
use crate::source::Source;

/// Oldest GPU generation the kernels run on: mma.sync bf16 and cp.async need sm_80.
pub const MIN_COMPUTE_CAPABILITY: u32 = 80;

/// Dynamic shared memory a kernel may use without opting in (every sm_80+ GPU).
pub const DEFAULT_SHARED_MEM_BYTES: u32 = 48 * 1024;

/// Everything a backend needs to run one kernel: which function, the launch geometry, and
/// the kernel's single by-value parameter struct (see kernels/params.h) as raw bytes.
/// Only this module's planners build one, so a plan's params, grid and shared memory always
/// agree with each other and with the buffers they were validated against.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    module: &'static str,
    kernel: String,
    grid: [u32; 3],
    block: [u32; 3],
    shared_mem_bytes: u32,
    params: Vec<u8>,
}

/// Hardware limits every launch must respect (true of every sm_80+ GPU).
const MAX_GRID_YZ: u32 = 65_535;
const MAX_GRID_X: u32 = i32::MAX as u32;
const MAX_THREADS_PER_BLOCK: u32 = 1024;

impl LaunchPlan {
    /// Builds a plan, checking the grid against the hardware limits so that an oversized
    /// problem is an error here instead of a launch failure on the device.
    fn new<P: bytemuck::Pod>(
        module: &'static str,
        kernel: String,
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

    /// The module: the `kernels/<module>.cu` file stem.
    pub fn module(&self) -> &'static str {
        self.module
    }
    /// The `extern "C"` kernel name inside the module.
    pub fn kernel(&self) -> &str {
        &self.kernel
    }
    /// Blocks per grid dimension.
    pub fn grid(&self) -> [u32; 3] {
        self.grid
    }
    /// Threads per block dimension.
    pub fn block(&self) -> [u32; 3] {
        self.block
    }
    /// Dynamic shared memory in bytes; above [`DEFAULT_SHARED_MEM_BYTES`] the launch path
    /// opts the kernel in first.
    pub fn shared_mem_bytes(&self) -> u32 {
        self.shared_mem_bytes
    }
    /// The parameter struct, byte for byte as the kernel declares it.
    pub fn params(&self) -> &[u8] {
        &self.params
    }
}

/// The launch of attention for any source: top-k token attention for [`Source::TopK`], the
/// prefill kernel of the source's pattern otherwise. Everything is validated first: the
/// shape, head_dim, options, every buffer's size, layout and alignment, and the index
/// tensors' sizes against the problem (their values live on the device and are not read;
/// the kernels skip bad entries).
pub fn attention(
    shape: &AttnShape,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    source: &Source<DeviceBuffer>,
) -> Result<LaunchPlan> {
    match source {
        Source::TopK(index) => topk_attention::plan(shape, dtype, opts, bufs, index),
        _ => prefill::plan(shape, dtype, opts, bufs, source),
    }
}

/// Whether the attention kernels exist for this dtype and head_dim on a GPU of compute
/// capability `compute_capability` (major * 10 + minor), in this build: false too when the
/// crate was built without a CUDA compiler. Engines call it to decide whether to fall back;
/// [`support`] answers for the score options too and says why on "no".
pub fn supports(dtype: DType, head_dim: usize, compute_capability: u32) -> bool {
    support(&SupportQuery::new(dtype, head_dim, compute_capability)).is_ok()
}

/// `<family>_<dtype>_hd<head_dim>`, the name every kernel family gives its instantiations
/// (kernels/params.h instantiates each pair of SA_FOR_EACH_DTYPE x SA_FOR_EACH_HEAD_DIM).
fn instantiation(family: &str, dtype: DType, head_dim: usize) -> Result<String> {
    if !HEAD_DIMS.contains(&head_dim) {
        return Err(Error::UnsupportedHeadDim { head_dim, supported: HEAD_DIMS });
    }
    Ok(format!("{family}_{}_hd{head_dim}", dtype.name()))
}
