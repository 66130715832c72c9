//! Problem sizes and synthetic sparsity descriptors shared by the benchmarks, and exact
//! counts of the (query head, query, key) elements each descriptor keeps.
//!
//! The descriptors are random but seeded, so every run benchmarks the same indices. Their
//! construction is never inside a timed closure.
#![allow(dead_code)] // each bench uses a different subset

use sparse_attn::pattern::vs_convert::VsIndex;
use sparse_attn::pattern::{BlockSparse, TopkTokens, VerticalSlash, BLOCK_M, BLOCK_N};
use sparse_attn::pattern::topk::NO_KEY;
use sparse_attn::{AttnShape, Error, Result};

pub mod model;

/// Sequence length from `var` (a positive integer), or `default` when it is unset.
pub fn seq_from_env(var: &str, default: usize) -> std::result::Result<usize, String> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(e) => Err(format!("{var}: {e}")),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{var} must be a positive integer, got {text:?}")),
        },
    }
}

/// Sequence lengths from `var`: one positive integer or a comma-separated list of them
/// (`8192,32768`), or `default` when it is unset.
pub fn seqs_from_env(var: &str, default: &[usize]) -> std::result::Result<Vec<usize>, String> {
    match std::env::var(var) {
        Err(std::env::VarError::NotPresent) => Ok(default.to_vec()),
        Err(e) => Err(format!("{var}: {e}")),
        Ok(text) => text
            .split(',')
            .map(|part| match part.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{var} must be a positive integer or a comma-separated list of them, got {text:?}")),
            })
            .collect(),
    }
}

/// The tests' seeded SplitMix64 generator, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod test_common;
pub use test_common::Rng;

/// Key blocks that at least one row of row block `m` sees under the causal mask.
fn live_key_blocks(shape: &AttnShape, m: usize) -> usize {
    let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q()) - 1;
    shape.visible_keys(last_row, true).div_ceil(BLOCK_N)
}

/// A causal block mask `[batch, heads, MB, NB]` keeping about `fraction` of the causally
/// live tiles: every row block keeps its sink block (key block 0) and its diagonal block,
/// and each other live block independently with the probability that makes the expected
/// total `fraction` of the live tiles (SeerAttention-like block top-k output, without an
/// estimator to run). Returns the descriptor built by `BlockSparse::from_block_mask`.
pub fn random_block_sparse(shape: &AttnShape, heads: usize, fraction: f64, seed: u64) -> Result<BlockSparse> {
    let mask = random_block_mask(shape, heads, fraction, seed);
    let (mb, nb) = (shape.seq_q().div_ceil(BLOCK_M), shape.seq_k().div_ceil(BLOCK_N));
    BlockSparse::from_block_mask(shape.batch(), heads, mb, nb, &mask)
}

/// The boolean mask behind [`random_block_sparse`], `[batch, heads, MB, NB]`.
pub fn random_block_mask(shape: &AttnShape, heads: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let (mb, nb) = (shape.seq_q().div_ceil(BLOCK_M), shape.seq_k().div_ceil(BLOCK_N));
    let live: Vec<usize> = (0..mb).map(|m| live_key_blocks(shape, m)).collect();
    let total: usize = live.iter().sum();
    let forced: usize = live.iter().map(|&l| l.min(2)).sum();
    let p = if total > forced { ((fraction * total as f64 - forced as f64) / (total - forced) as f64).clamp(0.0, 1.0) } else { 0.0 };
    let mut rng = Rng::new(seed);
    let mut mask = vec![false; shape.batch() * heads * mb * nb];
    for (row, slots) in mask.chunks_exact_mut(nb).enumerate() {
        let l = live[row % mb];
        if l == 0 {
            continue;
        }
        slots[0] = true;
        slots[l - 1] = true;
        for slot in slots.iter_mut().take(l - 1).skip(1) {
            *slot = rng.unit() < p;
        }
    }
    mask
}

