//! The CUDA forward (feature `candle-cuda`): this crate's kernels, launched through
//! [`crate::cuda`] on candle's stream (`CudaDevice::cuda_stream`), on candle's own buffers.
//!
//! q, k and v are passed as cudarc views from their start offset, with their layouts' strides
//! (no copy; the planner checks the strides, the 16-byte row alignment and every length).
//! The other tensors (indices, boundaries, sinks) were made contiguous before the op and are
//! passed as views of exactly their elements; u32 ones are reinterpreted as i32, the type
//! the kernels read. The output, the LSE and a decode step's workspace are allocated on the
//! device per call; per-call scratch (the workspace, a converted index) is freed when the
//! call returns, which cudarc orders on the stream after the launches that use it. Nothing
//! is synchronised or read back.

use std::ops::Range;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{DType as CDType, Layout, Shape, Storage, StorageRef, Tensor};
use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaView, DevicePtr, DevicePtrMut, DeviceRepr, ValidAsZeroBits};

use super::args::{bad, wrap};
use super::ops::{stash, Decode, LseStorage, Prefill};
use super::pattern::{source_tensors, Pattern};
use crate::cuda::{AttnTensors, DecodeTensors, SeqLensTensors, VarlenTensors};
use crate::error::Error;
use crate::plan::decode::DecodeSource;
use crate::plan::AttnLayouts;
use crate::shape::{AttnDtype, Bshd, DType};
use crate::source::{row_blocks, BlockSparseDims, BlockSparseIndex, Source, TopkDims, TopkIndex, VsIndex, VsIndexDims};

type Arg<'a> = (&'a CudaStorage, &'a Layout);

/// What the kernels' element types need from candle and cudarc.
trait Elem: AttnDtype + DeviceRepr + ValidAsZeroBits + CudaDType {}
impl<T: AttnDtype + DeviceRepr + ValidAsZeroBits + CudaDType> Elem for T {}

pub(super) fn prefill(op: &Prefill, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CudaStorage, Shape)> {
    match op.dtype {
        DType::F16 => prefill_as::<half::f16>(op, q, k, v),
        DType::BF16 => prefill_as::<half::bf16>(op, q, k, v),
    }
}

pub(super) fn decode(op: &Decode, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CudaStorage, Shape)> {
    match op.dtype {
        DType::F16 => decode_as::<half::f16>(op, q, k, v),
        DType::BF16 => decode_as::<half::bf16>(op, q, k, v),
    }
}

/// A read lock on a carried tensor's storage, held while its view is in use.
struct Held<'t> {
    name: &'static str,
    storage: StorageRef<'t>,
    layout: &'t Layout,
}

fn hold<'t>(name: &'static str, t: &'t Tensor) -> Held<'t> {
    let (storage, layout) = t.storage_and_layout();
    Held { name, storage, layout }
}

impl Held<'_> {
    fn cuda(&self) -> candle_core::Result<&CudaStorage> {
        match &*self.storage {
            Storage::Cuda(s) => Ok(s),
            _ => Err(bad(self.name, "is not on q's CUDA device")),
        }
    }

    /// The tensor's elements: it is contiguous from its start offset.
    fn range(&self) -> Range<usize> {
        let start = self.layout.start_offset();
        start..start + self.layout.shape().elem_count()
    }

    fn past_storage(&self) -> candle_core::Error {
        bad(self.name, "its layout reaches past its storage")
    }

    /// An i32 view of an i32 or u32 index tensor.
    fn i32_view(&self) -> candle_core::Result<CudaView<'_, i32>> {
        let s = self.cuda()?;
        let range = self.range();
        let len = range.len();
        match s.dtype() {
            CDType::I32 => s.as_cuda_slice::<i32>()?.try_slice(range).ok_or_else(|| self.past_storage()),
            CDType::U32 => {
                let view = s.as_cuda_slice::<u32>()?.try_slice(range).ok_or_else(|| self.past_storage())?;
                // SAFETY: u32 and i32 have one size and alignment and every bit pattern is an
                // i32; the kernels read the same bits as i32 (past i32::MAX: negative, skipped).
                unsafe { view.transmute::<i32>(len) }.ok_or_else(|| self.past_storage())
            }
            other => Err(bad(self.name, format!("dtype {other:?}; index tensors must be i32 or u32"))),
        }
    }

    fn f32_view(&self) -> candle_core::Result<CudaView<'_, f32>> {
        self.cuda()?.as_cuda_slice::<f32>()?.try_slice(self.range()).ok_or_else(|| self.past_storage())
    }
}

/// q, k, v or a cache from its start offset (the planner checks its strides against what
/// remains of the buffer).
fn dense_view<'s, T: Elem>(name: &'static str, (s, l): Arg<'s>) -> candle_core::Result<CudaView<'s, T>> {
    s.as_cuda_slice::<T>()?.try_slice(l.start_offset()..).ok_or_else(|| bad(name, "its start offset is past its storage"))
}

