//! Host estimator of a block-sparse descriptor by pooled block scores (the idea behind
//! SeerAttention's gate and MInference's block-sparse heads): average q over each row block
//! and k over each key block, score every (row block, key block) pair by their scaled dot
//! product, and keep the best `top_k` key blocks per row block.
//!
//! It reads q and k from [`RefInputs`] because those already hold the exact storage values
//! widened to f64 in contiguous BSHD; a GPU estimator can be checked against this one.

use super::a_shape::diagonal_block;
use super::block_sparse::BlockSparse;
use super::{BLOCK_M, BLOCK_N};
use crate::error::{Error, Result};
use crate::inputs::RefInputs;
use crate::shape::{check_len, AttnShape};

/// What the estimator keeps per row block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTopkConfig {
    /// Key blocks kept per row block, forced ones included; at least 1.
    pub top_k: usize,
    /// Only key blocks that some row of the row block can see (bottom-right causal) are
    /// candidates, so no budget is spent on tiles that would be masked out entirely.
    pub causal: bool,
    /// Always keep key block 0: attention sinks carry much of the mass in LLMs, and a
    /// pooled score does not see that.
    pub force_sink: bool,
    /// Always keep the diagonal block (as defined for A-shape): local context matters and
    /// keeps every causal row with at least one key.
    pub force_diagonal: bool,
    /// Average the scores of a GQA group's query heads and emit one mask per kv head
    /// (`H = heads_kv`), so the kernel loads each K/V tile once for the whole group;
    /// otherwise one mask per query head (`H = heads_q`).
    pub per_kv_group: bool,
}

/// Means over the rows of each block of `block` rows: `[blocks, head_dim]`. The last block
/// may be partial and averages only its real rows.
fn pool_blocks(
    x: &[f64],
    shape: &AttnShape,
    seq: usize,
    heads: usize,
    b: usize,
    h: usize,
    block: usize,
) -> Vec<f64> {
    let d = shape.head_dim();
    let row_stride = heads * d;
    let base = b * seq * row_stride + h * d;
    let blocks = seq.div_ceil(block);
    let mut pooled = vec![0.0; blocks * d];
    for (n, acc) in pooled.chunks_exact_mut(d).enumerate() {
        let rows = n * block..((n + 1) * block).min(seq);
        let len = rows.len() as f64;
        for r in rows {
            let off = base + r * row_stride;
            for (a, v) in acc.iter_mut().zip(&x[off..off + d]) {
                *a += v;
            }
        }
        for a in acc.iter_mut() {
            *a /= len;
        }
    }
    pooled
}

/// Picks the kept key blocks of one row block from its scores (`scores[n]` for key block
/// `n`), ascending. `candidates` is how many leading key blocks are eligible.
fn select_row(scores: &[f64], candidates: usize, forced: &[usize], top_k: usize) -> Vec<i32> {
    let mut kept: Vec<usize> = forced.iter().copied().filter(|&n| n < candidates).collect();
    kept.sort_unstable();
    kept.dedup();
    let mut rest: Vec<usize> = (0..candidates).filter(|n| !kept.contains(n)).collect();
    // total_cmp gives NaN a fixed place instead of an inconsistent order; equal scores go
    // to the lower block id so the result never depends on sort internals.
    rest.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]).then(x.cmp(&y)));
    let budget = top_k.saturating_sub(kept.len());
    kept.extend(rest.into_iter().take(budget));
    kept.sort_unstable();
    kept.into_iter().map(|n| n as i32).collect()
}

