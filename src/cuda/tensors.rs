//! The dense tensors of a GPU attention call, and how any cudarc buffer kind becomes the
//! address-and-length form ([`DeviceBuffer`]) the planner validates.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceSlice, SyncOnDrop};

use crate::error::{Error, Result};
use crate::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use crate::shape::AttnShape;

/// The dense tensors of one attention call. Each may be any cudarc buffer kind (a
/// `CudaSlice`, a `CudaView` into a larger allocation, ...) of the stream's context.
pub struct AttnTensors<'a, T> {
    /// Queries, `[batch, seq_q, heads_q, head_dim]` under `layouts.q`.
    pub q: &'a dyn DevicePtr<T>,
    /// Keys, `[batch, seq_k, heads_kv, head_dim]` under `layouts.k`.
    pub k: &'a dyn DevicePtr<T>,
    /// Values, like the keys, under `layouts.v`.
    pub v: &'a dyn DevicePtr<T>,
    /// The caller's output buffer, `[batch, seq_q, heads_q, head_dim]` under `layouts.out`.
    pub out: &'a mut dyn DevicePtrMut<T>,
    /// f32 LSE `[batch, heads_q, seq_q]`; give it exactly when `AttnOptions::return_lse` is set.
    pub lse: Option<&'a mut dyn DevicePtrMut<f32>>,
    /// f32 attention sinks `[heads_q]` (one logit per query head, gpt-oss); `None` = none.
    pub sinks: Option<&'a dyn DevicePtr<f32>>,
    /// Strides of the four tensors.
    pub layouts: AttnLayouts,
}

impl<'a, T> AttnTensors<'a, T> {
    /// Densely packed BSHD tensors for `shape`.
    pub fn contiguous(
        shape: &AttnShape,
        q: &'a dyn DevicePtr<T>,
        k: &'a dyn DevicePtr<T>,
        v: &'a dyn DevicePtr<T>,
        out: &'a mut dyn DevicePtrMut<T>,
        lse: Option<&'a mut dyn DevicePtrMut<f32>>,
    ) -> Self {
        Self { q, k, v, out, lse, sinks: None, layouts: AttnLayouts::contiguous(shape) }
    }

    /// The same tensors with per-head attention sinks (`[heads_q]` f32 logits).
    pub fn with_sinks(self, sinks: &'a dyn DevicePtr<f32>) -> Self {
        Self { sinks: Some(sinks), ..self }
    }
}

/// Errors unless `buffer` was allocated in the context that `stream` runs in: every address
/// a launch passes must belong to that context.
pub(super) fn check_context<T>(stream: &CudaStream, tensor: &'static str, buffer: &(impl DeviceSlice<T> + ?Sized)) -> Result<()> {
    let owner = buffer.stream().context();
    if owner.cu_ctx() == stream.context().cu_ctx() {
        return Ok(());
    }
    Err(Error::InvalidParameter {
        name: tensor,
        reason: format!(
            "allocated on device {} but the stream runs on device {}; every buffer must live in the stream's context",
            owner.ordinal(),
            stream.context().ordinal()
        ),
    })
}

/// A read-only buffer's address and length, after its context check; its access guard
/// goes to `guards`, which the caller holds until the launch is enqueued (cudarc orders the
/// launch after pending writes to the buffer, and later work after the launch).
pub(super) fn read<'a, T>(
    stream: &'a Arc<CudaStream>,
    tensor: &'static str,
    buffer: &'a (impl DevicePtr<T> + ?Sized),
    guards: &mut Vec<SyncOnDrop<'a>>,
) -> Result<DeviceBuffer> {
    check_context(stream, tensor, buffer)?;
    let len = buffer.len();
    let (addr, guard) = buffer.device_ptr(stream);
    guards.push(guard);
    Ok(DeviceBuffer { addr, len })
}

/// Like [`read`], for a buffer the kernel writes.
pub(super) fn write<'a, T>(
    stream: &'a Arc<CudaStream>,
    tensor: &'static str,
    buffer: &'a mut (impl DevicePtrMut<T> + ?Sized),
    guards: &mut Vec<SyncOnDrop<'a>>,
) -> Result<DeviceBuffer> {
    check_context(stream, tensor, &*buffer)?;
    let len = buffer.len();
    let (addr, guard) = buffer.device_ptr_mut(stream);
    guards.push(guard);
    Ok(DeviceBuffer { addr, len })
}

/// The dense tensors as [`AttnBuffers`], their guards pushed onto `guards`.
pub(super) fn attn_buffers<'a, 't: 'a, T>(
    stream: &'a Arc<CudaStream>,
    tensors: AttnTensors<'t, T>,
    guards: &mut Vec<SyncOnDrop<'a>>,
) -> Result<AttnBuffers> {
    Ok(AttnBuffers {
        q: read(stream, "q", tensors.q, guards)?,
        k: read(stream, "k", tensors.k, guards)?,
        v: read(stream, "v", tensors.v, guards)?,
        out: write(stream, "out", tensors.out, guards)?,
        lse: tensors.lse.map(|l| write(stream, "lse", l, guards)).transpose()?,
        sinks: tensors.sinks.map(|s| read(stream, "sinks", s, guards)).transpose()?,
        layouts: tensors.layouts,
    })
}