/// The BSHD strides of a dense tensor's layout: rank 4 `[batch, seq, heads, head_dim]`, or
/// rank 3 packed `[rows, heads, head_dim]` (no batch dimension, batch stride 0).
fn bshd(layout: &Layout) -> Bshd {
    match *layout.stride() {
        [batch, seq, head, _] => Bshd { batch, seq, head },
        [seq, head, _] => Bshd { batch: 0, seq, head },
        // The checks before the op admitted only ranks 3 and 4.
        _ => Bshd { batch: 0, seq: 0, head: 0 },
    }
}

/// The dims of a carried tensor (its rank was checked before the op).
fn dim(t: &Tensor, i: usize) -> usize {
    t.dims().get(i).copied().unwrap_or(0)
}

fn prefill_as<T: Elem>(op: &Prefill, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CudaStorage, Shape)> {
    let s = op.shape;
    let dev = q.0.device.clone();
    let stream = dev.cuda_stream();
    let (qv, kv, vv) = (dense_view::<T>("q", q)?, dense_view::<T>("k", k)?, dense_view::<T>("v", v)?);
    let out_shape = q.1.shape().clone();
    let rows = q.1.dims()[0];
    let mut out = dev.alloc_zeros::<T>(out_shape.elem_count())?;
    let lse_len = if op.varlen.is_some() { s.heads_q() * rows } else { s.lse_len() };
    let mut lse = op.lse.as_ref().map(|_| dev.alloc_zeros::<f32>(lse_len)).transpose()?;

    let held: Vec<Held> = op.pattern.tensors().into_iter().map(|(name, t)| hold(name, t)).collect();
    let held_sinks = op.sinks.as_ref().map(|t| hold("sinks", t));
    let held_seqs = op.varlen.as_ref().map(|v| (hold("cu_seqlens_q", &v.cu_seqlens_q), hold("cu_seqlens_k", &v.cu_seqlens_k)));
    let mut views = held.iter().map(Held::i32_view).collect::<candle_core::Result<Vec<_>>>()?.into_iter();
    let pattern = op.pattern.try_map(|_| views.next().ok_or_else(|| bad("pattern", "fewer index tensors than the pattern names")))?;
    let sinks = held_sinks.as_ref().map(Held::f32_view).transpose()?;
    let seqs = held_seqs.as_ref().map(|(a, b)| Ok::<_, candle_core::Error>((a.i32_view()?, b.i32_view()?))).transpose()?;
    let varlen_tensors = || {
        seqs.as_ref().map(|(cu_q, cu_k)| VarlenTensors { cu_seqlens_q: cu_q, cu_seqlens_k: cu_k, total_q: rows, total_k: k.1.dims()[0], host: None })
    };

    // Vertical and slash indexes are converted here, into buffers that live until the launch.
    let converted;
    let source = match pattern {
        Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
            let Pattern::VerticalSlash { vertical_indexes: vt, slash_indexes: st } = &op.pattern else {
                return Err(bad("pattern", "the index views do not match the pattern"));
            };
            let dims = VsIndexDims::new(dim(vt, 0), dim(vt, 1), row_blocks(s.seq_q()), dim(vt, 2), dim(st, 2)).map_err(wrap)?;
            let mut index = crate::cuda::alloc_vs_index(&stream, dims).map_err(wrap)?;
            match varlen_tensors() {
                None => crate::cuda::vs_convert(&stream, &s, &vertical_indexes, &slash_indexes, &mut index),
                Some(lens) => crate::cuda::vs_convert_varlen(&stream, &s, SeqLensTensors::Varlen(lens), &vertical_indexes, &slash_indexes, &mut index),
            }
            .map_err(wrap)?;
            converted = index;
            Source::VerticalSlash(converted.as_ref().map(|_, b| b.as_view()))
        }
        other => source_of(other, &op.pattern, op.varlen.is_some().then_some(rows))?,
    };

    let out_layout = if op.varlen.is_some() { Bshd::contiguous(rows, s.heads_q(), s.head_dim()) } else { s.q_layout() };
    let tensors = AttnTensors {
        q: &qv,
        k: &kv,
        v: &vv,
        out: &mut out,
        lse: lse.as_mut().map(|l| l as &mut dyn DevicePtrMut<f32>),
        sinks: sinks.as_ref().map(|x| x as &dyn DevicePtr<f32>),
        layouts: AttnLayouts { q: bshd(q.1), k: bshd(k.1), v: bshd(v.1), out: out_layout },
    };
    match varlen_tensors() {
        None => crate::cuda::attention(&stream, &s, &op.opts, tensors, &source),
        Some(lens) => crate::cuda::attention_varlen(&stream, &s, lens, &op.opts, tensors, &source),
    }
    .map_err(wrap)?;
    if let Some(lse) = lse {
        stash(op.lse.as_ref(), || LseStorage::Cuda(CudaStorage::wrap_cuda_slice(lse, dev.clone())))?;
    }
    Ok((CudaStorage::wrap_cuda_slice(out, dev), out_shape))
}

