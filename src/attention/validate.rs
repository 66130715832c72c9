//! Checks everything about a launch that the host can know, then fills the params struct.
//!
//! The kernels trust the sizes and addresses in [`AttnParams`] (they index with them), so
//! every one is checked here: shapes, strides and buffer sizes, 16-byte row alignment for
//! cp.async, the LSE buffer, and the descriptor's dimensions against the problem. Index
//! VALUES live on the device and are not read here; the kernels skip bad ones.

use super::args::{AttnBuffers, DeviceBuffer, SourceBuffers};
use super::kernels::SUPPORTED_HEAD_DIMS;
use crate::error::{Error, Result};
use crate::params::{AttnParams, AttnTensorParams};
use crate::pattern::vertical_slash::require_causal;
use crate::pattern::{BLOCK_M, BLOCK_N};
use crate::shape::{AttnOptions, AttnShape, Bshd};

/// Bytes per q/k/v/out element (f16 and bf16 alike).
const ELEM_BYTES: u64 = 2;
/// cp.async copies 16 bytes, so every row must start on a 16-byte boundary.
const ROW_ALIGN_BYTES: u64 = 16;
const ROW_ALIGN_ELEMS: usize = (ROW_ALIGN_BYTES / ELEM_BYTES) as usize;

/// Validates a launch and returns its params struct (kernel-independent: the same struct
/// serves every dtype and head_dim instantiation of the source's pattern).
pub fn attn_params(shape: &AttnShape, opts: &AttnOptions, bufs: &AttnBuffers, source: &SourceBuffers) -> Result<AttnParams> {
    let dense = check_dense(shape, opts, bufs)?;
    let mut p = AttnParams {
        tensors: dense.tensors,
        // AttnShape::validate bounds every dimension by i32::MAX.
        batch: shape.batch as i32,
        seq_q: shape.seq_q as i32,
        seq_k: shape.seq_k as i32,
        heads_q: shape.heads_q as i32,
        heads_kv: shape.heads_kv as i32,
        row_blocks: shape.seq_q.div_ceil(BLOCK_M) as i32,
        causal: i32::from(opts.causal),
        softmax_scale: dense.scale,
        scale_log2: dense.scale * std::f32::consts::LOG2_E,
        ..AttnParams::default()
    };
    fill_source(&mut p, shape, opts, source)?;
    Ok(p)
}

/// What [`check_dense`] derives from the q/k/v/out/LSE arguments.
pub(crate) struct DenseArgs {
    /// The validated softmax scale.
    pub scale: f32,
    /// Addresses (LSE 0 when not wanted) and batch, seq and head strides of q, k, v and
    /// out, as every attention kernel takes them.
    pub tensors: AttnTensorParams,
}

/// The checks every attention kernel shares: shape, head_dim, scale, the four BSHD
/// tensors (sizes, strides, 16-byte rows, no aliasing of outputs) and the LSE buffer.
pub(crate) fn check_dense(shape: &AttnShape, opts: &AttnOptions, bufs: &AttnBuffers) -> Result<DenseArgs> {
    shape.validate()?;
    if !SUPPORTED_HEAD_DIMS.contains(&shape.head_dim) {
        return Err(Error::UnsupportedHeadDim { head_dim: shape.head_dim, supported: SUPPORTED_HEAD_DIMS });
    }
    let scale = opts.scale(shape.head_dim)?;
    // The kernels' softmax runs in exp2 with `scale * log2(e)`; that must be finite too.
    if !(scale * std::f32::consts::LOG2_E).is_finite() {
        return Err(Error::InvalidSoftmaxScale { value: scale });
    }
    let q_dims = [shape.batch, shape.seq_q, shape.heads_q, shape.head_dim];
    let kv_dims = [shape.batch, shape.seq_k, shape.heads_kv, shape.head_dim];
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
    let row = |layout: &Bshd, seq: usize, heads: usize| {
        [stride(layout.batch, shape.batch), stride(layout.seq, seq), stride(layout.head, heads)]
    };
    let (sq, sk, hq, hk) = (shape.seq_q, shape.seq_k, shape.heads_q, shape.heads_kv);
    let [q_batch_stride, q_seq_stride, q_head_stride] = row(&l.q, sq, hq);
    let [k_batch_stride, k_seq_stride, k_head_stride] = row(&l.k, sk, hk);
    let [v_batch_stride, v_seq_stride, v_head_stride] = row(&l.v, sk, hk);
    let [out_batch_stride, out_seq_stride, out_head_stride] = row(&l.out, sq, hq);
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
    };
    Ok(DenseArgs { scale, tensors })
}

