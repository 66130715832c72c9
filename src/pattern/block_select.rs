//! Block selection: the host rules that `kernels/block_select.cu` implements, and the host
//! estimators built from them (the references of the device path).
//!
//! Two steps, as on the device:
//! 1. **Scores** `[batch, H, row_blocks, key_blocks]` per (row block, key block), where `H`
//!    is heads_kv (one mask per GQA group, its query heads' scores averaged) or heads_q:
//!    - [`BlockScoring::Pooled`]: `scale * mean_q . mean_k` over the row block's queries and
//!      the key block's keys (what [`super::block_topk::estimate_block_topk`] ranks);
//!    - [`BlockScoring::Gate`]: SeerAttention's `AttnGate` with its default gate
//!      `Qavg_Kmaxminavg` (see [`GateHost`]);
//!    - [`BlockScoring::Xattn`]: XAttention's antidiagonal probability sums (see
//!      [`xattn_row`]), masses rather than logits.
//!
//!    Key blocks that are not candidates (past the causal diagonal, or past the sequence)
//!    score `-inf`.
//! 2. **Selection** per row block ([`select_row`]): the forced blocks (sink 0, the diagonal)
//!    that are candidates, then the best other candidates (a larger score first, NaN below
//!    every number, equal scores to the lower block id) up to the budget:
//!    - [`BlockBudget::TopK`]: `top_k` blocks in all (forced ones all kept even if more);
//!    - [`BlockBudget::Threshold`]: the fewest blocks (at least one), taken in that order,
//!      whose weight reaches `threshold` times the candidates' total weight (forced ones
//!      count; taking the heaviest first makes the set a smallest one). The weight
//!      of a score is its softmax over the row's candidates for [`ScoreKind::Logits`] (NaN
//!      weighs 0; with a `+inf` score, the `+inf` ones weigh 1 and the rest 0), or the score
//!      itself for [`ScoreKind::Mass`] (negative and NaN weigh 0). When rounding keeps the
//!      running sum below the target, every candidate is kept.
//!
//! The output is the block-sparse format, ids ascending, with `max_blocks` fixed by the
//! config ([`BlockSelectConfig::max_blocks`]) so the device writes the same shape, padding -1.
//!
//! NaN or inf in Q or K: pooled vectors and scores become NaN or infinite, which rank as
//! above (NaN lowest); the selection is still a set of distinct candidate ids, ascending,
//! never out of range.

use super::block_sparse::BlockSparse;
use super::{BLOCK_M, BLOCK_N};
use crate::error::{Error, Result};
use crate::inputs::RefInputs;
use crate::reference::VarlenInputs;
use crate::shape::{check_len, AttnShape};

/// What the scores of a row are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreKind {
    /// Logit-like (pooled dot products, gate logits): a row's weights are their softmax.
    #[default]
    Logits,
    /// Already masses (XAttention's probability sums): the weights are the scores.
    Mass,
}

/// How many key blocks a row block keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockBudget {
    /// This many, forced ones included; `1..=key_blocks`.
    TopK(usize),
    /// The fewest whose weight reaches this share of the row's total, in `(0, 1]`.
    Threshold(f64),
}

/// The selection rule (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockSelectConfig {
    /// The budget per row block.
    pub budget: BlockBudget,
    /// How scores turn into weights in threshold mode.
    pub kind: ScoreKind,
    /// Only key blocks some row of the row block sees (bottom-right causal) are candidates.
    pub causal: bool,
    /// Always keep key block 0.
    pub force_sink: bool,
    /// Always keep the diagonal block (the one holding the last key the row block's last
    /// row sees).
    pub force_diagonal: bool,
}

impl BlockSelectConfig {
    /// Checks the budget against `key_blocks` (the score rows' width): `top_k` in
    /// `1..=key_blocks`, a threshold in `(0, 1]`.
    pub fn validate(&self, key_blocks: usize) -> Result<()> {
        match self.budget {
            BlockBudget::TopK(k) if k == 0 || k > key_blocks => Err(Error::InvalidParameter {
                name: "top_k",
                reason: format!("is {k}, must be in 1..={key_blocks} (the key blocks)"),
            }),
            BlockBudget::Threshold(p) if !(p > 0.0 && p <= 1.0) => Err(Error::InvalidParameter {
                name: "threshold",
                reason: format!("is {p}, must be in (0, 1]"),
            }),
            _ => Ok(()),
        }
    }

