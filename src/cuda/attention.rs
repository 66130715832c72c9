//! Attention on a GPU through cudarc: one entry point for every source, [`attention`], a
//! raw entry point for engines on another cudarc version (or none), and uploads of host
//! sources.
//!
//! Validation and the launch geometry come from [`crate::plan::attention`], the same plan
//! the simulator runs. The output buffer is the caller's; nothing is synchronised here.

use std::sync::Arc;

use cudarc::driver::sys::CUstream;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DeviceRepr, SyncOnDrop};

use super::tensors::{attn_buffers, read, AttnTensors};
use crate::checked::non_empty;
use crate::error::Result;
use crate::plan::{AttnBuffers, DeviceBuffer, LaunchPlan, PagedHost, PagedKvBuffers, VarlenBuffers};
use crate::shape::{AttnDtype, AttnOptions, AttnShape, DType, Varlen};
use crate::source::Source;

/// Enqueues attention of `source`'s pattern on `stream`, writing `tensors.out` (and the
/// LSE when asked for). `source` holds the index tensors in any cudarc buffer kind of the
/// stream's context (a `Source<CudaSlice<i32>>` from [`upload`], views, ...); for dense
/// attention, [`attention_dense`] spares naming a buffer type.
pub fn attention<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    source: &Source<B>,
) -> Result<()> {
    enqueue(stream, tensors, source, |bufs, source, _| crate::plan::attention(shape, T::DTYPE, opts, bufs, source))
}

/// Reads the tensors and the source's buffers (each one's access guard held until the
/// launch is enqueued), plans the launch with `plan` (which may read more buffers into the
/// guards), and enqueues it.
fn enqueue<'a, 't: 'a, 's: 'a, T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &'a Arc<CudaStream>,
    tensors: AttnTensors<'t, T>,
    source: &'s Source<B>,
    plan: impl FnOnce(&AttnBuffers, &Source<DeviceBuffer>, &mut Vec<SyncOnDrop<'a>>) -> Result<LaunchPlan>,
) -> Result<()> {
    let mut guards = Vec::new();
    let bufs = attn_buffers(stream, tensors, &mut guards)?;
    let source = source.as_ref().try_map(|name, b| read(stream, name, b, &mut guards))?;
    let plan = plan(&bufs, &source, &mut guards)?;
    // SAFETY: every address in the plan comes from a live buffer of this stream's context
    // (checked as it was read) whose true length the planner checked against everything
    // the kernel addresses; the guards keep cudarc's event ordering for those buffers until
    // the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}

/// The sequences of a varlen launch ([`attention_varlen`]): i32 `cu_seqlens_q` and
/// `cu_seqlens_k` (`batch + 1` entries each) on the device, the packed totals, and the
/// host copy when the caller has it (checked before the launch; the device's are never read
/// back).
pub struct VarlenTensors<'a, B> {
    /// i32 `[batch + 1]`: sequence `b`'s query rows are `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]`.
    pub cu_seqlens_q: &'a B,
    /// i32 `[batch + 1]`, the same for keys.
    pub cu_seqlens_k: &'a B,
    /// Packed query rows: q and out are `[total_q, heads_q, head_dim]` under their layouts.
    pub total_q: usize,
    /// Packed key rows: k and v are `[total_k, heads_kv, head_dim]`.
    pub total_k: usize,
    /// The same boundaries on the host, if the caller has them.
    pub host: Option<&'a Varlen>,
}

/// Enqueues varlen attention ([`crate::plan::attention_varlen`]): `shape` is (batch,
/// max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim), `tensors` the packed q, k, v
/// and out (the layouts' batch strides are unused) and the LSE `[heads_q, total_q]`;
/// block-sparse and vertical-slash index tensors have the shape's batch and row blocks
/// (built per sequence), top-k indices are packed like q. Causal masks are bottom-right per
/// sequence.
pub fn attention_varlen<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    varlen: VarlenTensors<'_, B>,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    source: &Source<B>,
) -> Result<()> {
    enqueue(stream, tensors, source, |bufs, source, guards| {
        let lens = varlen.buffers(stream, guards)?;
        crate::plan::attention_varlen(shape, &lens, T::DTYPE, opts, bufs, source)
    })
}

impl<'a, B: DevicePtr<i32>> VarlenTensors<'a, B> {
    /// The planner's view of the tensors, after their context checks; their access guards
    /// go to `guards`.
    pub(super) fn buffers(&self, stream: &'a Arc<CudaStream>, guards: &mut Vec<SyncOnDrop<'a>>) -> Result<VarlenBuffers<'a>> {
        Ok(VarlenBuffers {
            cu_seqlens_q: read(stream, "cu_seqlens_q", self.cu_seqlens_q, guards)?,
            cu_seqlens_k: read(stream, "cu_seqlens_k", self.cu_seqlens_k, guards)?,
            total_q: self.total_q,
            total_k: self.total_k,
            host: self.host,
        })
    }
}

