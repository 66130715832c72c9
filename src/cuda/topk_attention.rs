//! Top-k token attention on a GPU through cudarc (`topk_attn_fwd_*` in kernels/topk_attention.cu).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr};

use super::attention::{dense_buffers, index_buffer, AttnTensors};
use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::pattern::TopkTokens;
use crate::shape::{AttnDtype, AttnOptions, AttnShape};

/// A top-k index tensor in device memory: i32 `[batch, seq_q, heads_kv, k]`.
pub struct TopkDevice {
    /// The indices, -1 for an empty slot.
    pub indices: CudaSlice<i32>,
    /// `[batch, seq_q, heads_kv, k]`.
    pub dims: [usize; 4],
}

impl TopkDevice {
    /// Validates `desc` against `shape` on the host (out-of-range or repeated keys are an
    /// error here, where the kernel could only skip or double-count them) and uploads it.
    pub fn upload(stream: &Arc<CudaStream>, desc: &TopkTokens, shape: &AttnShape) -> Result<Self> {
        desc.validate(shape)?;
        let indices = stream.clone_htod(desc.indices()).map_err(|e| Error::Driver(e.to_string()))?;
        Ok(Self { indices, dims: desc.dims() })
    }
}

/// Enqueues top-k token attention on `stream`: query row `i` of head `h` attends the keys
/// listed for row `i` of kv head `h / (heads_q / heads_kv)`.
pub fn attention_topk<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    indices: &TopkDevice,
) -> Result<()> {
    // Every buffer's access guard, held until the launch below is enqueued.
    let (bufs, mut guards) = dense_buffers(stream, tensors, &[("indices", &indices.indices)])?;
    let index = index_buffer(&indices.indices, stream, &mut guards);
    let plan = crate::plan::topk_attention(shape, T::DTYPE, opts, &bufs, index, indices.dims)?;
    // SAFETY: the plan is `plan::topk_attention`'s own, unmodified (params, grid and
    // shared memory agree); every address in the plan comes from a live CudaSlice of this
    // stream's context (checked above) whose length `plan::topk_attention` checked against
    // what the kernel addresses; the guards keep cudarc's ordering for those buffers until
    // the launch is enqueued. The shared memory (at most 36 KiB) needs no opt-in.
    let launched = unsafe { super::launch(stream, &plan) };
    drop(guards);
    launched
}
