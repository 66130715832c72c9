//! Merging partial attention states by their LSE (`kernels/merge.cu`): the kernels
//! `merge_states_<dtype>` ([`plan`]) and `merge_state_in_place_<dtype>` ([`plan_in_place`]),
//! a warp per output row in blocks of [`THREADS`].
//!
//! A row's attention over a key set that was split into disjoint parts (split-KV decode,
//! chunked prefill, context parallelism across GPUs) is recovered exactly from each part's
//! normalised output `out_s` and natural-log LSE `lse_s`:
//! `lse = ln(sum_s exp(lse_s))`, `out = sum_s exp(lse_s - lse) * out_s`, computed in f32
//! with the maximum subtracted first. A state with LSE -inf (no keys) contributes nothing
//! and its output row is not read; a row whose every state is -inf gets output 0 and LSE
//! -inf; a NaN (or +inf) LSE makes the row NaN. `crate::reference::merge_states_reference`
//! is the f64 specification.
//!
//! Tensors are described by general strides in elements ([`MergeLayouts`]), so the
//! contiguous layouts ([`MergeLayouts::contiguous`]), a varlen batch (batch 1, `seq =
//! total_q`: LSE `[H, total_q]`, as the attention kernels write it) and the split-KV decode
//! workspace (`partial_out [splits, rows, H, D]`, `partial_lse [splits, H, rows]`, rows =
//! batch x q_len, seen as (batch, q_len)) all go through the same [`plan`]:
//!
//! ```
//! use sparse_attn::plan::merge::*;
//! # fn main() -> sparse_attn::Result<()> {
//! let (splits, batch, q_len, heads, d) = (4, 2, 3, 8, 128);
//! let shape = MergeShape::new(splits, batch, q_len, heads, d)?;
//! let rows = (batch * q_len) as i64;
//! let (h, d, q) = (heads as i64, d as i64, q_len as i64);
//! let layouts = MergeLayouts {
//!     partial_out: PartialOutLayout { state: rows * h * d, batch: q * h * d, seq: h * d, head: d },
//!     partial_lse: PartialLseLayout { state: h * rows, batch: q, head: rows },
//!     ..MergeLayouts::contiguous(&shape)
//! };
//! # let _ = layouts;
//! # Ok(())
//! # }
//! ```
//!
//! Everything the kernels address is validated here with checked arithmetic (strides of
//! any value, buffers of any length): every offset the strides reach lies inside its
//! buffer, rows are aligned for the kernels' vector accesses, and no output overlaps
//! itself or another tensor.

use super::buffers::DeviceBuffer;
use super::LaunchPlan;
use crate::checked::to_i32;
use crate::error::{Error, Result};
use crate::params::{MergeInPlaceParams, MergeParams, MERGE_THREADS};
pub use crate::shape::MergeShape;
use crate::shape::DType;

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "merge";

/// Threads per block: a warp per output row.
pub const THREADS: u32 = MERGE_THREADS;

/// Output rows per block.
pub const ROWS_PER_BLOCK: u32 = MERGE_THREADS / 32;

/// Elements per vector access of a row: head_dim must be a multiple of it.
pub const HEAD_DIM_MULTIPLE: usize = MergeShape::HEAD_DIM_MULTIPLE;

/// The dtype of the merged output (and of both states of the in-place form). Partial states
/// are always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MergeDtype {
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// f32 (states kept for another round of merging, or an f32 engine).
    F32,
}

impl MergeDtype {
    /// The name the kernel instantiations carry: `"f16"`, `"bf16"` or `"f32"`.
    pub fn name(self) -> &'static str {
        match self {
            MergeDtype::F16 => "f16",
            MergeDtype::BF16 => "bf16",
            MergeDtype::F32 => "f32",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            MergeDtype::F16 | MergeDtype::BF16 => 2,
            MergeDtype::F32 => 4,
        }
    }
}

impl From<DType> for MergeDtype {
    fn from(dtype: DType) -> Self {
        match dtype {
            DType::F16 => MergeDtype::F16,
            DType::BF16 => MergeDtype::BF16,
        }
    }
}

/// An element type the merge kernels write: [`half::f16`], [`half::bf16`] or `f32`. The
/// backends pick the kernel instantiation through [`MergeElement::DTYPE`].
pub trait MergeElement: Copy + Send + Sync + bytemuck::Pod + Default + 'static {
    /// The runtime tag of this type.
    const DTYPE: MergeDtype;
    /// Widens exactly.
    fn to_f32(self) -> f32;
    /// Rounds to the nearest representable value (ties to even).
    fn from_f32(x: f32) -> Self;
}

