//! The f64 merge of partial attention states by their LSE: the specification of the
//! `merge_states` kernels ([`crate::plan::merge`]), over the contiguous layouts.
//!
//! For each row, with `m = max_s lse_s`: `lse = m + ln(sum_s exp(lse_s - m))` and
//! `out = sum_s exp(lse_s - lse) * out_s`. A state whose LSE is -inf contributes nothing
//! (its output row is not read, so it may hold anything); a row whose every state is -inf
//! gets output 0 and LSE -inf; a NaN or +inf LSE makes the row's output and LSE NaN.

use crate::error::Result;
use crate::shape::{check_len, MergeShape};

/// A merged state: output `[batch, seq, heads, head_dim]` and natural-log LSE `[batch, heads,
/// seq]`, contiguous, in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct RefMerged {
    /// Merged output rows, `[batch, seq, heads, head_dim]`.
    pub out: Vec<f64>,
    /// Merged LSE, `[batch, heads, seq]`; -inf for a row whose every state is -inf.
    pub lse: Vec<f64>,
}

/// Merges `shape.states()` partial states given contiguous: `partial_out [states, batch,
/// seq, heads, head_dim]` and `partial_lse [states, batch, heads, seq]` (f32 as the kernels
/// read them, or f64). Errors when a length does not match the shape.
pub fn merge_states_reference<P: Copy + Into<f64>>(shape: &MergeShape, partial_out: &[P], partial_lse: &[P]) -> Result<RefMerged> {
    let (s, b, t, h, d) = (shape.states(), shape.batch(), shape.seq(), shape.heads(), shape.head_dim());
    check_len("partial_out", partial_out.len(), &[s, b, t, h, d])?;
    check_len("partial_lse", partial_lse.len(), &[s, b, h, t])?;
    let (rows, lse_len) = (shape.out_len(), shape.lse_len());
    let mut out = vec![0.0; rows];
    let mut lse = vec![f64::NEG_INFINITY; lse_len];
    let mut weights = vec![0.0; s];
    for bi in 0..b {
        for ti in 0..t {
            for hi in 0..h {
                let lse_at = (bi * h + hi) * t + ti;
                let row_at = ((bi * t + ti) * h + hi) * d;
                let state_lse = |si: usize| partial_lse[si * lse_len + lse_at].into();
                let m = (0..s).map(state_lse).fold(f64::NEG_INFINITY, max_nan);
                if m == f64::NEG_INFINITY {
                    continue; // every state empty: output 0, LSE -inf
                }
                for (si, w) in weights.iter_mut().enumerate() {
                    *w = (state_lse(si) - m).exp();
                }
                let sum: f64 = weights.iter().sum();
                let merged = m + sum.ln();
                lse[lse_at] = merged;
                let row = &mut out[row_at..row_at + d];
                for si in 0..s {
                    let l = state_lse(si);
                    if l == f64::NEG_INFINITY {
                        continue;
                    }
                    // exp(lse_s - lse), through the maximum's frame: exp(lse_s - m) / sum.
                    let w = weights[si] / sum;
                    let part = &partial_out[si * rows + row_at..si * rows + row_at + d];
                    for (o, &x) in row.iter_mut().zip(part) {
                        *o += w * x.into();
                    }
                }
            }
        }
    }
    Ok(RefMerged { out, lse })
}

/// The larger of `a` and `b`, NaN if either is (`f64::max` would drop a NaN state).
fn max_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}