/// An MInference-style vertical-slash descriptor, one per query head (`H = heads_q`).
///
/// Verticals: keys `0..30` always (MInference forces them), the rest distinct and uniform
/// over the sequence. Slashes: distances `0..100` always (MInference forces them), the rest
/// distinct, drawn from an exponential distribution of mean `nnz_s / 4` tokens beyond 100:
/// attention mass along the diagonals falls off with distance, so an estimator's top
/// slashes crowd near the diagonal (here into a band about `1.5 * nnz_s` wide, thinning
/// out beyond). This is a synthetic stand-in for the estimator's output, chosen to keep
/// roughly a tenth of the causal elements at 32K-128K tokens; the benches print the
/// fraction it actually keeps.
pub fn minference_vertical_slash(shape: &AttnShape, heads: usize, nnz_v: usize, nnz_s: usize, seed: u64) -> Result<VerticalSlash> {
    let seq = shape.seq_k();
    if nnz_v > seq || nnz_s > seq {
        return Err(Error::InvalidParameter {
            name: "nnz",
            reason: format!("{nnz_v} verticals / {nnz_s} slashes do not fit in {seq} keys"),
        });
    }
    let mut rng = Rng::new(seed);
    let mut verticals = Vec::with_capacity(shape.batch() * heads * nnz_v);
    let mut slashes = Vec::with_capacity(shape.batch() * heads * nnz_s);
    let mut taken = vec![false; seq];
    for _ in 0..shape.batch() * heads {
        let mut v = distinct(&mut taken, nnz_v, 30, || rng.below(seq));
        v.sort_unstable();
        verticals.extend(v);
        let mut s = distinct(&mut taken, nnz_s, 100, || {
            let beyond = -(1.0 - rng.unit()).ln() * nnz_s as f64 / 4.0;
            (100.0 + beyond).min((seq - 1) as f64) as usize
        });
        // A long exponential tail cannot be drawn without repeats once the front is full;
        // `distinct` falls back to uniform draws then, so this always terminates.
        s.sort_unstable_by(|a, b| b.cmp(a));
        slashes.extend(s);
    }
    VerticalSlash::new(shape.batch(), heads, nnz_v, nnz_s, verticals, slashes)
}

/// `n` distinct values below `taken.len()`: `0..forced` first, then draws from `draw`
/// (falling back to uniform draws after many repeats). `taken` is scratch, left all false.
fn distinct(taken: &mut [bool], n: usize, forced: usize, mut draw: impl FnMut() -> usize) -> Vec<i32> {
    let len = taken.len();
    let mut out: Vec<usize> = (0..forced.min(n)).collect();
    for &x in &out {
        taken[x] = true;
    }
    let mut misses = 0usize;
    let mut fallback = Rng::new(len as u64 ^ 0xA5A5);
    while out.len() < n {
        let x = if misses < 64 * n { draw() } else { fallback.below(len) };
        if taken[x] {
            misses += 1;
            continue;
        }
        taken[x] = true;
        out.push(x);
    }
    for &x in &out {
        taken[x] = false;
    }
    out.into_iter().map(|x| x as i32).collect()
}

/// Top-k token indices `[batch, seq_q, heads_kv, k]` for a causal problem: a row that sees
/// at most `k` keys lists all of them (then `-1`); otherwise its visible keys are cut into
/// `k` equal strata and one random key is taken from each. The selection is spread over
/// the whole context, the least cache-friendly realistic case for the gather kernel; keys
/// are ascending within a row (their order does not change what the kernel computes).
pub fn spread_topk(shape: &AttnShape, k: usize, seed: u64) -> Result<TopkTokens> {
    let rows = shape.batch() * shape.seq_q() * shape.heads_kv();
    let mut indices = vec![NO_KEY; rows * k];
    let mut rng = Rng::new(seed);
    for (row, slots) in indices.chunks_exact_mut(k).enumerate() {
        let i = (row / shape.heads_kv()) % shape.seq_q();
        let visible = shape.visible_keys(i, true);
        if visible <= k {
            for (slot, j) in slots.iter_mut().zip(0..visible) {
                *slot = j as i32;
            }
        } else {
            for (t, slot) in slots.iter_mut().enumerate() {
                let (lo, hi) = (t * visible / k, (t + 1) * visible / k);
                *slot = (lo + rng.below(hi - lo)) as i32;
            }
        }
    }
    TopkTokens::new(shape.batch(), shape.seq_q(), shape.heads_kv(), k, indices)
}

