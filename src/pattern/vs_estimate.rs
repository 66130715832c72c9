//! Host estimator of a vertical-slash descriptor, after MInference's online estimation:
//! attend the last few query rows to every key, and keep the key columns ("verticals") and
//! the diagonals ("slashes") that collect the most attention probability.
//!
//! Why the last rows: in causal prefill they see every key, and MInference observed that
//! the vertical and slash structure of a head is stable along the sequence, so a 64-row
//! probe predicts where the whole matrix puts its mass at a cost of `64 x seq_k` dot
//! products per head instead of `seq_q x seq_k`.
//!
//! Geometry (bottom-right causal, `offset = seq_k - seq_q`): query row `i` sits on the
//! diagonal key `i + offset` and sees keys `j <= i + offset`. Key `j` in that row lies on
//! slash distance `d = i + offset - j >= 0`; distance 0 is the main diagonal. The last
//! query row sees every key, so every column `0..seq_k` and every distance `0..seq_k` is a
//! candidate in every head: the number of candidates never varies across heads, which is
//! what lets one clamp (`min(size, seq_k)`) hold for the whole `[B, H, NNZ]` tensor.

use super::vertical_slash::VerticalSlash;
use crate::error::{Error, Result};
use crate::inputs::RefInputs;
use crate::shape::{check_len, AttnShape};

/// What the estimator keeps per (batch, query head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsEstimateConfig {
    /// Query rows at the end of the sequence that probe the attention (fewer when `seq_q`
    /// is shorter); at least 1. MInference uses 64.
    pub last_q: usize,
    /// Key columns kept per head, forced ones included; at least 1. Clamped to `seq_k`.
    pub vertical_size: usize,
    /// Diagonals kept per head, forced ones included; at least 1. Clamped to `seq_k`.
    pub slash_size: usize,
    /// Columns `0..n` always rank first: attention sinks sit at the start of the sequence
    /// and the probe rows may under-sample them. MInference forces 30.
    pub forced_first_columns: usize,
    /// Distances `0..n` (the diagonals nearest the main one) always rank first: local
    /// context, and it keeps every causal row with at least one key. MInference forces 100.
    pub forced_last_diagonals: usize,
    /// One index set per kv head instead of per query head: the probabilities of the GQA
    /// group's query heads are averaged before ranking, and the group's set is written to
    /// every query head of the group (the `[B, heads_q, NNZ]` tensors keep their shape, so
    /// the conversion and the attention take either). Off (MInference's behaviour), each
    /// query head ranks its own probabilities.
    pub per_kv_group: bool,
}

impl VsEstimateConfig {
    /// MInference's settings (64 probe rows, 30 forced columns, 100 forced diagonals) with
    /// the given budgets.
    pub fn new(vertical_size: usize, slash_size: usize) -> Self {
        Self { last_q: 64, vertical_size, slash_size, forced_first_columns: 30, forced_last_diagonals: 100, per_kv_group: false }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let positive = [
            ("last_q", self.last_q, "needs at least 1 probe query row"),
            ("vertical_size", self.vertical_size, "must keep at least 1 key column per head"),
            ("slash_size", self.slash_size, "must keep at least 1 diagonal per head"),
        ];
        for (name, value, reason) in positive {
            if value == 0 {
                return Err(Error::InvalidParameter { name, reason: format!("{reason}, got 0") });
            }
        }
        Ok(())
    }
}

impl Default for VsEstimateConfig {
    /// MInference's fallback budget for a head with no searched pattern: 1000 verticals
    /// and 6096 slashes.
    fn default() -> Self {
        Self::new(1000, 6096)
    }
}

/// The raw index tensors of an estimate, in the vertical-slash format: `vertical_indexes
/// [batch, heads, nnz_v]` ascending key positions and `slash_indexes [batch, heads,
/// nnz_s]` diagonal distances, descending. `heads` is `heads_q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsSelection {
    /// Batch size of the problem.
    pub batch: usize,
    /// Query heads: the estimate is per query head, since GQA heads sharing K still differ in Q.
    pub heads: usize,
    /// Verticals per head: `min(vertical_size, seq_k)`.
    pub nnz_v: usize,
    /// Slashes per head: `min(slash_size, seq_k)`.
    pub nnz_s: usize,
    /// `[batch, heads, nnz_v]` key positions, strictly ascending per head.
    pub vertical_indexes: Vec<i32>,
    /// `[batch, heads, nnz_s]` distances from the main diagonal, strictly descending per head.
    pub slash_indexes: Vec<i32>,
}

