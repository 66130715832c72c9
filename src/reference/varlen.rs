//! Varlen (packed) reference attention: each sequence of the batch attends within itself,
//! with its own lengths and its own bottom-right causal diagonal.
//!
//! The packed tensors are unpacked into a padded problem of the longest lengths, the one
//! row loop runs there with each row's keys cut at its sequence's lengths, and the results
//! are packed back: out like q `[total_q, heads_q, head_dim]`, the LSE `[heads_q, total_q]`.

use super::core::{attend_rows_with, RefOutput, ScoreRule};
use crate::error::Result;
use crate::inputs::RefInputs;
use crate::error::Error;
use crate::pattern::{BlockSparse, TopkTokens, BLOCK_M, BLOCK_N};
use crate::source::VsIndex;
use crate::shape::{check_len, AttnDtype, AttnOptions, AttnShape, Varlen};

/// Packed q `[total_q, heads_q, head_dim]`, k and v `[total_k, heads_kv, head_dim]`,
/// widened to f64, with their sequences; `shape` is (batch, longest query and key
/// sequence, heads_q, heads_kv, head_dim).
#[derive(Debug, Clone)]
pub struct VarlenInputs {
    /// Batch and the longest sequences.
    pub shape: AttnShape,
    /// The sequences' boundaries.
    pub varlen: Varlen,
    /// Packed queries.
    pub q: Vec<f64>,
    /// Packed keys.
    pub k: Vec<f64>,
    /// Packed values.
    pub v: Vec<f64>,
    /// Attention sinks, one logit per query head; `None` = none.
    pub sinks: Option<Vec<f64>>,
}

impl VarlenInputs {
    /// Widens packed tensors of the kernels' storage type, checking their lengths.
    pub fn new<T: AttnDtype>(shape: AttnShape, varlen: Varlen, q: &[T], k: &[T], v: &[T]) -> Result<Self> {
        let (d, hq, hk) = (shape.head_dim(), shape.heads_q(), shape.heads_kv());
        check_len("q", q.len(), &[varlen.total_q(), hq, d])?;
        check_len("k", k.len(), &[varlen.total_k(), hk, d])?;
        check_len("v", v.len(), &[varlen.total_k(), hk, d])?;
        let widen = |x: &[T]| x.iter().map(|e| e.to_f64()).collect::<Vec<_>>();
        Ok(Self { shape, varlen, q: widen(q), k: widen(k), v: widen(v), sinks: None })
    }

    /// The same inputs with per-head attention sinks (`[heads_q]` logits).
    pub fn with_sinks(self, sinks: &[f32]) -> Self {
        Self { sinks: Some(sinks.iter().map(|&s| f64::from(s)).collect()), ..self }
    }
}

/// Packed reference results: `out` like q, `lse` `[heads_q, total_q]` (natural log, -inf
/// for a row that sees no key).
#[derive(Debug, Clone, PartialEq)]
pub struct VarlenOutput {
    /// Packed output `[total_q, heads_q, head_dim]`.
    pub out: Vec<f64>,
    /// `[heads_q, total_q]`.
    pub lse: Vec<f64>,
}

/// Varlen attention where row `i` of query head `h` in sequence `b` attends the keys
/// `keys(b, h, i, seq_q_b, seq_k_b, &mut list)` pushes, each below seq_k_b (its
/// sequence's lengths; `i < seq_q_b`).
pub fn varlen_attention<F>(inputs: &VarlenInputs, opts: &AttnOptions, keys: F) -> Result<VarlenOutput>
where
    F: Fn(usize, usize, usize, usize, usize, &mut Vec<usize>) + Sync,
{
    let (s, vl) = (inputs.shape, &inputs.varlen);
    let (d, hq, hk) = (s.head_dim(), s.heads_q(), s.heads_kv());
    check_len("q", inputs.q.len(), &[vl.total_q(), hq, d])?;
    check_len("k", inputs.k.len(), &[vl.total_k(), hk, d])?;
    check_len("v", inputs.v.len(), &[vl.total_k(), hk, d])?;
    let start = |cu: &[i32], b: usize| cu[b] as usize;
    // Unpack into the padded problem of the longest lengths (padding rows stay 0).
    let mut padded = RefInputs::from_f64(s, vec![0.0; s.q_len()], vec![0.0; s.kv_len()], vec![0.0; s.kv_len()])?;
    for b in 0..s.batch() {
        let (lq, lk) = vl.seqlens(b);
        let (q0, k0) = (start(vl.cu_seqlens_q(), b), start(vl.cu_seqlens_k(), b));
        let rows = |len: usize, row_elems: usize, from: usize, to: usize| (from * row_elems..(from + len) * row_elems, to);
        let (src, dst) = rows(lq, hq * d, q0, b * s.seq_q() * hq * d);
        padded.q[dst..dst + src.len()].copy_from_slice(&inputs.q[src]);
        let (src, dst) = rows(lk, hk * d, k0, b * s.seq_k() * hk * d);
        padded.k[dst..dst + src.len()].copy_from_slice(&inputs.k[src.clone()]);
        padded.v[dst..dst + src.len()].copy_from_slice(&inputs.v[src]);
    }
    let rule = ScoreRule::new(opts, d, hq, inputs.sinks.as_deref())?;
    let ref_out: RefOutput = attend_rows_with(&padded, &rule, |b| vl.seqlens(b), |b, h, i, list| {
        let (lq, lk) = vl.seqlens(b);
        if i < lq {
            keys(b, h, i, lq, lk, list);
        }
    })?;
    // Pack back.
    let mut out = vec![0.0; vl.total_q() * hq * d];
    let mut lse = vec![f64::NEG_INFINITY; hq * vl.total_q()];
    for b in 0..s.batch() {
        let (lq, _) = vl.seqlens(b);
        let q0 = start(vl.cu_seqlens_q(), b);
        let from = b * s.seq_q() * hq * d;
        out[q0 * hq * d..(q0 + lq) * hq * d].copy_from_slice(&ref_out.out[from..from + lq * hq * d]);
        for h in 0..hq {
            for i in 0..lq {
                lse[h * vl.total_q() + q0 + i] = ref_out.lse[(b * hq + h) * s.seq_q() + i];
            }
        }
    }
    Ok(VarlenOutput { out, lse })
}

