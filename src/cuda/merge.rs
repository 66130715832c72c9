//! Merging partial attention states on the GPU (`merge_states_<dtype>` and
//! `merge_state_in_place_<dtype>`, kernels/merge.cu), planned by [`crate::plan::merge`].
//! Buffers are any cudarc buffer kind of the stream's context; nothing is synchronised here.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut};

use super::tensors::{read, write};
use crate::error::Result;
use crate::plan::merge::{InPlaceBuffers, InPlaceLayouts, MergeBuffers, MergeElement, MergeLayouts, MergeShape};

/// Enqueues the merge of `shape.states()` partial states on `stream`: f32 `partial_out` and
/// `partial_lse` (natural log) into `out` (f16, bf16 or f32 rows) and, when given, the merged
/// f32 `lse`, each under its layout in `layouts` ([`MergeLayouts::contiguous`] for `[S, B,
/// seq, H, D]`, `[S, B, H, seq]`, `[B, seq, H, D]` and `[B, H, seq]`). Validated by
/// [`crate::plan::merge::plan`]: every offset the strides reach must lie inside its buffer.
pub fn merge_states<T: MergeElement, I: DevicePtr<f32> + ?Sized, O: DevicePtrMut<T> + ?Sized>(
    stream: &Arc<CudaStream>,
    shape: &MergeShape,
    partial_out: &I,
    partial_lse: &I,
    out: &mut O,
    lse: Option<&mut dyn DevicePtrMut<f32>>,
    layouts: &MergeLayouts,
) -> Result<()> {
    let mut guards = Vec::new();
    let bufs = MergeBuffers {
        partial_out: read(stream, "partial_out", partial_out, &mut guards)?,
        partial_lse: read(stream, "partial_lse", partial_lse, &mut guards)?,
        out: write(stream, "out", out, &mut guards)?,
        lse: lse.map(|l| write(stream, "lse", l, &mut guards)).transpose()?,
        layouts: *layouts,
    };
    let plan = crate::plan::merge::plan(shape, T::DTYPE, &bufs)?;
    // SAFETY: every address in the plan comes from a live buffer of this stream's context
    // (checked as it was read) whose true length the planner checked against every offset
    // the kernel addresses; the guards keep cudarc's ordering until the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}

/// Enqueues the in-place merge of two states on `stream` (FlashInfer's
/// `merge_state_in_place`, natural-log LSEs): `v` and `lse` become the merge of themselves
/// and `v_other`, `lse_other`. `shape.states()` must be 2; rows are f16, bf16 or f32, LSEs
/// f32. Validated by [`crate::plan::merge::plan_in_place`].
pub fn merge_state_in_place<T: MergeElement, V: DevicePtrMut<T> + ?Sized, L: DevicePtrMut<f32> + ?Sized, VO: DevicePtr<T> + ?Sized, LO: DevicePtr<f32> + ?Sized>(
    stream: &Arc<CudaStream>,
    shape: &MergeShape,
    v: &mut V,
    lse: &mut L,
    v_other: &VO,
    lse_other: &LO,
    layouts: &InPlaceLayouts,
) -> Result<()> {
    let mut guards = Vec::new();
    let bufs = InPlaceBuffers {
        v: write(stream, "v", v, &mut guards)?,
        lse: write(stream, "lse", lse, &mut guards)?,
        v_other: read(stream, "v_other", v_other, &mut guards)?,
        lse_other: read(stream, "lse_other", lse_other, &mut guards)?,
        layouts: *layouts,
    };
    let plan = crate::plan::merge::plan_in_place(shape, T::DTYPE, &bufs)?;
    // SAFETY: as in merge_states: live buffers of this stream's context, lengths checked by
    // the planner, guards held until the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}