/// The paging metadata of a paged launch ([`attention_paged`]), on the device: i32
/// `cu_seqlens_q [batch + 1]`, `seqlens_k [batch]` and `block_table [batch, max_pages]`,
/// with the host copies when the caller has them.
pub struct PagedTensors<'a, B> {
    /// i32 `[batch + 1]`: sequence `b`'s query rows in the packed q.
    pub cu_seqlens_q: &'a B,
    /// Packed query rows.
    pub total_q: usize,
    /// i32 `[batch]`: keys per sequence.
    pub seqlens_k: &'a B,
    /// i32 `[batch, max_pages]`: the pages of each sequence's keys, in order.
    pub block_table: &'a B,
    /// Entries per block-table row.
    pub max_pages: usize,
    /// Tokens per page: a power of two from 16 to 256.
    pub page_size: usize,
    /// Pages in each of the k and v caches.
    pub num_pages: usize,
    /// The host copies, checked before the launch when given.
    pub host: Option<PagedHost<'a>>,
}

/// Enqueues prefill of packed varlen queries against paged K/V caches
/// ([`crate::plan::attention_paged`]): `tensors` holds the packed q and out, the LSE
/// `[heads_q, total_q]`, and the k and v caches, whose layouts give the (page, token, head)
/// strides (`Bshd { batch: page stride, seq: token stride, head }`: NHD and HND alike).
/// Every source runs paged.
pub fn attention_paged<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    paged: PagedTensors<'_, B>,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    source: &Source<B>,
) -> Result<()> {
    enqueue(stream, tensors, source, |bufs, source, guards| {
        let meta = paged.buffers(stream, guards)?;
        crate::plan::attention_paged(shape, &meta, T::DTYPE, opts, bufs, source)
    })
}

impl<'a, B: DevicePtr<i32>> PagedTensors<'a, B> {
    /// The planner's view of the metadata, after the context checks; the access guards go
    /// to `guards`.
    pub(super) fn buffers(&self, stream: &'a Arc<CudaStream>, guards: &mut Vec<SyncOnDrop<'a>>) -> Result<PagedKvBuffers<'a>> {
        Ok(PagedKvBuffers {
            cu_seqlens_q: read(stream, "cu_seqlens_q", self.cu_seqlens_q, guards)?,
            total_q: self.total_q,
            seqlens_k: read(stream, "seqlens_k", self.seqlens_k, guards)?,
            block_table: read(stream, "block_table", self.block_table, guards)?,
            max_pages: self.max_pages,
            page_size: self.page_size,
            num_pages: self.num_pages,
            host: self.host,
        })
    }
}

/// Dense attention: [`attention`] with [`Source::Dense`].
pub fn attention_dense<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
) -> Result<()> {
    attention::<T, CudaSlice<i32>>(stream, shape, opts, tensors, &Source::Dense)
}

/// [`attention`] on raw device pointers and a raw stream, for engines that hold their
/// buffers through another cudarc version or their own driver bindings. It is validated
/// exactly like the safe path (the same [`crate::plan::attention`]): shapes, head_dim,
/// options, every buffer's length against what the kernel addresses, strides, alignment,
/// non-aliasing outputs and the index tensors' sizes.
///
/// # Safety
/// - `stream` is a live `CUstream` (or null for the legacy default stream of the current
///   context).
/// - Every [`DeviceBuffer`] in `bufs` and `source` is an allocation of the stream's context
///   holding at least `len` elements of its type (`dtype` for q, k, v and out; f32 for the
///   LSE; i32 for index tensors).
/// - Those buffers stay allocated, q, k, v and the index tensors are not written, and out
///   and the LSE are not read or written by other work, until the launch completes on
///   `stream` (the caller orders other streams against it).
pub unsafe fn attention_raw(
    stream: CUstream,
    shape: &AttnShape,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    source: &Source<DeviceBuffer>,
) -> Result<()> {
    let plan = crate::plan::attention(shape, dtype, opts, bufs, source)?;
    // SAFETY: forwarded from the caller: a live stream and true buffer lengths.
    unsafe { super::launch::launch(stream, &plan) }
}

/// Copies a host source (a descriptor's validated [`SparsePattern::source`](crate::SparsePattern::source))
/// to the device, for [`attention`].
pub fn upload<D: AsRef<[i32]>>(stream: &Arc<CudaStream>, source: &Source<D>) -> Result<Source<CudaSlice<i32>>> {
    source.as_ref().try_map(|_, data| upload_i32(stream, data.as_ref()))
}

/// Copies i32 host data to a new device buffer (one element when empty; the launch sizes
/// never let a kernel read it).
pub(super) fn upload_i32(stream: &Arc<CudaStream>, data: &[i32]) -> Result<CudaSlice<i32>> {
    Ok(stream.clone_htod(&*non_empty(data))?)
}
