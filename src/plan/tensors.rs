//! The checks every attention kernel shares on its dense tensors (q, k, v, out, LSE), and
//! the [`AttnTensorParams`] they fill.
//!
//! The kernels trust the sizes and addresses in the params (they index with them), so every
//! one is checked here: head_dim, scale, strides and buffer sizes, 16-byte row alignment for
//! cp.async, the LSE buffer, and that no output aliases another tensor.

use super::buffers::{AttnBuffers, DeviceBuffer};
use crate::error::{Error, Result};
use crate::params::{AttnTensorParams, HEAD_DIMS};
use crate::shape::{AttnOptions, AttnShape, Bshd, DType};

/// Bytes per q/k/v/out element (f16 and bf16 alike).
const ELEM_BYTES: u64 = 2;
/// cp.async copies 16 bytes, so every row must start on a 16-byte boundary.
const ROW_ALIGN_BYTES: u64 = 16;
const ROW_ALIGN_ELEMS: usize = (ROW_ALIGN_BYTES / ELEM_BYTES) as usize;

/// What [`check_dense`] derives from the q/k/v/out/LSE arguments.
pub(crate) struct DenseArgs {
    /// What the kernels' softmax multiplies their scores by: the validated softmax scale, or
    /// under a softcap the cap (their scores are then `tanh(scale * q.k / cap)`, whose logits
    /// are `cap` times them; the sinks are divided by it too).
    pub scale: f32,
    /// `scale * log2(e)`, what the kernels' exp2-based softmax multiplies scores by.
    pub scale_log2: f32,
    /// Addresses (LSE 0 when not wanted) and batch, seq and head strides of q, k, v and
    /// out, as every attention kernel takes them.
    pub tensors: AttnTensorParams,
}

/// The checks every attention kernel shares: shape, head_dim, scale, the four BSHD
/// tensors (sizes, strides, 16-byte rows, no aliasing of outputs) and the LSE buffer.
pub(crate) fn check_dense(shape: &AttnShape, dtype: DType, opts: &AttnOptions, bufs: &AttnBuffers) -> Result<DenseArgs> {
    check_tensors(shape, [shape.batch(), shape.seq_k()], dtype, opts, bufs)
}

