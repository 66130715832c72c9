//! Outputs and the shared row loop of the CPU reference.

use crate::error::{at, Error, Result};
use crate::inputs::RefInputs;
use crate::shape::{check_len, AttnOptions, AttnShape};

/// Reference results: `out` is contiguous BSHD `[batch, seq_q, heads_q, head_dim]`, `lse`
/// is `[batch, heads_q, seq_q]` in natural log. A row with no key (or whose every score is
/// -inf) has output 0 and LSE -inf; a NaN or +inf score, or a NaN or inf V row of a key the
/// row attends, makes the row non-finite. Keys a row does not attend are never read (README,
/// "Non-finite inputs and the softmax scale", says where the kernels differ).
#[derive(Debug, Clone, PartialEq)]
pub struct RefOutput {
    /// The problem these results are for.
    pub shape: AttnShape,
    /// Attention output, contiguous `[batch, seq_q, heads_q, head_dim]`.
    pub out: Vec<f64>,
    /// Log-sum-exp of each row's scaled scores, `[batch, heads_q, seq_q]`, natural log;
    /// `-inf` for a row that sees no key.
    pub lse: Vec<f64>,
}

impl RefOutput {
    /// Largest absolute difference of the outputs, and of the finite LSE entries. Two LSEs
    /// that are both -inf count as equal; one -inf against a finite value counts as infinite.
    pub fn max_abs_diff(&self, other: &RefOutput) -> (f64, f64) {
        let out = self.out.iter().zip(&other.out).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let lse = self
            .lse
            .iter()
            .zip(&other.lse)
            .map(|(&a, &b)| if a == b { 0.0 } else { (a - b).abs() })
            .fold(0.0, f64::max);
        (out, lse)
    }
}

/// Query rows per unit of parallel work: large enough to amortise a task, small enough to
/// balance causal rows (whose cost grows with the row index) across threads.
const ROWS_PER_TASK: usize = 64;

/// One finished query row from a worker: `(b, h, i, output row [head_dim], lse)`.
type RowResult = (usize, usize, usize, Vec<f64>, f64);

/// How the reference turns a row's keys into softmax weights: the scale, and the options
/// engines ask for (README, "Softcap, sliding window and sinks").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRule<'a> {
    /// Multiplies q·k.
    pub scale: f64,
    /// Scaled scores `x` become `cap * tanh(x / cap)`.
    pub softcap: Option<f64>,
    /// Keys below `diagonal - window_left` are dropped, the diagonal of row `i` being
    /// `i + seq_k - seq_q` of its own sequence.
    pub window_left: Option<usize>,
    /// One logit per query head, added to the softmax denominator as `exp(sink)`.
    pub sinks: Option<&'a [f64]>,
}

impl<'a> ScoreRule<'a> {
    /// The scale alone: plain softmax attention.
    pub fn plain(scale: f64) -> Self {
        Self { scale, softcap: None, window_left: None, sinks: None }
    }

    /// The rule of `opts` (validated as the kernels validate them) for `head_dim`, with
    /// `sinks` (`[heads_q]`, checked against `heads_q`).
    pub fn new(opts: &AttnOptions, head_dim: usize, heads_q: usize, sinks: Option<&'a [f64]>) -> Result<Self> {
        opts.checked_window_left()?;
        if let Some(s) = sinks {
            check_len("sinks", s.len(), &[heads_q])?;
        }
        Ok(Self {
            scale: opts.scale(head_dim)? as f64,
            softcap: opts.checked_softcap()?.map(f64::from),
            window_left: opts.window_left,
            sinks,
        })
    }

    /// Whether key `j` survives the window for row `i` of a sequence of `seq_q` rows over
    /// `seq_k` keys.
    fn in_window(&self, i: usize, j: usize, seq_q: usize, seq_k: usize) -> bool {
        self.window_left.is_none_or(|w| j as i64 + w as i64 >= i as i64 + seq_k as i64 - seq_q as i64)
    }

    fn score(&self, dot: f64) -> f64 {
        let x = self.scale * dot;
        self.softcap.map_or(x, |cap| cap * (x / cap).tanh())
    }
}

/// Softmax attention where row `i` of query head `h` in batch `b` attends exactly the keys
/// that `keys(b, h, i, &mut list)` pushes (any order; duplicates would be counted twice, so
/// callers push each key once). Runs on all CPU cores.
///
/// Errors: tensor lengths in `inputs` that do not fit its shape (its fields are public), or a
/// pushed key at or past `seq_k` (`IndexOutOfRange`, tensor `keys`).
pub fn attend_rows<F>(inputs: &RefInputs, scale: f64, keys: F) -> Result<RefOutput>
where
    F: Fn(usize, usize, usize, &mut Vec<usize>) + Sync,
{
    attend_rows_with(inputs, &ScoreRule::plain(scale), |_| (inputs.shape.seq_q(), inputs.shape.seq_k()), keys)
}

/// [`attend_rows`] under `opts` (softcap, window) with `inputs`' sinks.
pub(crate) fn attend_rows_opts<F>(inputs: &RefInputs, opts: &AttnOptions, keys: F) -> Result<RefOutput>
where
    F: Fn(usize, usize, usize, &mut Vec<usize>) + Sync,
{
    let s = inputs.shape;
    let rule = ScoreRule::new(opts, s.head_dim(), s.heads_q(), inputs.sinks.as_deref())?;
    attend_rows_with(inputs, &rule, |_| (s.seq_q(), s.seq_k()), keys)
}