/// Keys `0..` the count row `i` of a sequence of `seq_q` rows and `seq_k` keys sees: all
/// of them, or up to its bottom-right causal diagonal.
fn visible(i: usize, seq_q: usize, seq_k: usize, causal: bool) -> usize {
    if !causal {
        return seq_k;
    }
    (i as i64 + seq_k as i64 - seq_q as i64 + 1).clamp(0, seq_k as i64) as usize
}

/// Dense varlen attention, causal per sequence when `opts.causal`.
pub fn varlen_dense_attention(inputs: &VarlenInputs, opts: &AttnOptions) -> Result<VarlenOutput> {
    varlen_attention(inputs, opts, |_, _, i, lq, lk, list| list.extend(0..visible(i, lq, lk, opts.causal)))
}

/// Block-sparse varlen attention: the descriptor has the batch and the row blocks of the
/// longest sequence (`inputs.shape`); row `i` of sequence `b` attends the keys of the
/// blocks its row block lists, below its sequence's key count and causal diagonal.
pub fn varlen_block_sparse_attention(inputs: &VarlenInputs, opts: &AttnOptions, pattern: &BlockSparse) -> Result<VarlenOutput> {
    use crate::mask::SparsePattern;
    let s = inputs.shape;
    pattern.validate(&s)?;
    varlen_attention(inputs, opts, |b, h, i, lq, lk, list| {
        let limit = visible(i, lq, lk, opts.causal);
        for &n in pattern.counted(b, pattern.mask_head(&s, h), i / BLOCK_M) {
            let start = n as usize * BLOCK_N;
            list.extend(start..(start + BLOCK_N).min(limit));
        }
    })
}

/// Top-k varlen attention: the indices are packed like q (`pattern` has batch 1 and
/// `total_q` rows); row `i` of sequence `b` attends the keys of packed row
/// `cu_seqlens_q[b] + i` (its kv head's), below its sequence's key count and causal
/// diagonal.
pub fn varlen_topk_attention(inputs: &VarlenInputs, opts: &AttnOptions, pattern: &TopkTokens) -> Result<VarlenOutput> {
    let (s, vl) = (inputs.shape, &inputs.varlen);
    if pattern.batch() != 1 || pattern.seq_q() != vl.total_q() || pattern.heads_kv() != s.heads_kv() {
        return Err(Error::DescriptorMismatch {
            reason: format!(
                "varlen top-k indices must be [total_q = {}, heads_kv = {}, k]; these are [{} x {}, {}, k]",
                vl.total_q(),
                s.heads_kv(),
                pattern.batch(),
                pattern.seq_q(),
                pattern.heads_kv()
            ),
        });
    }
    varlen_attention(inputs, opts, |b, h, i, lq, lk, list| {
        let row = vl.cu_seqlens_q()[b] as usize + i;
        list.extend(pattern.visible_keys(0, row, s.kv_head(h), visible(i, lq, lk, opts.causal)));
    })
}

/// Vertical-slash varlen attention (causal) from a converted index with the shape's batch
/// and row blocks (`pattern::vs_convert::convert_varlen`): row `i` of sequence `b`
/// attends the keys of its row block's tiles and columns, below its causal diagonal.
pub fn varlen_vertical_slash_attention(inputs: &VarlenInputs, opts: &AttnOptions, index: &VsIndex) -> Result<VarlenOutput> {
    crate::pattern::vertical_slash::require_causal(opts.causal)?;
    let s = inputs.shape;
    let d = index.dims;
    if d.batch() != s.batch() || d.row_blocks() != s.seq_q().div_ceil(BLOCK_M) || (d.heads() != s.heads_q() && d.heads() != s.heads_kv()) {
        return Err(Error::DescriptorMismatch { reason: format!("the vertical-slash index is {} x {} x {} row blocks; the problem needs batch {}, heads_q or heads_kv, {} row blocks", d.batch(), d.heads(), d.row_blocks(), s.batch(), s.seq_q().div_ceil(BLOCK_M)) });
    }
    let group = if d.heads() == s.heads_q() { 1 } else { s.group_size() };
    // Resolve every row block's lists first: the row loop cannot return an error.
    let mut rows = Vec::with_capacity(d.batch() * d.heads() * d.row_blocks());
    for b in 0..d.batch() {
        for h in 0..d.heads() {
            for m in 0..d.row_blocks() {
                rows.push(index.row_block_checked(b, h, m)?);
            }
        }
    }
    varlen_attention(inputs, opts, |b, h, i, lq, lk, list| {
        let limit = visible(i, lq, lk, true);
        let (offsets, columns) = rows[(b * d.heads() + h / group) * d.row_blocks() + i / BLOCK_M];
        for &o in offsets {
            let start = o as usize;
            list.extend(start..(start + BLOCK_N).min(limit));
        }
        list.extend(columns.iter().map(|&c| c as usize).filter(|&c| c < limit));
    })
}