/// [`check_dense`] with k and v of `kv_rows` = [outer, rows] rows of `heads_kv x head_dim`:
/// a padded batch's `[batch, seq_k]`, or a page cache's `[num_pages, page_size]` (the
/// layouts' batch stride is then the page stride).
pub(crate) fn check_tensors(shape: &AttnShape, kv_rows: [usize; 2], dtype: DType, opts: &AttnOptions, bufs: &AttnBuffers) -> Result<DenseArgs> {
    if !HEAD_DIMS.contains(&shape.head_dim()) {
        return Err(Error::UnsupportedHeadDim { head_dim: shape.head_dim(), supported: HEAD_DIMS });
    }
    // In `kernel_scale_range`: scale_log2 is a normal f32 and no finite input's scaled
    // score overflows (see there).
    let scale = opts.kernel_scale(shape.head_dim(), dtype)?;
    let q_dims = [shape.batch(), shape.seq_q(), shape.heads_q(), shape.head_dim()];
    let kv_dims = [kv_rows[0], kv_rows[1], shape.heads_kv(), shape.head_dim()];
    let l = &bufs.layouts;
    let tensors = [("q", bufs.q, l.q, q_dims, false), ("k", bufs.k, l.k, kv_dims, false), ("v", bufs.v, l.v, kv_dims, false), ("out", bufs.out, l.out, q_dims, true)];
    let mut spans = Vec::with_capacity(5);
    for (name, buf, layout, dims, is_output) in tensors {
        layout.validate(name, dims, buf.len, is_output)?;
        check_row_alignment(name, buf, &layout, dims)?;
        // The kernels take strides and compute byte offsets as 64-bit integers: the span
        // (which bounds every stride that is stepped) must fit in i64 bytes. `buf.len` is
        // the caller's word, so `Bshd::validate` alone does not bound it.
        let bytes = (span_elems(&layout, dims) as u64).checked_mul(ELEM_BYTES).filter(|&b| b <= i64::MAX as u64);
        let Some(bytes) = bytes else {
            return Err(Error::InvalidStrides { tensor: name, reason: format!("the strides address more than {} bytes", i64::MAX) });
        };
        spans.push((name, buf.addr, bytes));
    }
    let lse = check_lse(shape, opts, bufs.lse)?;
    if let Some(lse) = bufs.lse.filter(|_| lse != 0) {
        spans.push(("lse", lse.addr, shape.lse_len() as u64 * 4));
    }
    check_outputs_disjoint(&spans)?;

    // A dimension of extent 1 is never stepped, so its stride (unbounded by validation) is
    // passed as 0; the others are bounded by the validated span.
    let stride = |s: usize, extent: usize| if extent > 1 { s as i64 } else { 0 };
    let row = |layout: &Bshd, dims: [usize; 4]| [stride(layout.batch, dims[0]), stride(layout.seq, dims[1]), stride(layout.head, dims[2])];
    let [q_batch_stride, q_seq_stride, q_head_stride] = row(&l.q, q_dims);
    let [k_batch_stride, k_seq_stride, k_head_stride] = row(&l.k, kv_dims);
    let [v_batch_stride, v_seq_stride, v_head_stride] = row(&l.v, kv_dims);
    let [out_batch_stride, out_seq_stride, out_head_stride] = row(&l.out, q_dims);
    let tensors = AttnTensorParams {
        q: bufs.q.addr,
        k: bufs.k.addr,
        v: bufs.v.addr,
        out: bufs.out.addr,
        lse,
        q_batch_stride, q_seq_stride, q_head_stride,
        k_batch_stride, k_seq_stride, k_head_stride,
        v_batch_stride, v_seq_stride, v_head_stride,
        out_batch_stride, out_seq_stride, out_head_stride,
        // [batch, heads_q, seq_q], packed.
        lse_batch_stride: (shape.heads_q() * shape.seq_q()) as i64,
        lse_head_stride: shape.seq_q() as i64,
        ..AttnTensorParams::default()
    };
    let tensors = with_score_options(tensors, shape, scale, opts, bufs.sinks)?;
    let scale = opts.checked_softcap()?.unwrap_or(scale);
    Ok(DenseArgs { scale, scale_log2: scale * std::f32::consts::LOG2_E, tensors })
}

/// Writes the window, softcap and sinks of `opts` / `sinks` into `tensors` (README,
/// "Softcap, sliding window and sinks"): the sinks buffer must hold `heads_q` f32 values at
/// a non-null 4-byte-aligned address.
fn with_score_options(mut tensors: AttnTensorParams, shape: &AttnShape, scale: f32, opts: &AttnOptions, sinks: Option<DeviceBuffer>) -> Result<AttnTensorParams> {
    tensors.window_left = opts.checked_window_left()?;
    if let Some(cap) = opts.checked_softcap()? {
        // The softmax then runs at scale `cap` (check_tensors): cap * log2(e) must be a normal
        // f32 like any scale_log2 (kernel_scale_range), and so must scale / cap.
        tensors.softcap_in = scale / cap;
        if !(tensors.softcap_in.is_normal() && (cap * std::f32::consts::LOG2_E).is_normal()) {
            return Err(Error::InvalidParameter {
                name: "softcap",
                reason: format!("{cap} at softmax scale {scale} puts scale / cap or cap * log2(e) outside the normal f32 range"),
            });
        }
    }
    if let Some(buf) = sinks {
        if buf.len < shape.heads_q() {
            return Err(Error::BufferTooSmall { tensor: "sinks", needed: shape.heads_q(), len: buf.len });
        }
        if buf.addr == 0 || buf.addr % 4 != 0 {
            return Err(Error::InvalidParameter { name: "sinks", reason: format!("device address {:#x} is null or not 4-byte aligned", buf.addr) });
        }
        tensors.sinks = buf.addr;
    }
    Ok(tensors)
}

/// Whether a launch needs the `_opt` kernel variant: a window, a softcap or sinks.
pub(crate) fn uses_score_options(tensors: &AttnTensorParams) -> bool {
    tensors.window_left >= 0 || tensors.softcap_in != 0.0 || tensors.sinks != 0
}