    /// Index slots per row block: the most blocks a row can keep (`top_k`, or the forced
    /// ones if more, at most `key_blocks`; every key block in threshold mode).
    pub fn max_blocks(&self, key_blocks: usize) -> usize {
        match self.budget {
            BlockBudget::TopK(k) => k.max(usize::from(self.force_sink) + usize::from(self.force_diagonal)).min(key_blocks).max(1),
            BlockBudget::Threshold(_) => key_blocks.max(1),
        }
    }
}

/// Candidates `[0, candidates)` and the diagonal block of row block `m` of a sequence of
/// `seq_q` queries and `seq_k` keys (bottom-right aligned); `None` when the row block does
/// not exist or sees no key (then there is no diagonal and, causal, no candidate).
pub fn row_candidates(seq_q: usize, seq_k: usize, m: usize, causal: bool) -> Option<(usize, Option<usize>)> {
    if m >= seq_q.div_ceil(BLOCK_M) || seq_k == 0 {
        return None;
    }
    let last_row = ((m + 1) * BLOCK_M).min(seq_q) - 1;
    let visible = (last_row as i64 + 1 + seq_k as i64 - seq_q as i64).clamp(0, seq_k as i64) as usize;
    let diagonal = visible.checked_sub(1).map(|k| k / BLOCK_N);
    let candidates = if causal { diagonal.map_or(0, |d| d + 1) } else { seq_k.div_ceil(BLOCK_N) };
    Some((candidates, diagonal))
}

/// The kept key blocks of one row block, ascending (see the module docs): `scores[n]` for
/// key block `n`, `candidates` leading blocks eligible.
pub fn select_row(scores: &[f64], candidates: usize, diagonal: Option<usize>, config: &BlockSelectConfig) -> Vec<i32> {
    let candidates = candidates.min(scores.len());
    let forced = |n: usize| (config.force_sink && n == 0) || (config.force_diagonal && diagonal == Some(n));
    let mut order: Vec<usize> = (0..candidates).collect();
    // Forced first, then a larger score (NaN lowest), then the lower id.
    let rank = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    order.sort_by(|&x, &y| {
        forced(y)
            .cmp(&forced(x))
            .then_with(|| {
                let (a, b) = (scores[x], scores[y]);
                // A NaN sits below -inf.
                match (a.is_nan(), b.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => rank(b).partial_cmp(&rank(a)).unwrap_or(std::cmp::Ordering::Equal),
                }
            })
            .then(x.cmp(&y))
    });
    let n_forced = (0..candidates).filter(|&n| forced(n)).count();
    let keep = match config.budget {
        BlockBudget::TopK(k) => k.min(candidates).max(n_forced),
        BlockBudget::Threshold(p) => {
            let max = (0..candidates).map(|n| scores[n]).filter(|s| !s.is_nan()).fold(f64::NEG_INFINITY, f64::max);
            let weight = |s: f64| match config.kind {
                ScoreKind::Mass => {
                    if s > 0.0 {
                        s
                    } else {
                        0.0
                    }
                }
                ScoreKind::Logits if s.is_nan() => 0.0,
                ScoreKind::Logits if s == max => 1.0,
                ScoreKind::Logits => (s - max).exp(),
            };
            let weights: Vec<f64> = order.iter().map(|&n| weight(scores[n])).collect();
            let target = p * weights.iter().sum::<f64>();
            let mut cum = 0.0;
            let found = weights.iter().position(|w| {
                cum += w;
                cum >= target
            });
            found.map_or(candidates, |j| j + 1).max(n_forced)
        }
    };
    let mut kept: Vec<i32> = order[..keep.min(candidates)].iter().map(|&n| n as i32).collect();
    kept.sort_unstable();
    kept
}