/// Query rows in `rows` that see key `j` under the causal mask.
fn rows_seeing(shape: &AttnShape, rows: std::ops::Range<usize>, j: usize) -> u64 {
    if j >= shape.seq_k() {
        return 0;
    }
    // Row i sees j iff i + seq_k - seq_q >= j, i.e. i >= j - (seq_k - seq_q).
    let first = (j as i64 - shape.causal_offset()).max(rows.start as i64);
    (rows.end as i64 - first).max(0) as u64
}

/// Causally visible elements of the key range `keys` for the rows of row block `m`.
fn range_elements(shape: &AttnShape, m: usize, keys: std::ops::Range<usize>) -> u64 {
    let rows = m * BLOCK_M..((m + 1) * BLOCK_M).min(shape.seq_q());
    keys.map(|j| rows_seeing(shape, rows.clone(), j)).sum()
}

/// Causally visible (query head, query, key) elements of the whole problem.
pub fn dense_causal_elements(shape: &AttnShape) -> u64 {
    let per_head: u64 = (0..shape.seq_q()).map(|i| shape.visible_keys(i, true) as u64).sum();
    per_head * (shape.batch() * shape.heads_q()) as u64
}

/// Elements a causal block-sparse launch computes (every query head).
pub fn block_sparse_elements(shape: &AttnShape, desc: &BlockSparse) -> Result<u64> {
    let mut kept = 0;
    for b in 0..shape.batch() {
        for h in 0..shape.heads_q() {
            for m in 0..desc.row_blocks() {
                for &n in desc.blocks(b, desc.mask_head(shape, h), m)? {
                    let start = n as usize * BLOCK_N;
                    kept += range_elements(shape, m, start..(start + BLOCK_N).min(shape.seq_k()));
                }
            }
        }
    }
    Ok(kept)
}

/// Elements a vertical-slash launch computes on `index` (the converted descriptor):
/// the tiles' keys and the columns, each cut by the causal mask.
pub fn vertical_slash_elements(shape: &AttnShape, index: &VsIndex) -> Result<u64> {
    let d = index.dims;
    let group = if d.heads() == shape.heads_q() { 1 } else { shape.group_size() as u64 };
    let mut kept = 0;
    for b in 0..d.batch() {
        for h in 0..d.heads() {
            for m in 0..d.row_blocks() {
                let (tiles, columns) = index.row_block(b, h, m).ok_or_else(|| Error::DescriptorMismatch {
                    reason: format!("converted index has no row block [{b}, {h}, {m}]"),
                })?;
                let rows = m * BLOCK_M..((m + 1) * BLOCK_M).min(shape.seq_q());
                for &o in tiles {
                    let o = o as usize;
                    kept += group * range_elements(shape, m, o..(o + BLOCK_N).min(shape.seq_k()));
                }
                for &c in columns {
                    kept += group * rows_seeing(shape, rows.clone(), c as usize);
                }
            }
        }
    }
    Ok(kept)
}

/// Elements a causal top-k launch computes: the listed keys each row can see, once per
/// query head of the kv head's group.
pub fn topk_elements(shape: &AttnShape, desc: &TopkTokens) -> u64 {
    let [_, seq_q, heads_kv, k] = desc.dims();
    let mut kept = 0u64;
    for (row, keys) in desc.indices().chunks_exact(k).enumerate() {
        let i = (row / heads_kv) % seq_q;
        let limit = shape.visible_keys(i, true) as i64;
        kept += keys.iter().filter(|&&j| j >= 0 && (j as i64) < limit).count() as u64;
    }
    kept * shape.group_size() as u64
}

/// FLOPs of `elements` kept (query head, query, key) elements: `2 * head_dim` for the
/// q.k dot product and `2 * head_dim` for accumulating p.v. Softmax work is not counted,
/// as in FlashAttention's TFLOP/s figures.
pub fn attention_flops(shape: &AttnShape, elements: u64) -> u64 {
    4 * shape.head_dim() as u64 * elements
}