impl MergeElement for half::f16 {
    const DTYPE: MergeDtype = MergeDtype::F16;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

impl MergeElement for half::bf16 {
    const DTYPE: MergeDtype = MergeDtype::BF16;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

impl MergeElement for f32 {
    const DTYPE: MergeDtype = MergeDtype::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(x: f32) -> Self {
        x
    }
}

/// Strides in elements of the f32 partial outputs: state `s` of row (b, t, h) starts at
/// `s * state + b * batch + t * seq + h * head`; its head_dim elements are contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialOutLayout {
    /// Elements between states.
    pub state: i64,
    /// Elements between batch entries.
    pub batch: i64,
    /// Elements between tokens.
    pub seq: i64,
    /// Elements between heads.
    pub head: i64,
}

/// Strides in elements of the f32 partial LSEs: state `s` of row (b, t, h) is at
/// `s * state + b * batch + h * head + t` (tokens contiguous).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialLseLayout {
    /// Elements between states.
    pub state: i64,
    /// Elements between batch entries.
    pub batch: i64,
    /// Elements between heads.
    pub head: i64,
}

/// Strides in elements of rows of head_dim contiguous elements (the merged output, or a
/// state of the in-place form): row (b, t, h) starts at `b * batch + t * seq + h * head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowLayout {
    /// Elements between batch entries.
    pub batch: i64,
    /// Elements between tokens.
    pub seq: i64,
    /// Elements between heads.
    pub head: i64,
}

/// Strides in elements of an f32 LSE with contiguous tokens: row (b, t, h) at
/// `b * batch + h * head + t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LseLayout {
    /// Elements between batch entries.
    pub batch: i64,
    /// Elements between heads.
    pub head: i64,
}

impl PartialOutLayout {
    /// `[states, batch, seq, heads, head_dim]`, densely packed.
    pub fn contiguous(shape: &MergeShape) -> Self {
        let [_, b, s, h, d] = shape.dims_i64();
        Self { state: b * s * h * d, batch: s * h * d, seq: h * d, head: d }
    }
}

impl PartialLseLayout {
    /// `[states, batch, heads, seq]`, densely packed.
    pub fn contiguous(shape: &MergeShape) -> Self {
        let [_, b, s, h, _] = shape.dims_i64();
        Self { state: b * h * s, batch: h * s, head: s }
    }
}

impl RowLayout {
    /// `[batch, seq, heads, head_dim]`, densely packed (varlen: `[total_q, heads, head_dim]`).
    pub fn contiguous(shape: &MergeShape) -> Self {
        let [_, _, s, h, d] = shape.dims_i64();
        Self { batch: s * h * d, seq: h * d, head: d }
    }
}

impl LseLayout {
    /// `[batch, heads, seq]`, densely packed (varlen: `[heads, total_q]`).
    pub fn contiguous(shape: &MergeShape) -> Self {
        let [_, _, s, h, _] = shape.dims_i64();
        Self { batch: h * s, head: s }
    }
}

/// The layouts of the four tensors of [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MergeLayouts {
    /// The f32 partial outputs.
    pub partial_out: PartialOutLayout,
    /// The f32 partial LSEs.
    pub partial_lse: PartialLseLayout,
    /// The merged output.
    pub out: RowLayout,
    /// The merged f32 LSE (used when a buffer is given).
    pub lse: LseLayout,
}

impl MergeLayouts {
    /// Densely packed: partials `[S, B, seq, H, D]` and `[S, B, H, seq]`, output `[B, seq, H,
    /// D]`, LSE `[B, H, seq]`. For a varlen batch (batch 1, seq = total_q) these are the
    /// packed `[total_q, H, D]` and the `[H, total_q]` LSE of the attention kernels.
    pub fn contiguous(shape: &MergeShape) -> Self {
        Self {
            partial_out: PartialOutLayout::contiguous(shape),
            partial_lse: PartialLseLayout::contiguous(shape),
            out: RowLayout::contiguous(shape),
            lse: LseLayout::contiguous(shape),
        }
    }
}

/// The tensors of one [`plan`]: partial outputs and LSEs (f32), the output (elements of the
/// dtype) and the optional merged LSE (f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeBuffers {
    /// f32 partial outputs, under `layouts.partial_out`.
    pub partial_out: DeviceBuffer,
    /// f32 partial LSEs (natural log), under `layouts.partial_lse`.
    pub partial_lse: DeviceBuffer,
    /// The merged output, written, under `layouts.out`.
    pub out: DeviceBuffer,
    /// The merged f32 LSE, written when given, under `layouts.lse`.
    pub lse: Option<DeviceBuffer>,
    /// The strides of all four.
    pub layouts: MergeLayouts,
}

