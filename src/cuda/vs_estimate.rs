//! Vertical-slash estimation on a GPU through cudarc ([`vs_estimate`]): the four launches of
//! [`crate::plan::vs_estimate::plan`] on the caller's stream, into the caller's index
//! tensors and workspace. Nothing is allocated, synchronised or read back, so an engine can
//! follow it on the same stream with [`super::vs_convert`] and the vertical-slash attention.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::VarlenTensors;
use super::tensors::{read, write};
use crate::error::Result;
use crate::pattern::VsEstimateConfig;
use crate::plan::vs_estimate::VsEstimateBuffers;
use crate::shape::{AttnDtype, AttnShape, Bshd};

/// The inputs of one estimation on the device.
pub struct VsEstimateInputs<'a, T, B> {
    /// Queries: `[batch, seq_q, heads_q, head_dim]` under `q_layout`, or packed `[total_q,
    /// heads_q, head_dim]` with `varlen`.
    pub q: &'a dyn DevicePtr<T>,
    /// Keys: `[batch, seq_k, heads_kv, head_dim]` under `k_layout`, or packed `[total_k,
    /// heads_kv, head_dim]` with `varlen`.
    pub k: &'a dyn DevicePtr<T>,
    /// Strides of q.
    pub q_layout: Bshd,
    /// Strides of k.
    pub k_layout: Bshd,
    /// The boundaries of a varlen batch (`shape` then holds the longest sequences); `None`
    /// for a padded batch.
    pub varlen: Option<VarlenTensors<'a, B>>,
}

/// Enqueues the estimation of a vertical-slash descriptor from device-resident Q and K
/// (the rule of [`crate::pattern::vs_estimate::estimate_vertical_slash_indices`], per
/// sequence for varlen as
/// [`crate::pattern::estimate_varlen::estimate_vertical_slash_varlen`]): writes
/// `vertical_indexes [batch, heads_q, nnz_v]` (ascending) and `slash_indexes [batch,
/// heads_q, nnz_s]` (descending), `nnz = min(size, seq_k)` as
/// [`crate::plan::vs_estimate::VsEstimateDims`] gives them, the format
/// [`super::vs_convert`] takes. `workspace` is f32 scratch (16-byte aligned, as every allocation is) of at least
/// [`crate::plan::vs_estimate::workspace_len`] elements. Everything is validated first
/// ([`crate::plan::vs_estimate::plan`]).
#[allow(clippy::too_many_arguments)]
pub fn vs_estimate<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>, W: DevicePtrMut<f32>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    config: &VsEstimateConfig,
    softmax_scale: f32,
    inputs: VsEstimateInputs<'_, T, B>,
    workspace: &mut W,
    vertical_indexes: &mut O,
    slash_indexes: &mut O,
) -> Result<()> {
    let mut guards = Vec::new();
    let q = read(stream, "q", inputs.q, &mut guards)?;
    let k = read(stream, "k", inputs.k, &mut guards)?;
    let varlen = inputs.varlen.as_ref().map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let bufs = VsEstimateBuffers {
        q,
        k,
        q_layout: inputs.q_layout,
        k_layout: inputs.k_layout,
        varlen: varlen.as_ref(),
        workspace: write(stream, "workspace", workspace, &mut guards)?,
        vertical_indexes: write(stream, "vertical_indexes", vertical_indexes, &mut guards)?,
        slash_indexes: write(stream, "slash_indexes", slash_indexes, &mut guards)?,
    };
    let plan = crate::plan::vs_estimate::plan(shape, T::DTYPE, config, softmax_scale, &bufs)?;
    let mut launched = Ok(());
    for launch in plan.launches() {
        // SAFETY: every address in the plan comes from a live buffer of this stream's context
        // (checked as it was read) whose length the planner checked against what the kernels
        // address; the launches are ordered on the one stream, and the guards keep cudarc's
        // event ordering for the buffers until all four are enqueued.
        launched = launched.and_then(|()| unsafe { super::launch::launch(stream.cu_stream(), launch) });
    }
    drop(guards);
    launched
}
