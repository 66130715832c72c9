//! Prefill attention on a GPU through cudarc: safe launch functions over `CudaSlice`s.
//!
//! Each function validates the launch ([`crate::plan::attention`] does all the checking),
//! raises the kernel's dynamic shared-memory limit when the head_dim needs more than the
//! default 48 KiB, and enqueues it on the caller's stream. The output buffer is the
//! caller's; nothing is synchronised here.

use std::sync::Arc;

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop};

use super::vs_convert::VsIndexDevice;
use crate::attention::{AttnBuffers, AttnLayouts, DeviceBuffer, SourceBuffers};
use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::pattern::vs_convert::VsIndex;
use crate::pattern::BlockSparse;
use crate::shape::{AttnDtype, AttnOptions, AttnShape};

fn driver(e: cudarc::driver::DriverError) -> Error {
    Error::Driver(e.to_string())
}

/// A block-sparse (or A-shape) descriptor in device memory, layout as [`BlockSparse`].
pub struct BlockSparseDevice {
    /// `[B, H, MB]`.
    pub block_count: CudaSlice<i32>,
    /// `[B, H, MB, max_blocks]`.
    pub block_index: CudaSlice<i32>,
    /// `[B, H, MB, max_blocks]`.
    pub dims: [usize; 4],
}

impl BlockSparseDevice {
    /// Validates `desc` against `shape` on the host (so bad indices are an error, not a
    /// silently skipped entry) and uploads it.
    pub fn upload(stream: &Arc<CudaStream>, desc: &BlockSparse, shape: &AttnShape) -> Result<Self> {
        desc.validate(shape)?;
        Ok(Self { block_count: upload(stream, desc.block_count())?, block_index: upload(stream, desc.block_index())?, dims: desc.dims() })
    }
}

/// Uploads a host-converted vertical-slash index ([`crate::pattern::vs_convert::convert`]).
pub fn upload_vs_index(stream: &Arc<CudaStream>, index: &VsIndex) -> Result<VsIndexDevice> {
    Ok(VsIndexDevice {
        block_count: upload(stream, &index.block_count)?,
        block_offset: upload(stream, &index.block_offset)?,
        column_count: upload(stream, &index.column_count)?,
        column_index: upload(stream, &index.column_index)?,
        dims: index.dims,
    })
}

/// Copies a host slice to the device; an empty one becomes a one-element buffer because
/// zero-length device allocations are awkward, and the params never let a kernel read it.
fn upload(stream: &Arc<CudaStream>, data: &[i32]) -> Result<CudaSlice<i32>> {
    stream.clone_htod(if data.is_empty() { &[-1][..] } else { data }).map_err(driver)
}

/// The dense tensors of one attention call.
pub struct AttnTensors<'a, T> {
    /// Queries, `[batch, seq_q, heads_q, head_dim]` under `layouts.q`.
    pub q: &'a CudaSlice<T>,
    /// Keys, `[batch, seq_k, heads_kv, head_dim]` under `layouts.k`.
    pub k: &'a CudaSlice<T>,
    /// Values, like the keys, under `layouts.v`.
    pub v: &'a CudaSlice<T>,
    /// The caller's output buffer, `[batch, seq_q, heads_q, head_dim]` under `layouts.out`.
    pub out: &'a mut CudaSlice<T>,
    /// f32 LSE `[batch, heads_q, seq_q]`; give it exactly when `AttnOptions::return_lse` is set.
    pub lse: Option<&'a mut CudaSlice<f32>>,
    /// Strides of the four tensors.
    pub layouts: AttnLayouts,
}

impl<'a, T> AttnTensors<'a, T> {
    /// Densely packed BSHD tensors for `shape`.
    pub fn contiguous(
        shape: &AttnShape,
        q: &'a CudaSlice<T>,
        k: &'a CudaSlice<T>,
        v: &'a CudaSlice<T>,
        out: &'a mut CudaSlice<T>,
        lse: Option<&'a mut CudaSlice<f32>>,
    ) -> Self {
        Self { q, k, v, out, lse, layouts: AttnLayouts::contiguous(shape) }
    }
}

