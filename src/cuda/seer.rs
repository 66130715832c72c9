//! Block-sparse attention with its index built on the GPU, end to end: [`seer_attention`]
//! enqueues the block scoring, the selection and the block-sparse attention of
//! [`crate::plan::seer::plan`] on one stream, with every scratch tensor in the caller's
//! workspace. Nothing is allocated, synchronised or copied to the host.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::VarlenTensors;
use super::tensors::{attn_buffers, read, write, AttnTensors};
use crate::error::Result;
use crate::plan::seer::{SeerBuffers, SeerConfig};
use crate::shape::{AttnDtype, AttnOptions, AttnShape};

/// A SeerAttention checkpoint's gate weights for one layer, in the checkpoint's shapes and
/// the dtype of Q and K, for [`crate::plan::block_select::Scoring::Gate`].
pub struct GateWeights<'a, T> {
    /// `wq [heads_q, head_dim, hidden]`; `None` for the single-linear gate.
    pub wq: Option<&'a dyn DevicePtr<T>>,
    /// `wk [k_heads, 3 * head_dim, hidden]` (K max-, min- and mean-pooled, in that order).
    pub wk: &'a dyn DevicePtr<T>,
}

/// Enqueues block-sparse attention whose blocks are chosen on the device by `config`
/// (pooled scores, SeerAttention's gate with `gate`'s weights, or XAttention), writing
/// `tensors.out` (and the LSE when `opts.return_lse`). `config.select.causal` must equal
/// `opts.causal`; `gate` must be given exactly for gate scoring.
///
/// `workspace` is 4-byte scratch of at least [`crate::plan::seer::workspace_len`] elements,
/// 16-byte aligned (any cudarc allocation is); it may hold anything on entry. Everything is
/// validated before the first launch is enqueued.
pub fn seer_attention<T: AttnDtype + DeviceRepr, W: DevicePtrMut<f32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    config: &SeerConfig,
    tensors: AttnTensors<'_, T>,
    gate: Option<GateWeights<'_, T>>,
    workspace: &mut W,
) -> Result<()> {
    enqueue::<T, W, cudarc::driver::CudaSlice<i32>>(stream, shape, opts, config, tensors, None, gate, workspace)
}

/// [`seer_attention`] for a varlen batch: `shape` holds the batch and the longest
/// sequences, `tensors` the packed q, k, v and out (as for [`super::attention_varlen`]);
/// each sequence is scored and selected on its own lengths, read on the device.
#[allow(clippy::too_many_arguments)]
pub fn seer_attention_varlen<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>, W: DevicePtrMut<f32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    varlen: VarlenTensors<'_, B>,
    opts: &AttnOptions,
    config: &SeerConfig,
    tensors: AttnTensors<'_, T>,
    gate: Option<GateWeights<'_, T>>,
    workspace: &mut W,
) -> Result<()> {
    enqueue(stream, shape, opts, config, tensors, Some(varlen), gate, workspace)
}

#[allow(clippy::too_many_arguments)]
fn enqueue<T: AttnDtype + DeviceRepr, W: DevicePtrMut<f32>, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    config: &SeerConfig,
    tensors: AttnTensors<'_, T>,
    varlen: Option<VarlenTensors<'_, B>>,
    gate: Option<GateWeights<'_, T>>,
    workspace: &mut W,
) -> Result<()> {
    let mut guards = Vec::new();
    let attn = attn_buffers(stream, tensors, &mut guards)?;
    let lens = varlen.as_ref().map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let (mut wq, mut wk) = (None, None);
    if let Some(g) = &gate {
        wq = g.wq.map(|w| read(stream, "gate.wq", w, &mut guards)).transpose()?;
        wk = Some(read(stream, "gate.wk", g.wk, &mut guards)?);
    }
    let workspace = write(stream, "workspace", workspace, &mut guards)?;
    let bufs = SeerBuffers { attn, varlen: lens.as_ref(), wq, wk, workspace };
    let plan = crate::plan::seer::plan(shape, T::DTYPE, opts, config, &bufs)?;
    // SAFETY: the plan's addresses come from live buffers of this stream's context, read
    // above, and the planner checked every length the kernels address; the guards hold
    // cudarc's event ordering until every launch is enqueued.
    let launched = unsafe { super::launch::launch_pipeline(stream, &plan) };
    drop(guards);
    launched
}