/// Estimates a block-sparse descriptor from pooled q and k (see the module docs).
///
/// Row block `m` keeps the forced blocks (sink 0, diagonal) that are candidates, then the
/// highest-scoring other candidates up to `top_k` in all; when forced blocks alone exceed
/// `top_k` they are all kept. Scores are `softmax_scale * mean_q . mean_k`; a positive
/// scale does not change the ranking, but it keeps the scores on the scale of the logits
/// the kernel computes. `max_blocks` is the longest row (at least 1), padding -1.
///
/// Errors: `top_k == 0`, a scale that is not finite and positive, an invalid shape in
/// `inputs`, or q / k lengths that do not match it.
pub fn estimate_block_topk(
    inputs: &RefInputs,
    config: &BlockTopkConfig,
    softmax_scale: f64,
) -> Result<BlockSparse> {
    if config.top_k == 0 {
        return Err(Error::InvalidParameter {
            name: "top_k",
            reason: "must keep at least 1 key block per row block".into(),
        });
    }
    if !(softmax_scale.is_finite() && softmax_scale > 0.0) {
        return Err(Error::InvalidSoftmaxScale { value: softmax_scale as f32, reason: "it must be finite and > 0".into() });
    }
    let s = inputs.shape;
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;

    let row_blocks = s.seq_q().div_ceil(BLOCK_M);
    let key_blocks = s.seq_k().div_ceil(BLOCK_N);
    let heads = if config.per_kv_group { s.heads_kv() } else { s.heads_q() };
    let heads_per_mask = s.heads_q() / heads;

    // Candidates and forced blocks depend only on the row block, not on batch or head.
    let plans: Vec<(usize, Vec<usize>)> = (0..row_blocks)
        .map(|m| {
            let diag = diagonal_block(&s, m);
            let candidates = if config.causal { diag.map_or(0, |d| d + 1) } else { key_blocks };
            let mut forced = Vec::new();
            if config.force_sink {
                forced.push(0);
            }
            if let (true, Some(d)) = (config.force_diagonal, diag) {
                forced.push(d);
            }
            (candidates, forced)
        })
        .collect();

    let mut rows: Vec<Vec<i32>> = Vec::with_capacity(s.batch() * heads * row_blocks);
    let d = s.head_dim();
    for b in 0..s.batch() {
        let pooled_k: Vec<Vec<f64>> = (0..s.heads_kv())
            .map(|hk| pool_blocks(&inputs.k, &s, s.seq_k(), s.heads_kv(), b, hk, BLOCK_N))
            .collect();
        for mh in 0..heads {
            // Sum of the member heads' score matrices [row_blocks, key_blocks]; the mean
            // is the sum divided by a constant, which does not change the ranking, but
            // divide anyway so the scores are what the docs say.
            let mut scores = vec![0.0; row_blocks * key_blocks];
            for h in mh * heads_per_mask..(mh + 1) * heads_per_mask {
                let pooled_q = pool_blocks(&inputs.q, &s, s.seq_q(), s.heads_q(), b, h, BLOCK_M);
                for (m, q) in pooled_q.chunks_exact(d).enumerate() {
                    for (n, k) in pooled_k[s.kv_head(h)].chunks_exact(d).enumerate() {
                        let dot: f64 = q.iter().zip(k).map(|(x, y)| x * y).sum();
                        scores[m * key_blocks + n] += softmax_scale * dot / heads_per_mask as f64;
                    }
                }
            }
            for (m, (candidates, forced)) in plans.iter().enumerate() {
                let row_scores = &scores[m * key_blocks..(m + 1) * key_blocks];
                rows.push(select_row(row_scores, *candidates, forced, config.top_k));
            }
        }
    }

    block_sparse_from_rows(s.batch(), heads, row_blocks, &rows)
}

/// A block-sparse descriptor from its rows' block lists (`[batch, heads, row_blocks]` of
/// them, each ascending): `max_blocks` is the longest row (at least 1), padding -1.
pub(super) fn block_sparse_from_rows(batch: usize, heads: usize, row_blocks: usize, rows: &[Vec<i32>]) -> Result<BlockSparse> {
    let max_blocks = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut block_count = Vec::with_capacity(rows.len());
    let mut block_index = vec![-1i32; rows.len() * max_blocks];
    for (row, slots) in rows.iter().zip(block_index.chunks_exact_mut(max_blocks)) {
        slots[..row.len()].copy_from_slice(row);
        block_count.push(row.len() as i32);
    }
    BlockSparse::new(batch, heads, row_blocks, max_blocks, block_count, block_index)
}