/// Which key tiles the kernel visits.
#[derive(Clone, Copy)]
pub enum DeviceSource<'a> {
    /// Every tile (causal launches stop at the diagonal).
    Dense,
    /// Block-sparse or A-shape block lists.
    BlockSparse(&'a BlockSparseDevice),
    /// Converted vertical-slash indices (causal only).
    VerticalSlash(&'a VsIndexDevice),
}

/// Enqueues prefill attention of `source`'s pattern on `stream`, writing `tensors.out`
/// (and the LSE when asked for).
pub fn attention_forward<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    source: DeviceSource<'_>,
) -> Result<()> {
    let indices: Vec<(&'static str, &CudaSlice<i32>)> = match source {
        DeviceSource::Dense => Vec::new(),
        DeviceSource::BlockSparse(d) => vec![("block_count", &d.block_count), ("block_index", &d.block_index)],
        DeviceSource::VerticalSlash(d) => vec![
            ("block_count", &d.block_count),
            ("block_offset", &d.block_offset),
            ("column_count", &d.column_count),
            ("column_index", &d.column_index),
        ],
    };
    // Every buffer's access guard, held until the launch below is enqueued.
    let (bufs, mut guards) = dense_buffers(stream, tensors, &indices)?;
    let mut index = |s| index_buffer(s, stream, &mut guards);
    let source = match source {
        DeviceSource::Dense => SourceBuffers::Dense,
        DeviceSource::BlockSparse(d) => {
            SourceBuffers::BlockSparse { dims: d.dims, block_count: index(&d.block_count), block_index: index(&d.block_index) }
        }
        DeviceSource::VerticalSlash(d) => SourceBuffers::VerticalSlash {
            dims: d.dims,
            block_count: index(&d.block_count),
            block_offset: index(&d.block_offset),
            column_count: index(&d.column_count),
            column_index: index(&d.column_index),
        },
    };
    let plan = crate::plan::attention(shape, T::DTYPE, opts, &bufs, &source)?;

    // Above 48 KiB of dynamic shared memory a kernel must opt in (head_dim 128 uses 64 KiB).
    let function = super::load_function(stream.context(), plan.module, plan.kernel)?;
    function
        .set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, plan.shared_mem_bytes as i32)
        .map_err(driver)?;
    // SAFETY: the plan is `plan::attention`'s own, unmodified (params, grid and shared
    // memory agree); every address in the plan comes from a live CudaSlice of this
    // stream's context (checked above), and `plan::attention` checked each buffer's length
    // against everything the kernel addresses for this shape and layout; the guards keep
    // cudarc's event ordering for those buffers until the launch is enqueued.
    let launched = unsafe { super::launch(stream, &plan) };
    drop(guards);
    launched
}

/// The launch's dense tensors as [`AttnBuffers`], with the access guards that keep cudarc's
/// event ordering for them. First checks that q, k, v, out, the LSE and then each of
/// `indices` (the launch's index tensors, whose addresses the caller takes afterwards with
/// [`index_buffer`]) live in `stream`'s context. The caller keeps the guards (and pushes the
/// index tensors' guards onto them) until the launch is enqueued.
pub(super) fn dense_buffers<'a, T>(
    stream: &'a Arc<CudaStream>,
    tensors: AttnTensors<'a, T>,
    indices: &[(&'static str, &CudaSlice<i32>)],
) -> Result<(AttnBuffers, Vec<SyncOnDrop<'a>>)> {
    let check = |name, s: &CudaSlice<T>| super::launch::check_context(stream, name, s);
    check("q", tensors.q)?;
    check("k", tensors.k)?;
    check("v", tensors.v)?;
    check("out", tensors.out)?;
    if let Some(l) = tensors.lse.as_deref() {
        super::launch::check_context(stream, "lse", l)?;
    }
    for &(name, s) in indices {
        super::launch::check_context(stream, name, s)?;
    }
    let buffer = |addr: u64, len: usize| DeviceBuffer { addr, len };
    let (q_ptr, q_guard) = tensors.q.device_ptr(stream);
    let (k_ptr, k_guard) = tensors.k.device_ptr(stream);
    let (v_ptr, v_guard) = tensors.v.device_ptr(stream);
    let out_len = tensors.out.len();
    let (out_ptr, out_guard) = tensors.out.device_ptr_mut(stream);
    let mut guards = vec![q_guard, k_guard, v_guard, out_guard];
    let lse = tensors.lse.map(|l| {
        let len = l.len();
        let (ptr, guard) = l.device_ptr_mut(stream);
        guards.push(guard);
        buffer(ptr, len)
    });
    let bufs = AttnBuffers {
        q: buffer(q_ptr, tensors.q.len()),
        k: buffer(k_ptr, tensors.k.len()),
        v: buffer(v_ptr, tensors.v.len()),
        out: buffer(out_ptr, out_len),
        lse,
        layouts: tensors.layouts,
    };
    Ok((bufs, guards))
}

/// The address and length of an index tensor, keeping its access guard in `guards`.
pub(super) fn index_buffer<'a>(s: &'a CudaSlice<i32>, stream: &'a Arc<CudaStream>, guards: &mut Vec<SyncOnDrop<'a>>) -> DeviceBuffer {
    let (addr, guard) = s.device_ptr(stream);
    guards.push(guard);
    DeviceBuffer { addr, len: s.len() }
}

/// Dense attention over contiguous BSHD tensors.
pub fn attention_dense<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
) -> Result<()> {
    attention_forward(stream, shape, opts, tensors, DeviceSource::Dense)
}

/// Block-sparse (or A-shape, via [`crate::pattern::AShape::to_block_sparse`]) attention.
pub fn attention_block_sparse<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    desc: &BlockSparseDevice,
) -> Result<()> {
    attention_forward(stream, shape, opts, tensors, DeviceSource::BlockSparse(desc))
}

/// Vertical-slash attention on converted indices (causal only).
pub fn attention_vertical_slash<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    index: &VsIndexDevice,
) -> Result<()> {
    attention_forward(stream, shape, opts, tensors, DeviceSource::VerticalSlash(index))
}