/// [`attend_rows`] under `rule`; `lens(b)` gives batch entry `b`'s own (seq_q, seq_k), whose
/// bottom-right diagonal the window is measured from (varlen sequences each have theirs).
pub fn attend_rows_with<F, L>(inputs: &RefInputs, rule: &ScoreRule<'_>, lens: L, keys: F) -> Result<RefOutput>
where
    F: Fn(usize, usize, usize, &mut Vec<usize>) + Sync,
    L: Fn(usize) -> (usize, usize) + Sync,
{
    let s = inputs.shape;
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    check_len("v", inputs.v.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    // The first out-of-range key any worker meets; the row loop cannot return an error.
    let bad_key: std::sync::OnceLock<Error> = std::sync::OnceLock::new();
    let tasks: Vec<(usize, usize, usize)> = (0..s.batch())
        .flat_map(|b| (0..s.heads_q()).flat_map(move |h| (0..s.seq_q()).step_by(ROWS_PER_TASK).map(move |i| (b, h, i))))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tasks.len().max(1));

    let mut out = vec![0.0; s.q_len()];
    let mut lse = vec![f64::NEG_INFINITY; s.lse_len()];
    let results: Vec<Vec<RowResult>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut list = Vec::new();
                    let mut scores = Vec::new();
                    loop {
                        let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(b, h, i0)) = tasks.get(t) else { break };
                        for i in i0..(i0 + ROWS_PER_TASK).min(s.seq_q()) {
                            list.clear();
                            keys(b, h, i, &mut list);
                            if rule.window_left.is_some() {
                                let (lq, lk) = lens(b);
                                list.retain(|&j| rule.in_window(i, j, lq, lk));
                            }
                            if let Some(&j) = list.iter().find(|&&j| j >= s.seq_k()) {
                                let _ = bad_key.set(Error::IndexOutOfRange {
                                    tensor: "keys",
                                    at: at(&[b, h, i]),
                                    value: i64::try_from(j).unwrap_or(i64::MAX),
                                    range: format!("0..{} (seq_k)", s.seq_k()),
                                });
                                continue;
                            }
                            let (row, row_lse) = attend_one_row(inputs, rule, b, h, i, &list, &mut scores);
                            done.push((b, h, i, row, row_lse));
                        }
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("reference worker panicked")).collect()
    });
    if let Some(err) = bad_key.into_inner() {
        return Err(err);
    }
    let layout = s.q_layout();
    for (b, h, i, row, row_lse) in results.into_iter().flatten() {
        let off = layout.offset(b, i, h);
        out[off..off + s.head_dim()].copy_from_slice(&row);
        lse[(b * s.heads_q() + h) * s.seq_q() + i] = row_lse;
    }
    Ok(RefOutput { shape: s, out, lse })
}

/// Two-pass softmax over the listed keys of one row, in f64.
fn attend_one_row(
    inputs: &RefInputs,
    rule: &ScoreRule<'_>,
    b: usize,
    h: usize,
    i: usize,
    keys: &[usize],
    scores: &mut Vec<f64>,
) -> (Vec<f64>, f64) {
    let d = inputs.shape.head_dim();
    let h_kv = inputs.shape.kv_head(h);
    let q = inputs.q_row(b, i, h);
    let mut row = vec![0.0; d];
    let sink = rule.sinks.map(|s| s[h]);
    if keys.is_empty() {
        // A sink alone: weight 1 on no value row, so output 0 and LSE = the sink.
        return (row, sink.unwrap_or(f64::NEG_INFINITY));
    }
    scores.clear();
    scores.extend(keys.iter().map(|&j| {
        let off = inputs.kv_offset(b, j, h_kv);
        rule.score(q.iter().zip(&inputs.k[off..off + d]).map(|(a, b)| a * b).sum::<f64>())
    }));
    // `f64::max` skips NaN scores; they still make `sum` (and the row) NaN below. The sink
    // takes part in the maximum like a score.
    let max = scores.iter().copied().chain(sink).fold(f64::NEG_INFINITY, f64::max);
    // Every score -inf (infinite inputs): exp(-inf - -inf) would be NaN. Such a row gets
    // weight 0 for every key, and a sum of 0 reads as a row with no key, as in the kernels.
    let base = if max == f64::NEG_INFINITY { 0.0 } else { max };
    let mut sum = 0.0;
    for (&j, score) in keys.iter().zip(scores.iter()) {
        let p = (score - base).exp();
        sum += p;
        let off = inputs.kv_offset(b, j, h_kv);
        for (acc, v) in row.iter_mut().zip(&inputs.v[off..off + d]) {
            *acc += p * v;
        }
    }
    if sum == 0.0 {
        // Not `row / 0`: a NaN or inf V row of a key with weight 0 put 0 * NaN in `row`.
        // With a sink the denominator is the sink's alone: LSE = the sink.
        return (vec![0.0; d], sink.unwrap_or(f64::NEG_INFINITY));
    }
    let sum = sum + sink.map_or(0.0, |s| (s - base).exp());
    for acc in row.iter_mut() {
        *acc /= sum;
    }
    (row, base + sum.ln())
}