/// Sizes of a score tensor `[batch, heads, row_blocks, key_blocks]` for `seq_q` queries and
/// `seq_k` keys (the longest, for a varlen batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreDims {
    /// Sequences.
    pub batch: usize,
    /// Selection heads.
    pub heads: usize,
    /// Queries per sequence (longest).
    pub seq_q: usize,
    /// Keys per sequence (longest).
    pub seq_k: usize,
}

impl ScoreDims {
    /// `ceil(seq_q / BLOCK_M)`.
    pub fn row_blocks(&self) -> usize {
        self.seq_q.div_ceil(BLOCK_M)
    }
    /// `ceil(seq_k / BLOCK_N)`.
    pub fn key_blocks(&self) -> usize {
        self.seq_k.div_ceil(BLOCK_N)
    }
    /// Elements of the score tensor, checked.
    pub fn len(&self) -> Result<usize> {
        for (dim, v) in [("batch", self.batch), ("heads", self.heads), ("seq_q", self.seq_q), ("seq_k", self.seq_k)] {
            if v == 0 {
                return Err(Error::ZeroDimension { dim });
            }
        }
        crate::checked::product("batch * heads * row_blocks * key_blocks", &[self.batch, self.heads, self.row_blocks(), self.key_blocks()])
    }
    /// Always false for valid dims (clippy's pairing of `len`).
    pub fn is_empty(&self) -> bool {
        !matches!(self.len(), Ok(n) if n > 0)
    }
}

/// Selects blocks from a score tensor (the reference of `block_select_blocks`): row block
/// `m` of sequence `b` uses that sequence's lengths (from `seqlens`, `(seq_q, seq_k)` per
/// sequence, or the dims' for all). Errors: bad dims or budget, a wrong score length.
pub fn select_blocks_host(scores: &[f64], dims: &ScoreDims, seqlens: Option<&[(usize, usize)]>, config: &BlockSelectConfig) -> Result<BlockSparse> {
    let len = dims.len()?;
    check_len("scores", scores.len(), &[len])?;
    let (mb, nb) = (dims.row_blocks(), dims.key_blocks());
    config.validate(nb)?;
    if let Some(s) = seqlens {
        check_len("seqlens", s.len(), &[dims.batch])?;
    }
    let max_blocks = config.max_blocks(nb);
    let mut block_count = Vec::with_capacity(len / nb);
    let mut block_index = vec![-1i32; len / nb * max_blocks];
    for (r, (row, slots)) in scores.chunks_exact(nb).zip(block_index.chunks_exact_mut(max_blocks)).enumerate() {
        let (b, m) = (r / (dims.heads * mb), r % mb);
        let (sq, sk) = seqlens.map_or((dims.seq_q, dims.seq_k), |s| s[b]);
        let kept = match row_candidates(sq.min(dims.seq_q), sk.min(dims.seq_k), m, config.causal) {
            Some((c, d)) => select_row(row, c, d, config),
            None => Vec::new(),
        };
        let n = kept.len().min(max_blocks);
        slots[..n].copy_from_slice(&kept[..n]);
        block_count.push(n as i32);
    }
    BlockSparse::new(dims.batch, dims.heads, mb, max_blocks, block_count, block_index)
}

/// A SeerAttention gate's weights on the host (widened to f64), the reference of the device
/// gate. Following `seer_attn/attn_gate.py` (`AttnGate`, `MultiHeadLinear`) and the block
/// RoPE of `seer_attn/prefill_sparse/llama/modeling_llama_seerattn.py` in
/// microsoft/SeerAttention: Q is average-pooled per row block, K max-, min- and
/// average-pooled per key block, concatenated in that order; `q_feat = q_pool @ wq[h]`
/// (no bias), `k_feat = k_pool @ wk[h]`; RoPE (rotate-half, base `rope_theta`, dimension
/// `hidden`) at the block's first position; scores `q_feat . k_feat` times the caller's
/// scale (SeerAttention's is `hidden^-0.5`).
#[derive(Debug, Clone, PartialEq)]
pub struct GateHost {
    /// `[heads_q, head_dim, hidden]`, or `None` for SeerAttention's single-linear form
    /// (`hidden == head_dim`, pooled Q used as is).
    pub wq: Option<Vec<f64>>,
    /// `[k_heads, 3 * head_dim, hidden]`, `k_heads` heads_kv or heads_q.
    pub wk: Vec<f64>,
    /// Heads of `wk`.
    pub k_heads: usize,
    /// The gate's hidden size.
    pub hidden: usize,
    /// RoPE base, or `None` for no RoPE.
    pub rope_theta: Option<f64>,
}