/// The launch's source from the pattern's views, its sizes from the carried tensors' dims;
/// `packed_rows` is a varlen call's `total_q` (top-k indices packed like q).
fn source_of<'v>(views: Pattern<CudaView<'v, i32>>, tensors: &Pattern<Tensor>, packed_rows: Option<usize>) -> candle_core::Result<Source<CudaView<'v, i32>>> {
    Ok(match (views, tensors) {
        (Pattern::Dense, _) => Source::Dense,
        (Pattern::BlockSparse { block_count, block_index }, Pattern::BlockSparse { block_index: t, .. }) => {
            let dims = BlockSparseDims::new(dim(t, 0), dim(t, 1), dim(t, 2), dim(t, 3)).map_err(wrap)?;
            Source::BlockSparse(BlockSparseIndex { dims, block_count, block_index })
        }
        (Pattern::VsIndex { block_count, block_offset, column_count, column_index }, Pattern::VsIndex { block_offset: o, column_index: c, .. }) => {
            let dims = VsIndexDims::new(dim(o, 0), dim(o, 1), dim(o, 2), dim(c, 3), dim(o, 3)).map_err(wrap)?;
            Source::VerticalSlash(VsIndex { dims, block_count, block_offset, column_count, column_index })
        }
        (Pattern::TopK { indices }, Pattern::TopK { indices: t }) => {
            let dims = match packed_rows {
                Some(rows) => TopkDims::new(1, rows, dim(t, 1), dim(t, 2)),
                None => TopkDims::new(dim(t, 0), dim(t, 1), dim(t, 2), dim(t, 3)),
            }
            .map_err(wrap)?;
            Source::TopK(TopkIndex { dims, indices })
        }
        _ => return Err(bad("pattern", "the index views do not match the pattern")),
    })
}

fn decode_as<T: Elem>(op: &Decode, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CudaStorage, Shape)> {
    let s = op.shape;
    let dev = q.0.device.clone();
    let stream = dev.cuda_stream();
    let (qv, kv, vv) = (dense_view::<T>("q", q)?, dense_view::<T>("k_cache", k)?, dense_view::<T>("v_cache", v)?);
    let out_shape = q.1.shape().clone();
    let mut out = dev.alloc_zeros::<T>(out_shape.elem_count())?;
    let mut lse = op.lse.as_ref().map(|_| dev.alloc_zeros::<f32>(s.lse_len())).transpose()?;

    let held_seqlens = hold("seqlens_k", &op.seqlens_k);
    let held_table = op.block_table.as_ref().map(|t| hold("block_table", t));
    let held: Vec<Held> = source_tensors(&op.source).into_iter().map(|(name, t)| hold(name, t)).collect();
    let held_sinks = op.sinks.as_ref().map(|t| hold("sinks", t));
    let seqlens = held_seqlens.i32_view()?;
    let table = held_table.as_ref().map(Held::i32_view).transpose()?;
    let mut views = held.iter().map(Held::i32_view).collect::<candle_core::Result<Vec<_>>>()?.into_iter();
    let source: DecodeSource<CudaView<i32>> =
        op.source.try_map(|_, _| views.next().ok_or_else(|| bad("source", "fewer index tensors than the source names")))?;
    let sinks = held_sinks.as_ref().map(Held::f32_view).transpose()?;

    let mut opts = op.opts;
    if opts.splits.is_none() && opts.sm_count == 0 {
        let sms = stream.context().attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(|e| wrap(Error::from(e)))?;
        opts.sm_count = usize::try_from(sms).unwrap_or(0).max(1);
    }
    let workspace_len = crate::plan::decode::workspace_len(&s, None, &opts, &source).map_err(wrap)?;
    let mut workspace = dev.alloc_zeros::<f32>(workspace_len.max(1))?;
    // A paged cache is [num_pages, page_size, heads_kv, head_dim] by its dims.
    let (num_pages, page_size) = (k.1.dims()[0], k.1.dims()[1]);
    let pages = table.as_ref().zip(op.block_table.as_ref()).map(|(view, t)| (view, dim(t, 1), page_size, num_pages));
    let tensors = AttnTensors {
        q: &qv,
        k: &kv,
        v: &vv,
        out: &mut out,
        lse: lse.as_mut().map(|l| l as &mut dyn DevicePtrMut<f32>),
        sinks: sinks.as_ref().map(|x| x as &dyn DevicePtr<f32>),
        layouts: AttnLayouts { q: bshd(q.1), k: bshd(k.1), v: bshd(v.1), out: s.q_layout() },
    };
    let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: None, pages, packed: None };
    crate::cuda::decode(&stream, &s, &opts, tensors, meta, &mut workspace, &source).map_err(wrap)?;
    if let Some(lse) = lse {
        stash(op.lse.as_ref(), || LseStorage::Cuda(CudaStorage::wrap_cuda_slice(lse, dev.clone())))?;
    }
    Ok((CudaStorage::wrap_cuda_slice(out, dev), out_shape))
}
