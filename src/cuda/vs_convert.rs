//! Vertical-slash index conversion on the GPU (`vertical_slash_convert`,
//! kernels/vs_convert.cu), planned by [`crate::plan::vs_convert`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::attention::{upload_i32, PagedTensors, VarlenTensors};
use super::tensors::{read, write};
use crate::error::Result;
use crate::mask::SparsePattern;
use crate::pattern::vs_convert::index_dims;
use crate::pattern::VerticalSlash;
use crate::plan::vs_convert::SeqLens;
use crate::shape::AttnShape;
use crate::source::{VsIndex, VsIndexDims};

/// Zeroed device tensors for a converted index of `dims` (the conversion's output).
pub fn alloc_vs_index(stream: &Arc<CudaStream>, dims: VsIndexDims) -> Result<VsIndex<CudaSlice<i32>>> {
    let lens = dims.lens();
    let alloc = |n: usize| -> Result<CudaSlice<i32>> { Ok(stream.alloc_zeros::<i32>(n.max(1))?) };
    Ok(VsIndex {
        dims,
        block_count: alloc(lens.rows)?,
        block_offset: alloc(lens.block_offset)?,
        column_count: alloc(lens.rows)?,
        column_index: alloc(lens.column_index)?,
    })
}

/// Copies a converted index back to the host (each tensor cut to its length under `dims`).
pub fn download_vs_index<B: DevicePtr<i32>>(stream: &Arc<CudaStream>, index: &VsIndex<B>) -> Result<VsIndex> {
    let host = index.as_ref().try_map(|_, b| stream.clone_dtoh(b))?;
    Ok(host.truncate_to_dims())
}

/// Converts device-resident vertical and slash indexes (`[B, H, NNZ_V]`, `[B, H, NNZ_S]`,
/// as [`VerticalSlash`] describes them) into `out`, asynchronously on `stream`.
///
/// Sizes are checked against `shape` and `out.dims` ([`crate::plan::vs_convert::plan`]);
/// the index values are not (they live on the device), and the kernel skips whatever is out
/// of range or out of order without touching memory outside the buffers.
pub fn vs_convert<I: DevicePtr<i32>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    vertical_indexes: &I,
    slash_indexes: &I,
    out: &mut VsIndex<O>,
) -> Result<()> {
    convert_with(stream, shape, None, vertical_indexes, slash_indexes, out)
}

/// The per-sequence lengths of a varlen or paged batch for [`vs_convert_varlen`]: the same
/// device tensors (and host copies) its attention launch takes.
pub enum SeqLensTensors<'a, B> {
    /// A varlen batch ([`super::attention_varlen`]'s boundaries).
    Varlen(VarlenTensors<'a, B>),
    /// A paged batch ([`super::attention_paged`]'s metadata; `cu_seqlens_q` and `seqlens_k`
    /// are read).
    Paged(PagedTensors<'a, B>),
}

/// [`vs_convert`] for a varlen or paged batch ([`crate::plan::vs_convert::plan_varlen`]):
/// `shape` holds the batch and the longest sequences, and each sequence's row blocks are
/// converted on its own lengths, which the kernel reads on the device (nothing is copied
/// back), so an engine goes from device indexes to the attention launch without a host
/// round trip. The device counterpart of [`crate::pattern::vs_convert::convert_varlen`].
pub fn vs_convert_varlen<I: DevicePtr<i32>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    lens: SeqLensTensors<'_, I>,
    vertical_indexes: &I,
    slash_indexes: &I,
    out: &mut VsIndex<O>,
) -> Result<()> {
    convert_with(stream, shape, Some(lens), vertical_indexes, slash_indexes, out)
}

/// Plans ([`crate::plan::vs_convert::plan`], or `plan_varlen` with `lens`) and enqueues a
/// conversion, holding every buffer's access guard until the launch is enqueued.
fn convert_with<I: DevicePtr<i32>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    lens: Option<SeqLensTensors<'_, I>>,
    vertical_indexes: &I,
    slash_indexes: &I,
    out: &mut VsIndex<O>,
) -> Result<()> {
    let mut guards = Vec::new();
    let vertical = read(stream, "vertical_indexes", vertical_indexes, &mut guards)?;
    let slash = read(stream, "slash_indexes", slash_indexes, &mut guards)?;
    let out = out.as_mut().try_map(|name, b| write(stream, name, b, &mut guards))?;
    let (varlen, paged);
    let plan = match &lens {
        None => crate::plan::vs_convert::plan(shape, vertical, slash, &out)?,
        Some(SeqLensTensors::Varlen(v)) => {
            varlen = v.buffers(stream, &mut guards)?;
            crate::plan::vs_convert::plan_varlen(shape, SeqLens::Varlen(&varlen), vertical, slash, &out)?
        }
        Some(SeqLensTensors::Paged(p)) => {
            paged = p.buffers(stream, &mut guards)?;
            crate::plan::vs_convert::plan_varlen(shape, SeqLens::Paged(&paged), vertical, slash, &out)?
        }
    };
    // SAFETY: every address in the plan comes from a live buffer of this stream's context
    // (checked as it was read) whose true length the planner checked against what the
    // kernel addresses; the guards keep cudarc's ordering until the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}

/// Uploads a host descriptor (validated first), converts it on the GPU and downloads the
/// result; the GPU counterpart of [`crate::pattern::vs_convert::convert`].
pub fn convert_on_gpu(stream: &Arc<CudaStream>, vs: &VerticalSlash, shape: &AttnShape) -> Result<VsIndex> {
    vs.validate(shape)?;
    let vertical = upload_i32(stream, vs.vertical_indexes())?;
    let slash = upload_i32(stream, vs.slash_indexes())?;
    let mut out = alloc_vs_index(stream, index_dims(vs, shape)?)?;
    vs_convert(stream, shape, &vertical, &slash, &mut out)?;
    let host = download_vs_index(stream, &out)?;
    stream.synchronize()?;
    Ok(host)
}