/// How blocks are scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BlockScoring<'a> {
    /// `scale * mean_q . mean_k`.
    Pooled,
    /// SeerAttention's gate.
    Gate(&'a GateHost),
    /// XAttention's antidiagonal scores with this stride (dividing 64); see [`xattn_row`].
    /// Select them with [`ScoreKind::Mass`].
    Xattn {
        /// Rows of Q and K per reshaped row / column.
        stride: usize,
    },
}

/// A contiguous `[batch, seq, heads, d]` host tensor.
struct Bshd4<'a> {
    x: &'a [f64],
    seq: usize,
    heads: usize,
    d: usize,
}

/// Pools rows `blk * block ..` of head `h` of batch entry `b`: the mean, or max, min, mean
/// concatenated.
fn pool(t: &Bshd4<'_>, b: usize, h: usize, block: usize, blk: usize, max_min: bool) -> Vec<f64> {
    let Bshd4 { x, seq, heads, d } = *t;
    let rows = blk * block..((blk + 1) * block).min(seq);
    let n = rows.len() as f64;
    let width = if max_min { 3 } else { 1 };
    let mut out = vec![0.0; width * d];
    for e in 0..d {
        let vals = rows.clone().map(|r| x[((b * seq + r) * heads + h) * d + e]);
        let (mut sum, mut mx, mut mn) = (0.0, f64::NEG_INFINITY, f64::INFINITY);
        for v in vals {
            sum += v;
            mx = mx.max(v);
            mn = mn.min(v);
        }
        if max_min {
            out[e] = mx;
            out[d + e] = mn;
            out[2 * d + e] = sum / n;
        } else {
            out[e] = sum / n;
        }
    }
    out
}

/// `x @ w[head]` for w `[heads, in, out]`.
fn project(x: &[f64], w: &[f64], head: usize, out_dim: usize) -> Vec<f64> {
    let in_dim = x.len();
    (0..out_dim).map(|o| (0..in_dim).map(|i| x[i] * w[(head * in_dim + i) * out_dim + o]).sum()).collect()
}

/// Rotate-half RoPE at position `pos` with base `theta`.
fn rope(x: &[f64], pos: f64, theta: f64) -> Vec<f64> {
    let dim = x.len();
    let half = dim / 2;
    (0..dim)
        .map(|o| {
            let i = o % half;
            let angle = pos * theta.powf(-((2 * i) as f64) / dim as f64);
            let other = if o < half { -x[o + half] } else { x[o - half] };
            x[o] * angle.cos() + other * angle.sin()
        })
        .collect()
}

/// Checks a gate against the shape: weight lengths, `hidden` (1..=256, even with RoPE), the
/// single-linear form's `hidden == head_dim`, `k_heads` heads_kv or heads_q.
pub fn check_gate(shape: &AttnShape, gate: &GateHost) -> Result<()> {
    gate_dims_ok(shape, gate.wq.is_some(), gate.k_heads, gate.hidden, gate.rope_theta.is_some())?;
    if let Some(wq) = &gate.wq {
        check_len("gate.wq", wq.len(), &[shape.heads_q(), shape.head_dim(), gate.hidden])?;
    }
    check_len("gate.wk", gate.wk.len(), &[gate.k_heads, 3 * shape.head_dim(), gate.hidden])
}