/// The layouts of the four tensors of [`plan_in_place`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InPlaceLayouts {
    /// The first state's rows (read and written).
    pub v: RowLayout,
    /// The first state's LSE (read and written).
    pub lse: LseLayout,
    /// The second state's rows.
    pub v_other: RowLayout,
    /// The second state's LSE.
    pub lse_other: LseLayout,
}

impl InPlaceLayouts {
    /// Every tensor densely packed: rows `[B, seq, H, D]`, LSEs `[B, H, seq]`.
    pub fn contiguous(shape: &MergeShape) -> Self {
        let (rows, lse) = (RowLayout::contiguous(shape), LseLayout::contiguous(shape));
        Self { v: rows, lse, v_other: rows, lse_other: lse }
    }
}

/// The tensors of one [`plan_in_place`]: two states, rows of the dtype and f32 LSEs; the
/// first is replaced by the merge of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPlaceBuffers {
    /// The first state's rows, read and written.
    pub v: DeviceBuffer,
    /// The first state's LSE, read and written.
    pub lse: DeviceBuffer,
    /// The second state's rows.
    pub v_other: DeviceBuffer,
    /// The second state's LSE.
    pub lse_other: DeviceBuffer,
    /// The strides of all four.
    pub layouts: InPlaceLayouts,
}

/// The `extern "C"` name of the merge kernel writing `dtype`.
pub fn kernel(dtype: MergeDtype) -> String {
    format!("merge_states_{}", dtype.name())
}

/// The `extern "C"` name of the in-place merge kernel of `dtype`.
pub fn kernel_in_place(dtype: MergeDtype) -> String {
    format!("merge_state_in_place_{}", dtype.name())
}

/// Plans the merge of `shape.states()` partial states into `bufs.out` (of `dtype`, a
/// [`MergeDtype`] or an attention [`DType`]) and, when given, `bufs.lse`, after validating
/// every buffer against its layout (see the module docs).
pub fn plan(shape: &MergeShape, dtype: impl Into<MergeDtype>, bufs: &MergeBuffers) -> Result<LaunchPlan> {
    let dtype = dtype.into();
    launch_plan(shape, kernel(dtype), &params(shape, dtype, bufs)?)
}

/// Plans the in-place merge of two states: `bufs.v` and `bufs.lse` become the merge of
/// themselves and `bufs.v_other`, `bufs.lse_other` (FlashInfer's `merge_state_in_place`,
/// with natural-log LSEs). `shape.states()` must be 2. Validated as [`plan`]; `v` and `lse`
/// must not overlap each other or the other state.
pub fn plan_in_place(shape: &MergeShape, dtype: impl Into<MergeDtype>, bufs: &InPlaceBuffers) -> Result<LaunchPlan> {
    let dtype = dtype.into();
    launch_plan(shape, kernel_in_place(dtype), &params_in_place(shape, dtype, bufs)?)
}

/// A warp per row.
fn launch_plan<P: bytemuck::Pod>(shape: &MergeShape, kernel: String, params: &P) -> Result<LaunchPlan> {
    let blocks = shape.rows().div_ceil(ROWS_PER_BLOCK as usize);
    // An oversized count saturates and LaunchPlan::new refuses it as a grid error.
    let grid = [u32::try_from(blocks).unwrap_or(u32::MAX), 1, 1];
    LaunchPlan::new(MODULE, kernel, grid, [THREADS, 1, 1], 0, params)
}