/// Runs the estimate and returns the raw index tensors (see the module docs).
///
/// Per (batch, query head), or per (batch, kv head) with [`VsEstimateConfig::per_kv_group`]
/// (the group's probabilities averaged): scores `softmax_scale * q_i . k_j` for the last
/// `min(last_q, seq_q)` query rows against every causally visible key, a softmax per row
/// in f64, then the column sums rank the verticals and the sums along each diagonal rank
/// the slashes. Forced columns and distances rank above everything else. The top
/// `min(vertical_size, seq_k)` columns and `min(slash_size, seq_k)` distances are kept;
/// equal scores go to the lower key position, or to the smaller distance (nearer the main
/// diagonal), so the result is deterministic. A NaN score (only possible from non-finite
/// inputs) ranks below every number. Always causal: the probe only means something for
/// causal prefill, where the last rows see the whole context.
///
/// Errors: a zero `last_q`, `vertical_size` or `slash_size`; a scale that is not finite
/// and positive; an invalid shape in `inputs`, or q / k lengths that do not match it.
pub fn estimate_vertical_slash_indices(
    inputs: &RefInputs,
    config: &VsEstimateConfig,
    softmax_scale: f64,
) -> Result<VsSelection> {
    check_args(inputs, config, softmax_scale)?;
    let s = inputs.shape;

    let nnz_v = config.vertical_size.min(s.seq_k());
    let nnz_s = config.slash_size.min(s.seq_k());
    let heads = s.heads_q();
    let tasks = s.batch() * heads;
    let units = unit_scores(inputs, config, softmax_scale);
    let per_unit: Vec<(Vec<usize>, Vec<usize>)> = units
        .into_iter()
        .map(|(mut vertical, mut slash)| {
            force(&mut vertical, config.forced_first_columns);
            force(&mut slash, config.forced_last_diagonals);
            let mut columns = top_indices(&vertical, nnz_v);
            columns.sort_unstable();
            let mut distances = top_indices(&slash, nnz_s);
            distances.sort_unstable_by(|a, b| b.cmp(a));
            (columns, distances)
        })
        .collect();
    // A unit is a query head, or a kv head whose set every query head of its group takes.
    let heads_per_unit = heads_per_unit(&s, config);
    let per_head = (0..tasks).map(|t| &per_unit[t / heads_per_unit]);

    let mut vertical_indexes = Vec::with_capacity(tasks * nnz_v);
    let mut slash_indexes = Vec::with_capacity(tasks * nnz_s);
    for (columns, distances) in per_head {
        // Positions are below seq_k <= i32::MAX (AttnShape::new checked), so the casts are exact.
        vertical_indexes.extend(columns.iter().map(|&j| j as i32));
        slash_indexes.extend(distances.iter().map(|&d| d as i32));
    }
    Ok(VsSelection { batch: s.batch(), heads, nnz_v, nnz_s, vertical_indexes, slash_indexes })
}

/// Estimates a vertical-slash descriptor with `H = heads_q`: the indices of
/// [`estimate_vertical_slash_indices`] wrapped in a [`VerticalSlash`]. Same errors.
pub fn estimate_vertical_slash(inputs: &RefInputs, config: &VsEstimateConfig, softmax_scale: f64) -> Result<VerticalSlash> {
    let sel = estimate_vertical_slash_indices(inputs, config, softmax_scale)?;
    VerticalSlash::new(sel.batch, sel.heads, sel.nnz_v, sel.nnz_s, sel.vertical_indexes, sel.slash_indexes)
}

/// The config, the scale and the tensor lengths (RefInputs' fields are public, so the
/// lengths cannot be trusted).
fn check_args(inputs: &RefInputs, config: &VsEstimateConfig, softmax_scale: f64) -> Result<()> {
    config.check()?;
    if !(softmax_scale.is_finite() && softmax_scale > 0.0) {
        return Err(Error::InvalidSoftmaxScale { value: softmax_scale as f32, reason: "it must be finite and > 0".into() });
    }
    let s = inputs.shape;
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])
}

/// Query heads per estimation unit: 1, or the GQA group with [`VsEstimateConfig::per_kv_group`].
fn heads_per_unit(s: &AttnShape, config: &VsEstimateConfig) -> usize {
    if config.per_kv_group {
        s.heads_q() / s.heads_kv()
    } else {
        1
    }
}