/// The gate's size rules, shared with the device planner.
pub(crate) fn gate_dims_ok(shape: &AttnShape, has_wq: bool, k_heads: usize, hidden: usize, rope: bool) -> Result<()> {
    let bad = |name: &'static str, reason: String| Err(Error::InvalidParameter { name, reason });
    if hidden == 0 || hidden > crate::params::BLOCK_POOL_MAX_OUT || (rope && !hidden.is_multiple_of(2)) {
        return bad("gate.hidden", format!("is {hidden}, must be in 1..={} (even with RoPE)", crate::params::BLOCK_POOL_MAX_OUT));
    }
    if 3 * shape.head_dim() > crate::params::BLOCK_POOL_MAX_IN {
        return bad("head_dim", format!("is {}, the gate takes at most {}", shape.head_dim(), crate::params::BLOCK_POOL_MAX_IN / 3));
    }
    if !has_wq && hidden != shape.head_dim() {
        return bad("gate.wq", format!("is missing, which needs hidden == head_dim, but hidden is {hidden} and head_dim {}", shape.head_dim()));
    }
    if k_heads != shape.heads_kv() && k_heads != shape.heads_q() {
        return bad("gate.wk", format!("has {k_heads} heads, must have heads_kv ({}) or heads_q ({})", shape.heads_kv(), shape.heads_q()));
    }
    Ok(())
}

/// Block scores `[batch, H, row_blocks, key_blocks]` of contiguous inputs (see the module
/// docs); `H` is heads_kv with `per_kv_group`, else heads_q. Non-candidates are `-inf`.
pub fn block_scores_host(inputs: &RefInputs, scoring: BlockScoring<'_>, per_kv_group: bool, causal: bool, scale: f64) -> Result<Vec<f64>> {
    let s = inputs.shape;
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    match scoring {
        BlockScoring::Gate(g) => check_gate(&s, g)?,
        BlockScoring::Xattn { stride } => return xattn_scores_host(inputs, stride, per_kv_group, causal, scale),
        BlockScoring::Pooled => {}
    }
    let (mb, nb, d) = (s.seq_q().div_ceil(BLOCK_M), s.seq_k().div_ceil(BLOCK_N), s.head_dim());
    let heads = if per_kv_group { s.heads_kv() } else { s.heads_q() };
    let group = s.heads_q() / heads;
    let mut scores = vec![f64::NEG_INFINITY; s.batch() * heads * mb * nb];
    let offset = s.seq_k() as f64 - s.seq_q() as f64;
    let q_t = Bshd4 { x: &inputs.q, seq: s.seq_q(), heads: s.heads_q(), d };
    let k_t = Bshd4 { x: &inputs.k, seq: s.seq_k(), heads: s.heads_kv(), d };
    for b in 0..s.batch() {
        // Query features per q head and row block; key features per feature head.
        let q_feat = |h: usize, m: usize| -> Vec<f64> {
            let p = pool(&q_t, b, h, BLOCK_M, m, false);
            match scoring {
                BlockScoring::Pooled | BlockScoring::Xattn { .. } => p,
                BlockScoring::Gate(g) => {
                    let x = g.wq.as_ref().map_or(p.clone(), |w| project(&p, w, h, g.hidden));
                    g.rope_theta.map_or(x.clone(), |t| rope(&x, (m * BLOCK_M) as f64 + offset, t))
                }
            }
        };
        let k_heads = match scoring {
            BlockScoring::Pooled | BlockScoring::Xattn { .. } => s.heads_kv(),
            BlockScoring::Gate(g) => g.k_heads,
        };
        let k_feat: Vec<Vec<Vec<f64>>> = (0..k_heads)
            .map(|kh| {
                let src = kh / (k_heads / s.heads_kv());
                (0..nb)
                    .map(|n| match scoring {
                        BlockScoring::Pooled | BlockScoring::Xattn { .. } => pool(&k_t, b, src, BLOCK_N, n, false),
                        BlockScoring::Gate(g) => {
                            let p = pool(&k_t, b, src, BLOCK_N, n, true);
                            let x = project(&p, &g.wk, kh, g.hidden);
                            g.rope_theta.map_or(x.clone(), |t| rope(&x, (n * BLOCK_N) as f64, t))
                        }
                    })
                    .collect()
            })
            .collect();
        for hs in 0..heads {
            let qs: Vec<Vec<Vec<f64>>> = (0..group).map(|g| (0..mb).map(|m| q_feat(hs * group + g, m)).collect()).collect();
            for m in 0..mb {
                let Some((cand, _)) = row_candidates(s.seq_q(), s.seq_k(), m, causal) else { continue };
                for n in 0..cand.min(nb) {
                    let mut sum = 0.0;
                    for (g, q) in qs.iter().enumerate() {
                        let kh = (hs * group + g) / (s.heads_q() / k_heads);
                        let dot: f64 = q[m].iter().zip(&k_feat[kh][n]).map(|(a, b)| a * b).sum();
                        sum += scale * dot;
                    }
                    scores[((b * heads + hs) * mb + m) * nb + n] = sum / group as f64;
                }
            }
        }
    }
    Ok(scores)
}

