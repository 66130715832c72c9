//! The host estimators for a varlen batch: each sequence is estimated on its own lengths and
//! causal diagonal, exactly as a batch of one of that sequence would be, and the results are
//! laid out in the descriptor of the whole batch (the batch and the longest sequences of
//! [`VarlenInputs::shape`]), which the varlen and paged launches take.
//!
//! Sequences differ in length, but a descriptor has one size per index row, so shorter
//! sequences are padded:
//! - block-sparse: row blocks past a sequence's own have no blocks, and `max_blocks` is the
//!   longest row of the batch (padding -1);
//! - vertical-slash: `nnz_v` and `nnz_s` are clamped to the longest `seq_k`, and a sequence
//!   with fewer keys fills its row with keys and distances at or past its own `seq_k`, which
//!   no row of it can see, so they select nothing (`pattern::vs_convert::convert_varlen`
//!   skips them). An empty sequence's row is all padding.

use super::block_sparse::BlockSparse;
use super::block_topk::{block_sparse_from_rows, estimate_block_topk, BlockTopkConfig};
use super::vertical_slash::VerticalSlash;
use super::vs_estimate::{estimate_vertical_slash_indices, VsEstimateConfig};
use crate::error::Result;
use crate::inputs::RefInputs;
use crate::reference::VarlenInputs;
use crate::shape::{check_len, AttnShape};

/// Sequence `b` of a varlen batch as a padded problem of batch 1, or `None` when it has no
/// query rows or no keys (nothing to estimate).
fn sequence_inputs(inputs: &VarlenInputs, b: usize) -> Result<Option<RefInputs>> {
    let s = inputs.shape;
    let (lq, lk) = inputs.varlen.seqlens(b);
    if lq == 0 || lk == 0 {
        return Ok(None);
    }
    let (hq, hk, d) = (s.heads_q(), s.heads_kv(), s.head_dim());
    let (q0, k0) = (inputs.varlen.cu_seqlens_q()[b] as usize, inputs.varlen.cu_seqlens_k()[b] as usize);
    // Packed rows of one sequence are its BSHD tensors at batch 1.
    let rows = |x: &[f64], from: usize, len: usize, heads: usize| x[from * heads * d..(from + len) * heads * d].to_vec();
    let shape = AttnShape::new(1, lq, lk, hq, hk, d)?;
    RefInputs::from_f64(shape, rows(&inputs.q, q0, lq, hq), rows(&inputs.k, k0, lk, hk), rows(&inputs.v, k0, lk, hk)).map(Some)
}

/// Checks the packed tensors' lengths against the boundaries (the fields are public).
fn check_inputs(inputs: &VarlenInputs) -> Result<()> {
    let (s, vl) = (inputs.shape, &inputs.varlen);
    check_len("q", inputs.q.len(), &[vl.total_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[vl.total_k(), s.heads_kv(), s.head_dim()])?;
    check_len("v", inputs.v.len(), &[vl.total_k(), s.heads_kv(), s.head_dim()])?;
    if vl.batch() != s.batch() {
        return Err(crate::Error::DescriptorMismatch { reason: format!("the varlen batch has {} sequences, the shape {}", vl.batch(), s.batch()) });
    }
    Ok(())
}

/// [`estimate_block_topk`] per sequence of a varlen batch (see the module docs): the
/// descriptor has the batch, the longest sequence's row blocks and the heads the config
/// asks for; each sequence's rows are the estimate of that sequence alone. Same errors,
/// plus boundaries that disagree with the shape's batch.
pub fn estimate_block_topk_varlen(inputs: &VarlenInputs, config: &BlockTopkConfig, softmax_scale: f64) -> Result<BlockSparse> {
    check_inputs(inputs)?;
    let s = inputs.shape;
    let heads = if config.per_kv_group { s.heads_kv() } else { s.heads_q() };
    let row_blocks = s.seq_q().div_ceil(super::BLOCK_M);
    // Per (sequence, head, own row block): the kept block ids.
    let mut rows: Vec<Vec<Vec<i32>>> = Vec::with_capacity(s.batch());
    for b in 0..s.batch() {
        let Some(seq) = sequence_inputs(inputs, b)? else {
            rows.push(vec![Vec::new(); heads * row_blocks]);
            continue;
        };
        let est = estimate_block_topk(&seq, config, softmax_scale)?;
        let mut seq_rows = vec![Vec::new(); heads * row_blocks];
        for h in 0..heads {
            for m in 0..est.row_blocks() {
                seq_rows[h * row_blocks + m] = est.blocks(0, h, m)?.to_vec();
            }
        }
        rows.push(seq_rows);
    }
    let rows: Vec<Vec<i32>> = rows.into_iter().flatten().collect();
    block_sparse_from_rows(s.batch(), heads, row_blocks, &rows)
}

/// [`estimate_vertical_slash_indices`] per sequence of a varlen batch, as a descriptor with
/// `H = heads_q` (see the module docs for the padding of shorter sequences). Same errors,
/// plus boundaries that disagree with the shape's batch.
pub fn estimate_vertical_slash_varlen(inputs: &VarlenInputs, config: &VsEstimateConfig, softmax_scale: f64) -> Result<VerticalSlash> {
    check_inputs(inputs)?;
    let s = inputs.shape;
    let (nnz_v, nnz_s) = (config.vertical_size.min(s.seq_k()), config.slash_size.min(s.seq_k()));
    let heads = s.heads_q();
    let mut vertical_indexes = Vec::with_capacity(s.batch() * heads * nnz_v);
    let mut slash_indexes = Vec::with_capacity(s.batch() * heads * nnz_s);
    for b in 0..s.batch() {
        let own = match sequence_inputs(inputs, b)? {
            Some(seq) => Some(estimate_vertical_slash_indices(&seq, config, softmax_scale)?),
            None => None,
        };
        // Keys and distances from here on are invisible to every row of the sequence (a
        // sequence without rows or keys sees nothing: any valid padding will do).
        let unseen = if own.is_some() { inputs.varlen.seqlens(b).1 as i32 } else { 0 };
        for h in 0..heads {
            let (columns, distances): (&[i32], &[i32]) = match &own {
                Some(sel) => (&sel.vertical_indexes[h * sel.nnz_v..][..sel.nnz_v], &sel.slash_indexes[h * sel.nnz_s..][..sel.nnz_s]),
                None => (&[], &[]),
            };
            // Ascending columns: the sequence's own, then unseen keys.
            let pad_v = nnz_v - columns.len();
            vertical_indexes.extend_from_slice(columns);
            vertical_indexes.extend(unseen..unseen + pad_v as i32);
            // Descending distances: unseen ones first, then the sequence's own.
            let pad_s = nnz_s - distances.len();
            slash_indexes.extend((unseen..unseen + pad_s as i32).rev());
            slash_indexes.extend_from_slice(distances);
        }
    }
    VerticalSlash::new(s.batch(), heads, nnz_v, nnz_s, vertical_indexes, slash_indexes)
}