/// Validates a merge and returns its params struct.
pub fn params(shape: &MergeShape, dtype: impl Into<MergeDtype>, bufs: &MergeBuffers) -> Result<MergeParams> {
    let dtype = dtype.into();
    let [s, b, t, h, d] = [shape.states(), shape.batch(), shape.seq(), shape.heads(), shape.head_dim()];
    let l = &bufs.layouts;
    let (pol, pll) = (&l.partial_out, &l.partial_lse);
    let po = Tensor::f32_rows("partial_out", bufs.partial_out, [("state", pol.state, s), ("batch", pol.batch, b), ("seq", pol.seq, t), ("head", pol.head, h)], d);
    let po = po.check(false)?;
    let pl = Tensor::lse("partial_lse", bufs.partial_lse, [("state", pll.state, s), ("batch", pll.batch, b), ("head", pll.head, h)], t).check(false)?;
    let out = Tensor::rows("out", bufs.out, dtype, [("batch", l.out.batch, b), ("seq", l.out.seq, t), ("head", l.out.head, h)], d).check(true)?;
    let lse = bufs.lse.map(|buf| Tensor::lse("lse", buf, [("batch", l.lse.batch, b), ("head", l.lse.head, h)], t).check(true)).transpose()?;

    let mut spans = vec![po.span, pl.span, out.span];
    spans.extend(lse.as_ref().map(|c| c.span));
    check_disjoint(&spans)?;

    let [po_state, po_batch, po_seq, po_head] = po.strides;
    let [pl_state, pl_batch, pl_head] = pl.strides;
    let [out_batch, out_seq, out_head] = out.strides;
    let (lse, [lse_batch, lse_head]) = lse.map_or((0, [0, 0]), |c| (c.span.addr, c.strides));
    Ok(MergeParams {
        partial_out: bufs.partial_out.addr,
        partial_lse: bufs.partial_lse.addr,
        out: bufs.out.addr,
        lse,
        po_state,
        po_batch,
        po_seq,
        po_head,
        pl_state,
        pl_batch,
        pl_head,
        out_batch,
        out_seq,
        out_head,
        lse_batch,
        lse_head,
        states: to_i32("states", s)?,
        batch: to_i32("batch", b)?,
        seq: to_i32("seq", t)?,
        heads: to_i32("heads", h)?,
        head_dim: to_i32("head_dim", d)?,
        pad0: 0,
    })
}

/// Validates an in-place merge and returns its params struct.
pub fn params_in_place(shape: &MergeShape, dtype: impl Into<MergeDtype>, bufs: &InPlaceBuffers) -> Result<MergeInPlaceParams> {
    let dtype = dtype.into();
    if shape.states() != 2 {
        return Err(Error::InvalidParameter {
            name: "states",
            reason: format!("the in-place merge combines exactly 2 states (v and v_other), the shape has {}", shape.states()),
        });
    }
    let [b, t, h, d] = [shape.batch(), shape.seq(), shape.heads(), shape.head_dim()];
    let l = &bufs.layouts;
    let rows = |layout: &RowLayout| [("batch", layout.batch, b), ("seq", layout.seq, t), ("head", layout.head, h)];
    let lses = |layout: &LseLayout| [("batch", layout.batch, b), ("head", layout.head, h)];
    let v = Tensor::rows("v", bufs.v, dtype, rows(&l.v), d).check(true)?;
    let lse = Tensor::lse("lse", bufs.lse, lses(&l.lse), t).check(true)?;
    let vo = Tensor::rows("v_other", bufs.v_other, dtype, rows(&l.v_other), d).check(false)?;
    let lo = Tensor::lse("lse_other", bufs.lse_other, lses(&l.lse_other), t).check(false)?;
    check_disjoint(&[v.span, lse.span, vo.span, lo.span])?;
    let [v_batch, v_seq, v_head] = v.strides;
    let [lse_batch, lse_head] = lse.strides;
    let [v_other_batch, v_other_seq, v_other_head] = vo.strides;
    let [lse_other_batch, lse_other_head] = lo.strides;
    Ok(MergeInPlaceParams {
        v: v.span.addr,
        lse: lse.span.addr,
        v_other: vo.span.addr,
        lse_other: lo.span.addr,
        v_batch,
        v_seq,
        v_head,
        lse_batch,
        lse_head,
        v_other_batch,
        v_other_seq,
        v_other_head,
        lse_other_batch,
        lse_other_head,
        batch: to_i32("batch", b)?,
        seq: to_i32("seq", t)?,
        heads: to_i32("heads", h)?,
        head_dim: to_i32("head_dim", d)?,
    })
}

/// One tensor as the kernels address it: `inner` contiguous elements (a row's head_dim, or
/// an LSE's tokens) at every combination of the strided `dims` (name, stride, extent).
struct Tensor<const N: usize> {
    name: &'static str,
    buf: DeviceBuffer,
    elem_bytes: u64,
    /// The alignment the kernel's accesses need, in bytes: of the base address, and of
    /// every stepped stride.
    align: u64,
    dims: [(&'static str, i64, usize); N],
    inner: usize,
}

/// The bytes a tensor's accesses cover, for the overlap checks.
#[derive(Clone, Copy)]
struct Span {
    name: &'static str,
    addr: u64,
    end: u64,
    written: bool,
}

/// A validated tensor: its byte span and the strides to pass (0 for a dimension of extent
/// 1, which is never stepped, whatever the caller gave).
struct Checked<const N: usize> {
    span: Span,
    strides: [i64; N],
}

impl<const N: usize> Tensor<N> {
    /// Rows of `dtype` read or written four elements at a time.
    fn rows(name: &'static str, buf: DeviceBuffer, dtype: MergeDtype, dims: [(&'static str, i64, usize); N], head_dim: usize) -> Self {
        let elem_bytes = dtype.size_bytes() as u64;
        Self { name, buf, elem_bytes, align: HEAD_DIM_MULTIPLE as u64 * elem_bytes, dims, inner: head_dim }
    }