/// The unforced scores of every unit, `[batch, units]` in order: per query head, or per kv
/// head the mean over its group's query heads.
fn unit_scores(inputs: &RefInputs, config: &VsEstimateConfig, scale: f64) -> Vec<(Vec<f64>, Vec<f64>)> {
    let s = inputs.shape;
    let per_unit = heads_per_unit(&s, config);
    let units = s.heads_q() / per_unit;
    run_parallel(s.batch() * units, |t| {
        let (b, u) = (t / units, t % units);
        let (mut vertical, mut slash) = probe_scores(inputs, &s, b, u * per_unit, config.last_q, scale);
        if per_unit > 1 {
            for h in u * per_unit + 1..(u + 1) * per_unit {
                let (v, sl) = probe_scores(inputs, &s, b, h, config.last_q, scale);
                vertical.iter_mut().zip(&v).for_each(|(a, x)| *a += x);
                slash.iter_mut().zip(&sl).for_each(|(a, x)| *a += x);
            }
            let mean = 1.0 / per_unit as f64;
            vertical.iter_mut().chain(slash.iter_mut()).for_each(|x| *x *= mean);
        }
        (vertical, slash)
    })
}

/// The scores the estimate ranks, before forcing: per (batch, query head) in order, the
/// column sums `[seq_k]` and the diagonal sums by distance `[seq_k]` of the probe rows'
/// softmax (with [`VsEstimateConfig::per_kv_group`], the group's mean, repeated for each of
/// its query heads). For tests that compare another estimator's selection by score. Same
/// errors as [`estimate_vertical_slash_indices`].
pub fn estimate_vertical_slash_scores(inputs: &RefInputs, config: &VsEstimateConfig, softmax_scale: f64) -> Result<Vec<(Vec<f64>, Vec<f64>)>> {
    check_args(inputs, config, softmax_scale)?;
    let s = inputs.shape;
    let per_unit = heads_per_unit(&s, config);
    let units = unit_scores(inputs, config, softmax_scale);
    Ok((0..s.batch() * s.heads_q()).map(|t| units[t / per_unit].clone()).collect())
}

/// Column sums and diagonal sums (indexed by distance) of the probe rows' softmax for
/// query head `h` of batch `b`.
fn probe_scores(inputs: &RefInputs, s: &AttnShape, b: usize, h: usize, last_q: usize, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let d = s.head_dim();
    let h_kv = s.kv_head(h);
    let (q_layout, kv_layout) = (s.q_layout(), s.kv_layout());
    let mut vertical = vec![0.0; s.seq_k()];
    let mut slash = vec![0.0; s.seq_k()];
    let mut probs = Vec::with_capacity(s.seq_k());
    for i in s.seq_q() - last_q.min(s.seq_q())..s.seq_q() {
        // Keys 0..visible; a row above the shifted diagonal (seq_k < seq_q) sees none and
        // contributes nothing rather than a NaN from an empty softmax.
        let visible = s.visible_keys(i, true);
        if visible == 0 {
            continue;
        }
        let q_off = q_layout.offset(b, i, h);
        let q = &inputs.q[q_off..q_off + d];
        probs.clear();
        probs.extend((0..visible).map(|j| {
            let k_off = kv_layout.offset(b, j, h_kv);
            scale * q.iter().zip(&inputs.k[k_off..k_off + d]).map(|(x, y)| x * y).sum::<f64>()
        }));
        let max = probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for p in probs.iter_mut() {
            *p = (*p - max).exp();
            sum += *p;
        }
        // Row i's diagonal key is visible - 1, so key j lies at distance visible - 1 - j.
        for (j, &p) in probs.iter().enumerate() {
            let p = p / sum;
            vertical[j] += p;
            slash[visible - 1 - j] += p;
        }
    }
    (vertical, slash)
}

/// Makes the first `n` entries outrank every computed score.
fn force(scores: &mut [f64], n: usize) {
    let n = n.min(scores.len());
    scores[..n].fill(f64::INFINITY);
}

/// The positions of the `n` largest scores (n <= len), in no particular order. Ties go to
/// the lower position and NaN ranks lowest, so the comparator is a strict total order and
/// the chosen set does not depend on the selection algorithm.
fn top_indices(scores: &[f64], n: usize) -> Vec<usize> {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if n < order.len() {
        order.select_nth_unstable_by(n - 1, |&a, &b| key(scores[b]).total_cmp(&key(scores[a])).then(a.cmp(&b)));
        order.truncate(n);
    }
    order
}

/// Runs `work(t)` for every `t < tasks` on all cores and returns the results in task order.
fn run_parallel<T: Send>(tasks: usize, work: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tasks.max(1));
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if t >= tasks {
                            break;
                        }
                        mine.push((t, work(t)));
                    }
                    mine
                })
            })
            .collect();
        // A worker can only panic on a bug in this module (inputs are validated above).
        workers.into_iter().flat_map(|w| w.join().expect("vertical-slash estimator worker panicked")).collect()
    });
    done.sort_unstable_by_key(|&(t, _)| t);
    done.into_iter().map(|(_, r)| r).collect()
}
