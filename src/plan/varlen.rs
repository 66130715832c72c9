//! Varlen (packed) launches: a batch of sequences of their own lengths, packed as rows of
//! q / out `[total_q, heads_q, head_dim]` and k / v `[total_k, heads_kv, head_dim]`,
//! delimited by `cu_seqlens_q` / `cu_seqlens_k` (i32, `batch + 1` entries, on the device),
//! as FlashAttention's `flash_attn_varlen_func` and vLLM take them.
//!
//! Every source runs varlen: dense, block-sparse (A-shape through
//! `AShape::to_block_sparse_varlen`), vertical-slash (its index converted per sequence by
//! `pattern::vs_convert::convert_varlen` on the host, or [`super::vs_convert::plan_varlen`] on
//! the device) and top-k.
//!
//! The problem's [`AttnShape`] holds the batch and the longest sequences
//! (`max_seqlen_q`, `max_seqlen_k`), which size the grid and the index tensors' row blocks.
//! The LSE is `[heads_q, total_q]` (f32). Causal masks are bottom-right per sequence.
//!
//! The device's `cu_seqlens` are never read back: the kernels run a sequence whose bounds
//! are not `0 <= start <= end <= total` (or whose query length exceeds `max_seqlen_q`) as
//! empty. When the caller passes the host copy too ([`VarlenBuffers::host`]), the host
//! checks it against the rest before the launch.

use super::buffers::{AttnBuffers, DeviceBuffer};
use super::tensors::check_dense;
use super::{prefill, topk_attention, LaunchPlan};
use crate::checked::to_i32;
use crate::error::{Error, Result};
use crate::shape::{AttnOptions, AttnShape, DType, Varlen};
use crate::source::Source;

/// The sequence boundaries of a varlen launch.
#[derive(Debug, Clone, Copy)]
pub struct VarlenBuffers<'a> {
    /// i32 `cu_seqlens_q [batch + 1]` on the device: sequence `b`'s query rows are
    /// `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]`.
    pub cu_seqlens_q: DeviceBuffer,
    /// i32 `cu_seqlens_k [batch + 1]` on the device, the same for keys.
    pub cu_seqlens_k: DeviceBuffer,
    /// Packed query rows (`cu_seqlens_q[batch]`): q and out hold `total_q` rows.
    pub total_q: usize,
    /// Packed key rows: k and v hold `total_k` rows.
    pub total_k: usize,
    /// The same boundaries on the host, when the caller has them: checked against the
    /// totals, the batch and the longest lengths before the launch.
    pub host: Option<&'a Varlen>,
}

/// The packed tensors' own shape: one "batch entry" of `total` rows.
fn packed_shape(shape: &AttnShape, varlen: &VarlenBuffers) -> Result<AttnShape> {
    let zero = |dim| Error::ZeroDimension { dim };
    if varlen.total_q == 0 {
        return Err(zero("total_q"));
    }
    if varlen.total_k == 0 {
        return Err(zero("total_k"));
    }
    AttnShape::new(1, varlen.total_q, varlen.total_k, shape.heads_q(), shape.heads_kv(), shape.head_dim())
}

/// The host copy against the launch: same batch, the packed totals, and no sequence longer
/// than the shape's longest.
pub(super) fn check_host(shape: &AttnShape, varlen: &VarlenBuffers) -> Result<()> {
    let Some(host) = varlen.host else { return Ok(()) };
    check_host_queries(shape, host, varlen.total_q)?;
    if host.total_k() != varlen.total_k {
        return Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_k", reason: format!("ends at {}, but total_k is {}", host.total_k(), varlen.total_k) });
    }
    for b in 0..host.batch() {
        let (_, k) = host.seqlens(b);
        if k > shape.seq_k() {
            return Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_k", reason: format!("sequence {b} has {k} keys, more than max_seqlen_k = {}", shape.seq_k()) });
        }
    }
    Ok(())
}

/// The host's `cu_seqlens_q` against a varlen or paged launch: the shape's batch, ending at
/// `total_q`, no sequence longer than max_seqlen_q.
pub(super) fn check_host_queries(shape: &AttnShape, host: &Varlen, total_q: usize) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_q", reason });
    if host.batch() != shape.batch() {
        return bad(format!("describes {} sequences, the shape's batch is {}", host.batch(), shape.batch()));
    }
    if host.total_q() != total_q {
        return bad(format!("ends at {}, but total_q is {}", host.total_q(), total_q));
    }
    for b in 0..host.batch() {
        let (q, _) = host.seqlens(b);
        if q > shape.seq_q() {
            return bad(format!("sequence {b} has {q} query rows, more than max_seqlen_q = {}", shape.seq_q()));
        }
    }
    Ok(())
}

/// Plans a varlen attention launch after validating it: `shape` is (batch, max_seqlen_q,
/// max_seqlen_k, heads_q, heads_kv, head_dim); `bufs` are the packed tensors (their
/// layouts' batch strides are unused), the LSE `[heads_q, total_q]`. Block-sparse and
/// vertical-slash index tensors have the shape's batch and row blocks (built per sequence:
/// [`crate::pattern::AShape::to_block_sparse_varlen`],
/// [`crate::pattern::vs_convert::convert_varlen`]); top-k indices are packed like q,
/// `[total_q, heads_kv, k]` (dims batch 1, seq_q total_q).
pub fn attention_varlen(
    shape: &AttnShape,
    varlen: &VarlenBuffers,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    source: &Source<DeviceBuffer>,
) -> Result<LaunchPlan> {
    check_host(shape, varlen)?;
    let packed = packed_shape(shape, varlen)?;
    let mut dense = check_dense(&packed, dtype, opts, bufs)?;
    let entries = shape.batch() + 1;
    let t = &mut dense.tensors;
    t.cu_seqlens_q = varlen.cu_seqlens_q.index_addr("cu_seqlens_q", entries)?;
    t.cu_seqlens_k = varlen.cu_seqlens_k.index_addr("cu_seqlens_k", entries)?;
    t.total_q = to_i32("total_q", varlen.total_q)?;
    t.total_k = to_i32("total_k", varlen.total_k)?;
    // [heads_q, total_q]: a sequence's rows start at its cu_seqlens_q entry (the kernel
    // adds it), not at a batch stride.
    t.lse_batch_stride = 0;
    t.lse_head_stride = varlen.total_q as i64;
    match source {
        Source::TopK(index) => topk_attention::plan_packed(shape, dtype, dense, opts, index, varlen.total_q, "_varlen"),
        _ => prefill::plan_form(shape, dtype, dense, opts, source, "_varlen"),
    }
}