/// Elements from the first to one past the last addressed element (after `Bshd::validate`,
/// so nothing overflows).
fn span_elems(layout: &Bshd, dims: [usize; 4]) -> usize {
    let [b, s, h, d] = dims;
    d + layout.batch * (b - 1) + layout.seq * (s - 1) + layout.head * (h - 1)
}

/// Every row (b, s, h) must start 16-byte aligned: the base address, and each stride of a
/// dimension that has more than one entry, in whole multiples of 8 elements.
fn check_row_alignment(tensor: &'static str, buf: DeviceBuffer, layout: &Bshd, dims: [usize; 4]) -> Result<()> {
    if buf.addr == 0 {
        return Err(Error::InvalidParameter { name: tensor, reason: "device address is null".into() });
    }
    if buf.addr % ROW_ALIGN_BYTES != 0 {
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

pub(crate) fn to_i32(dim: &'static str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: i32::MAX as usize })
}

/// An i32 index tensor: at least `needed` entries, and a non-null 4-byte-aligned address
/// when anything is read from it.
pub(crate) fn check_index(tensor: &'static str, buf: DeviceBuffer, needed: usize) -> Result<u64> {
    if buf.len < needed {
        return Err(Error::BufferTooSmall { tensor, needed, len: buf.len });
    }
    if needed > 0 && (buf.addr == 0 || buf.addr % 4 != 0) {
        return Err(Error::InvalidParameter { name: tensor, reason: format!("device address {:#x} is null or not 4-byte aligned", buf.addr) });
    }
    Ok(buf.addr)
}

/// Batch, descriptor heads and row blocks of a descriptor against the problem.
fn check_desc_dims(kind: &str, shape: &AttnShape, batch: usize, heads: usize, row_blocks: usize) -> Result<()> {
    let want_rows = shape.seq_q.div_ceil(BLOCK_M);
    let problem = if batch != shape.batch {
        Some(format!("{kind} descriptor has batch {batch}, the problem has batch {}", shape.batch))
    } else if heads != shape.heads_q && heads != shape.heads_kv {
        Some(format!("{kind} descriptor has {heads} heads; it must have heads_q ({}) or heads_kv ({})", shape.heads_q, shape.heads_kv))
    } else if row_blocks != want_rows {
        Some(format!("{kind} descriptor has {row_blocks} row blocks; seq_q = {} needs ceil({}/{BLOCK_M}) = {want_rows}", shape.seq_q, shape.seq_q))
    } else {
        None
    };
    match problem {
        Some(reason) => Err(Error::DescriptorMismatch { reason }),
        None => Ok(()),
    }
}

/// Checked product of descriptor dimensions (they are caller-provided and may be absurd).
pub(crate) fn elems(tensor: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(Error::InvalidParameter {
        name: tensor,
        reason: format!("dimensions {dims:?} overflow usize"),
    })
}

fn fill_source(p: &mut AttnParams, shape: &AttnShape, opts: &AttnOptions, source: &SourceBuffers) -> Result<()> {
    // Tiles are BLOCK_N keys wide in every kernel; the descriptors agree (pattern::BLOCK_N).
    const _: () = assert!(BLOCK_N == 64 && BLOCK_M == 64);
    match *source {
        SourceBuffers::Dense => Ok(()),
        SourceBuffers::BlockSparse { dims: [batch, heads, row_blocks, max_blocks], block_count, block_index } => {
            check_desc_dims("block-sparse", shape, batch, heads, row_blocks)?;
            p.block_count = check_index("block_count", block_count, elems("block_count", &[batch, heads, row_blocks])?)?;
            p.block_index = check_index("block_index", block_index, elems("block_index", &[batch, heads, row_blocks, max_blocks])?)?;
            p.desc_heads = to_i32("heads", heads)?;
            p.max_blocks = to_i32("max_blocks", max_blocks)?;
            Ok(())
        }
        SourceBuffers::VerticalSlash { dims, block_count, block_offset, column_count, column_index } => {
            require_causal(opts.causal)?;
            check_desc_dims("vertical-slash", shape, dims.batch, dims.heads, dims.row_blocks)?;
            let rows = elems("block_count", &[dims.batch, dims.heads, dims.row_blocks])?;
            p.block_count = check_index("block_count", block_count, rows)?;
            p.block_index = check_index("block_offset", block_offset, elems("block_offset", &[rows, dims.nnz_s])?)?;
            p.column_count = check_index("column_count", column_count, rows)?;
            p.column_index = check_index("column_index", column_index, elems("column_index", &[rows, dims.nnz_v])?)?;
            p.desc_heads = to_i32("heads", dims.heads)?;
            p.max_blocks = to_i32("nnz_s", dims.nnz_s)?;
            p.max_columns = to_i32("nnz_v", dims.nnz_v)?;
            Ok(())
        }
    }
}