/// XAttention's probability mass of each (row block, key block) for query head `h` of batch
/// entry `b`, following `xattn_estimate` of mit-han-lab/x-attention (`xattn/src/Xattention.py`,
/// its non-Triton "inverse" path with `kdb = 1`, `norm = 1`): reshaped query row `i` is Q rows
/// `i*S + S-1, ..., i*S` concatenated (zero past the sequence), reshaped key column `j` is K
/// rows `j*S, ..., j*S + S-1`, so their dot product sums the `S x S` tile along its
/// antidiagonal; logits `scale / S * dot`, visible when `j*S <= i*S + seq_k - seq_q` (causal)
/// and `j*S < seq_k`; a softmax per reshaped row; a block's mass sums its rows' and columns'
/// probabilities. Returns `[row_blocks * key_blocks]`.
///
/// Errors: a stride that does not divide 64, `b` or `h` out of range, q / k lengths that do
/// not match the shape.
pub fn xattn_row(inputs: &RefInputs, stride: usize, causal: bool, scale: f64, b: usize, h: usize) -> Result<Vec<f64>> {
    let s = inputs.shape;
    if stride == 0 || !BLOCK_M.is_multiple_of(stride) || !BLOCK_N.is_multiple_of(stride) {
        return Err(Error::InvalidParameter { name: "stride", reason: format!("is {stride}, must divide {BLOCK_N}") });
    }
    if b >= s.batch() || h >= s.heads_q() {
        return Err(Error::InvalidParameter { name: "head", reason: format!("(batch {b}, head {h}) is outside the shape") });
    }
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    let (sq, sk, d, st) = (s.seq_q(), s.seq_k(), s.head_dim(), stride);
    let (mb, nb) = (sq.div_ceil(BLOCK_M), sk.div_ceil(BLOCK_N));
    let kh = s.kv_head(h);
    let q = |r: usize, e: usize| if r < sq { inputs.q[((b * sq + r) * s.heads_q() + h) * d + e] } else { 0.0 };
    let k = |r: usize, e: usize| inputs.k[((b * sk + r) * s.heads_kv() + kh) * d + e];
    let (rows, cols) = (sq.div_ceil(st), sk.div_ceil(st));
    let mut mass = vec![0.0; mb * nb];
    for i in 0..rows {
        let visible = if causal {
            let last = (i * st) as i64 + sk as i64 - sq as i64;
            if last < 0 { 0 } else { (last as usize / st + 1).min(cols) }
        } else {
            cols
        };
        let logits: Vec<f64> = (0..visible)
            .map(|j| {
                let mut dot = 0.0;
                for r in 0..st {
                    let key = j * st + r;
                    if key < sk {
                        dot += (0..d).map(|e| q(i * st + st - 1 - r, e) * k(key, e)).sum::<f64>();
                    }
                }
                scale / st as f64 * dot
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        let m = i * st / BLOCK_M;
        for (j, l) in logits.iter().enumerate() {
            mass[m * nb + j * st / BLOCK_N] += (l - max).exp() / total;
        }
    }
    Ok(mass)
}

/// [`xattn_row`] for every head, as a score tensor (means over a group's query heads with
/// `per_kv_group`; `-inf` outside the candidates).
fn xattn_scores_host(inputs: &RefInputs, stride: usize, per_kv_group: bool, causal: bool, scale: f64) -> Result<Vec<f64>> {
    let s = inputs.shape;
    let heads = if per_kv_group { s.heads_kv() } else { s.heads_q() };
    let group = s.heads_q() / heads;
    let (mb, nb) = (s.seq_q().div_ceil(BLOCK_M), s.seq_k().div_ceil(BLOCK_N));
    let mut scores = vec![f64::NEG_INFINITY; s.batch() * heads * mb * nb];
    for b in 0..s.batch() {
        for hs in 0..heads {
            let per_head = (0..group).map(|g| xattn_row(inputs, stride, causal, scale, b, hs * group + g)).collect::<Result<Vec<_>>>()?;
            for m in 0..mb {
                let Some((cand, _)) = row_candidates(s.seq_q(), s.seq_k(), m, causal) else { continue };
                for n in 0..cand.min(nb) {
                    let sum: f64 = per_head.iter().map(|x| x[m * nb + n]).sum();
                    scores[((b * heads + hs) * mb + m) * nb + n] = sum / group as f64;
                }
            }
        }
    }
    Ok(scores)
}

/// [`block_scores_host`] then [`select_blocks_host`]: the host estimate of the device path.
pub fn estimate_blocks(inputs: &RefInputs, scoring: BlockScoring<'_>, per_kv_group: bool, config: &BlockSelectConfig, scale: f64) -> Result<BlockSparse> {
    let s = inputs.shape;
    let scores = block_scores_host(inputs, scoring, per_kv_group, config.causal, scale)?;
    let heads = if per_kv_group { s.heads_kv() } else { s.heads_q() };
    let dims = ScoreDims { batch: s.batch(), heads, seq_q: s.seq_q(), seq_k: s.seq_k() };
    select_blocks_host(&scores, &dims, None, config)
}

/// Block scores of a varlen batch: each sequence scored alone (as a batch of one), laid
/// out in `[batch, H, row_blocks, key_blocks]` of the longest lengths, `-inf` elsewhere.
pub fn block_scores_host_varlen(inputs: &VarlenInputs, scoring: BlockScoring<'_>, per_kv_group: bool, causal: bool, scale: f64) -> Result<Vec<f64>> {
    let s = inputs.shape;
    let vl = &inputs.varlen;
    check_len("q", inputs.q.len(), &[vl.total_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[vl.total_k(), s.heads_kv(), s.head_dim()])?;
    let heads = if per_kv_group { s.heads_kv() } else { s.heads_q() };
    let (mb, nb, d) = (s.seq_q().div_ceil(BLOCK_M), s.seq_k().div_ceil(BLOCK_N), s.head_dim());
    let mut scores = vec![f64::NEG_INFINITY; vl.batch() * heads * mb * nb];
    for b in 0..vl.batch() {
        let (lq, lk) = vl.seqlens(b);
        if lq == 0 || lk == 0 {
            continue;
        }
        let (q0, k0) = (vl.cu_seqlens_q()[b] as usize, vl.cu_seqlens_k()[b] as usize);
        let rows = |x: &[f64], from: usize, len: usize, h: usize| x[from * h * d..(from + len) * h * d].to_vec();
        let shape = AttnShape::new(1, lq, lk, s.heads_q(), s.heads_kv(), d)?;
        // Scores never read V (whose length is not checked here): K stands in.
        let k = rows(&inputs.k, k0, lk, s.heads_kv());
        let seq = RefInputs::from_f64(shape, rows(&inputs.q, q0, lq, s.heads_q()), k.clone(), k)?;
        let own = block_scores_host(&seq, scoring, per_kv_group, causal, scale)?;
        let (omb, onb) = (lq.div_ceil(BLOCK_M), lk.div_ceil(BLOCK_N));
        for h in 0..heads {
            for m in 0..omb {
                let dst = ((b * heads + h) * mb + m) * nb;
                scores[dst..dst + onb].copy_from_slice(&own[(h * omb + m) * onb..][..onb]);
            }
        }
    }
    Ok(scores)
}

/// The per-sequence `(seq_q, seq_k)` of a varlen batch, for [`select_blocks_host`].
pub fn varlen_seqlens(inputs: &VarlenInputs) -> Vec<(usize, usize)> {
    (0..inputs.varlen.batch()).map(|b| inputs.varlen.seqlens(b)).collect()
}