    /// f32 rows read four elements (16 bytes) at a time.
    fn f32_rows(name: &'static str, buf: DeviceBuffer, dims: [(&'static str, i64, usize); N], head_dim: usize) -> Self {
        Self::rows(name, buf, MergeDtype::F32, dims, head_dim)
    }

    /// An f32 LSE with contiguous tokens, read or written one float at a time.
    fn lse(name: &'static str, buf: DeviceBuffer, dims: [(&'static str, i64, usize); N], seq: usize) -> Self {
        Self { name, buf, elem_bytes: 4, align: 4, dims, inner: seq }
    }

    /// Checks the address, the strides against the buffer's length and alignment and, for
    /// an output, that no two of its elements share an address.
    fn check(&self, written: bool) -> Result<Checked<N>> {
        let name = self.name;
        let addr = self.buf.addr;
        if addr == 0 || !addr.is_multiple_of(self.align) {
            return Err(Error::InvalidParameter {
                name,
                reason: format!("device address {addr:#x} is null or not {}-byte aligned (the merge kernels access it {} bytes at a time)", self.align, self.align),
            });
        }
        let align_elems = (self.align / self.elem_bytes) as i64;
        // The largest offset reached, in i128: no stride or extent can overflow it.
        let mut last = self.inner as i128 - 1;
        let mut strides = [0i64; N];
        for (k, &(dim, stride, extent)) in self.dims.iter().enumerate() {
            if extent <= 1 {
                continue;
            }
            if stride < 0 {
                return Err(Error::InvalidStrides {
                    tensor: name,
                    reason: format!("{dim} stride {stride} is negative: every element must lie at or after element 0 of the buffer"),
                });
            }
            if stride % align_elems != 0 {
                return Err(Error::InvalidStrides {
                    tensor: name,
                    reason: format!("{dim} stride {stride} is not a multiple of {align_elems} elements, so rows would not be {}-byte aligned", self.align),
                });
            }
            last += stride as i128 * (extent as i128 - 1);
            strides[k] = stride;
        }
        let needed = last + 1;
        let bytes = needed * self.elem_bytes as i128;
        // Offsets are int64 element counts on the device, and the byte span must not wrap.
        let end = u64::try_from(bytes).ok().filter(|&b| b <= i64::MAX as u64).and_then(|b| addr.checked_add(b));
        let Some(end) = end else {
            return Err(Error::InvalidStrides { tensor: name, reason: format!("the strides address {needed} elements, past the 64-bit address space") });
        };
        let needed = needed as usize; // <= i64::MAX, checked above
        if needed > self.buf.len {
            return Err(Error::BufferTooSmall { tensor: name, needed, len: self.buf.len });
        }
        if written {
            self.check_no_overlap()?;
        }
        Ok(Checked { span: Span { name, addr, end, written }, strides })
    }

    /// Sorting the strided dimensions by stride, each must step past everything the smaller
    /// ones (and the contiguous inner run) span; otherwise two elements would share an
    /// address and the warps writing them would race.
    fn check_no_overlap(&self) -> Result<()> {
        let mut dims: Vec<_> = self.dims.iter().filter(|&&(_, _, extent)| extent > 1).collect();
        dims.sort_by_key(|&&(_, stride, _)| stride);
        let mut covered = self.inner as i128;
        for &&(dim, stride, extent) in &dims {
            if (stride as i128) < covered {
                return Err(Error::InvalidStrides {
                    tensor: self.name,
                    reason: format!("{dim} stride {stride} is smaller than the {covered} elements it must step over, so elements of the output overlap"),
                });
            }
            covered += stride as i128 * (extent as i128 - 1);
        }
        Ok(())
    }
}

/// No written tensor may overlap another tensor: the kernels read and write them from
/// different warps in no particular order.
fn check_disjoint(spans: &[Span]) -> Result<()> {
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if (a.written || b.written) && a.addr < b.end && b.addr < a.end {
                let (w, other) = if a.written { (a, b) } else { (b, a) };
                return Err(Error::InvalidParameter {
                    name: w.name,
                    reason: format!("the `{}` buffer overlaps the `{}` buffer; a tensor the merge writes must not alias another", w.name, other.name),
                });
            }
        }
    }
    Ok(())
}