/// The kernel-name infix of a launch: `form` (`_varlen`, `_paged` or empty), then `_opt`
/// when the launch uses a score option, whose code only the `_opt` variants carry (so the
/// plain kernels' inner loops are exactly those without options).
pub(crate) fn with_opt(form: &str, tensors: &AttnTensorParams) -> String {
    if uses_score_options(tensors) {
        format!("{form}_opt")
    } else {
        form.to_string()
    }
}

/// Elements from the first to one past the last addressed element (after `Bshd::validate`,
/// so nothing overflows).
pub(super) fn span_elems(layout: &Bshd, dims: [usize; 4]) -> usize {
    let [b, s, h, d] = dims;
    d + layout.batch * (b - 1) + layout.seq * (s - 1) + layout.head * (h - 1)
}

/// Every row (b, s, h) must start 16-byte aligned: the base address, and each stride of a
/// dimension that has more than one entry, in whole multiples of 8 elements.
pub(super) fn check_row_alignment(tensor: &'static str, buf: DeviceBuffer, layout: &Bshd, dims: [usize; 4]) -> Result<()> {
    if buf.addr == 0 {
        return Err(Error::InvalidParameter { name: tensor, reason: "device address is null".into() });
    }
    if !buf.addr.is_multiple_of(ROW_ALIGN_BYTES) {
        return Err(Error::InvalidParameter {
            name: tensor,
            reason: format!("device address {:#x} is not {ROW_ALIGN_BYTES}-byte aligned (the kernels load rows with 16-byte cp.async)", buf.addr),
        });
    }
    for (name, stride, extent) in [("batch", layout.batch, dims[0]), ("seq", layout.seq, dims[1]), ("head", layout.head, dims[2])] {
        if extent > 1 && stride % ROW_ALIGN_ELEMS != 0 {
            return Err(Error::InvalidStrides {
                tensor,
                reason: format!("{name} stride {stride} is not a multiple of {ROW_ALIGN_ELEMS} elements, so rows would not be 16-byte aligned for cp.async"),
            });
        }
    }
    Ok(())
}

/// The LSE address to pass (0 = none): a buffer must be given exactly when the options ask
/// for the LSE, hold `batch * heads_q * seq_q` f32 values and be 4-byte aligned.
fn check_lse(shape: &AttnShape, opts: &AttnOptions, lse: Option<DeviceBuffer>) -> Result<u64> {
    match (opts.return_lse, lse) {
        (false, None) => Ok(0),
        (true, None) => Err(Error::InvalidParameter { name: "lse", reason: "options.return_lse is set but no LSE buffer was given".into() }),
        (false, Some(_)) => Err(Error::InvalidParameter { name: "lse", reason: "an LSE buffer was given but options.return_lse is not set".into() }),
        (true, Some(buf)) => {
            let needed = shape.lse_len();
            if buf.len < needed {
                return Err(Error::BufferTooSmall { tensor: "lse", needed, len: buf.len });
            }
            if buf.addr == 0 || buf.addr % 4 != 0 {
                return Err(Error::InvalidParameter { name: "lse", reason: format!("device address {:#x} is null or not 4-byte aligned", buf.addr) });
            }
            Ok(buf.addr)
        }
    }
}

/// The output and LSE are written while q, k, v are read by other CTAs: any overlap of an
/// output with another tensor would make the result depend on scheduling.
fn check_outputs_disjoint(spans: &[(&'static str, u64, u64)]) -> Result<()> {
    for (i, &(a, a_addr, a_len)) in spans.iter().enumerate() {
        for &(b, b_addr, b_len) in &spans[i + 1..] {
            let writes = a == "out" || a == "lse" || b == "out" || b == "lse";
            let overlap = a_addr < b_addr.saturating_add(b_len) && b_addr < a_addr.saturating_add(a_len);
            if writes && overlap {
                return Err(Error::InvalidParameter {
                    name: if a == "out" || a == "lse" { a } else { b },
                    reason: format!("the `{a}` buffer overlaps the `{b}` buffer; outputs must not alias any other tensor"),
                });
            }
        }
    }
    Ok(())
}
