//! MInference end to end on a GPU: [`minference_attention`] enqueues the estimation, the
//! conversion and the vertical-slash attention of [`crate::plan::minference::plan`] on one
//! stream, with every scratch tensor in the caller's workspace. Nothing is allocated,
//! synchronised or copied to the host.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::VarlenTensors;
use super::tensors::{attn_buffers, write, AttnTensors};
use crate::error::Result;
use crate::pattern::VsEstimateConfig;
use crate::plan::minference::MinferenceBuffers;
use crate::shape::{AttnDtype, AttnOptions, AttnShape};

/// Enqueues MInference's vertical-slash attention on `stream`: estimates each head's
/// pattern from Q and K by `config` (the last `config.last_q` query rows, scaled as `opts`
/// scales the attention), converts it, and runs the vertical-slash attention into
/// `tensors.out` (and the LSE when `opts.return_lse`). `opts.causal` must be set.
///
/// `workspace` is 4-byte scratch of at least
/// [`crate::plan::minference::workspace_len`]`(shape, config)` elements, 16-byte aligned
/// (any cudarc allocation is); it may hold anything on entry. Everything is validated before
/// the first launch is enqueued. Q and K are read under `tensors.layouts`.
pub fn minference_attention<T: AttnDtype + DeviceRepr, W: DevicePtrMut<f32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    config: &VsEstimateConfig,
    tensors: AttnTensors<'_, T>,
    workspace: &mut W,
) -> Result<()> {
    enqueue::<T, W, cudarc::driver::CudaSlice<i32>>(stream, shape, opts, config, tensors, None, workspace)
}

/// [`minference_attention`] for a varlen batch: `shape` holds the batch and the longest
/// sequences, `tensors` the packed q, k, v and out (as for [`super::attention_varlen`]), and
/// each sequence is estimated, converted and attended on its own lengths, read on the
/// device.
pub fn minference_attention_varlen<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>, W: DevicePtrMut<f32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    varlen: VarlenTensors<'_, B>,
    opts: &AttnOptions,
    config: &VsEstimateConfig,
    tensors: AttnTensors<'_, T>,
    workspace: &mut W,
) -> Result<()> {
    enqueue(stream, shape, opts, config, tensors, Some(varlen), workspace)
}

fn enqueue<T: AttnDtype + DeviceRepr, W: DevicePtrMut<f32>, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    config: &VsEstimateConfig,
    tensors: AttnTensors<'_, T>,
    varlen: Option<VarlenTensors<'_, B>>,
    workspace: &mut W,
) -> Result<()> {
    let mut guards = Vec::new();
    let attn = attn_buffers(stream, tensors, &mut guards)?;
    let lens = varlen.as_ref().map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let workspace = write(stream, "workspace", workspace, &mut guards)?;
    let bufs = MinferenceBuffers { attn, varlen: lens.as_ref(), workspace };
    let plan = crate::plan::minference::plan(shape, T::DTYPE, opts, config, &bufs)?;
    // SAFETY: the plan's addresses come from live buffers of this stream's context, read
    // above, and the planner checked every length the kernels address; the guards hold
    // cudarc's event ordering until every launch is enqueued.
    let launched = unsafe { super::launch::launch_pipeline(stream, &plan) };
    drop(guards);
    launched
}
