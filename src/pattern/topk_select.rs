//! Token top-k selection from a score tensor: the exact rule that the device kernel
//! (`kernels/topk_select.cu`, planned by [`crate::plan::topk_select`]) implements, and
//! [`select_topk_host`], its host reference.
//!
//! For every row `(b, i, h)` of `scores [batch, seq_q, heads, seq_k]` (f32 or bf16,
//! [`Score`]), the indices of
//! the row's `k` largest scores go to row `(b, i, h)` of `indices [batch, seq_q, heads, k]`
//! (i32), the format [`TopkTokens`](super::TopkTokens) takes (`heads` = its `heads_kv`):
//! - the candidates are keys `0..seq_k`, or with `causal` only `j <= i + seq_k - seq_q`
//!   (bottom-right aligned, as everywhere in this crate); a row with fewer than `k`
//!   candidates selects all of them;
//! - scores are ranked by [`order_key`]: larger first, `-inf` below every finite number,
//!   NaN (any payload) below `-inf`, `-0.0` just below `+0.0`; equal keys go to the lower
//!   key index. So the selection is one exact set, whatever the launch;
//! - the output row lists the selected keys in ascending key order, then `-1`
//!   ([`NO_KEY`](super::topk::NO_KEY)) in the slots a short row leaves.

use crate::checked::product;
use crate::error::{Error, Result};
use crate::shape::MAX_SEQ;

/// The sizes of a selection: `scores [batch, seq_q, heads, seq_k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectDims {
    /// Sequences.
    pub batch: usize,
    /// Query rows per sequence.
    pub seq_q: usize,
    /// Heads: one score row (and one index row) per head, e.g. the kv heads of DSA's indexer.
    pub heads: usize,
    /// Keys per row.
    pub seq_k: usize,
}

impl SelectDims {
    /// Checks the sizes and `k`: every dimension in `1..=i32::MAX`, `k` in `1..=seq_k`, and
    /// both tensors' element counts representable. Returns the number of rows
    /// (`batch * seq_q * heads`).
    pub fn validate(&self, k: usize) -> Result<usize> {
        for (dim, value) in [("batch", self.batch), ("seq_q", self.seq_q), ("heads", self.heads), ("seq_k", self.seq_k), ("k", k)] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
            if value > MAX_SEQ {
                return Err(Error::DimensionTooLarge { dim, value, max: MAX_SEQ });
            }
        }
        if k > self.seq_k {
            return Err(Error::InvalidParameter { name: "k", reason: format!("k = {k} exceeds seq_k = {}", self.seq_k) });
        }
        let rows = product("rows", &[self.batch, self.seq_q, self.heads])?;
        product("scores", &[rows, self.seq_k])?;
        product("indices", &[rows, k])?;
        Ok(rows)
    }

    /// The candidate keys of query row `i`: `0..n` with `n` this value.
    pub fn candidates(&self, i: usize, causal: bool) -> usize {
        if causal {
            // i + seq_k - seq_q + 1, clamped to [0, seq_k]; no overflow for sizes <= i32::MAX.
            (i + self.seq_k + 1).saturating_sub(self.seq_q).min(self.seq_k)
        } else {
            self.seq_k
        }
    }
}

/// The element types of a score tensor: their kernels are `topk_select_<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreDtype {
    /// f32 scores.
    F32,
    /// bfloat16 scores, ranked by their exact f32 value.
    BF16,
}

impl ScoreDtype {
    /// The name the kernel instantiations carry: `"f32"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            ScoreDtype::F32 => "f32",
            ScoreDtype::BF16 => "bf16",
        }
    }
}

/// A score element the selection takes (f32 or bf16), ranked by [`order_key`] of its exact
/// f32 value.
pub trait Score: Copy + Default + Send + Sync + bytemuck::Pod + 'static {
    /// The runtime tag, which selects the kernel.
    const DTYPE: ScoreDtype;
    /// The score's rank key ([`order_key`] of its f32 value).
    fn order_key(self) -> u32;
}

impl Score for f32 {
    const DTYPE: ScoreDtype = ScoreDtype::F32;
    fn order_key(self) -> u32 {
        order_key(self)
    }
}

impl Score for half::bf16 {
    const DTYPE: ScoreDtype = ScoreDtype::BF16;
    fn order_key(self) -> u32 {
        // Widening is exact, and every NaN stays a NaN.
        order_key(self.to_f32())
    }
}

/// The 32-bit key whose unsigned order is the selection's score order: the sign bit flipped
/// for a positive score, every bit inverted for a negative one, and 0 for every NaN (so a
/// NaN never displaces a number, `-inf` included).
pub fn order_key(score: f32) -> u32 {
    let bits = score.to_bits();
    if score.is_nan() {
        0
    } else if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The selection on the host: `indices [batch, seq_q, heads, k]` for `scores [batch, seq_q,
/// heads, seq_k]` by the rule in the module documentation (a sort of each row's candidates
/// by descending [`order_key`], then ascending index). `scores` must hold exactly
/// `batch * seq_q * heads * seq_k` elements.
pub fn select_topk_host<T: Score>(scores: &[T], dims: &SelectDims, k: usize, causal: bool) -> Result<Vec<i32>> {
    let rows = dims.validate(k)?;
    crate::shape::check_len("scores", scores.len(), &[rows, dims.seq_k])?;
    let mut indices = Vec::with_capacity(rows * k);
    let mut order: Vec<usize> = Vec::new();
    for (row, row_scores) in scores.chunks_exact(dims.seq_k).enumerate() {
        let i = (row / dims.heads) % dims.seq_q;
        let n = dims.candidates(i, causal);
        order.clear();
        order.extend(0..n);
        order.sort_unstable_by_key(|&j| (std::cmp::Reverse(row_scores[j].order_key()), j));
        order.truncate(k);
        order.sort_unstable();
        // Cannot truncate: every key is below seq_k <= i32::MAX.
        indices.extend(order.iter().map(|&j| j as i32));
        indices.extend(std::iter::repeat_n(super::topk::NO_KEY, k - order.len()));
    }
    Ok(indices)
}

/// The score row that index head `h` of a grouped selection ranks (see
/// [`crate::plan::topk_select::plan_rows`]): key `j`'s f32 sum of `group` consecutive score
/// heads, added in ascending order as the kernel adds them (flushing subnormals to zero, as
/// its fast-math add does); a group of one is the scores themselves.
pub fn group_sum<T: Score>(heads: &[&[T]]) -> Vec<f32> {
    let ftz = |x: f32| if x.is_subnormal() { 0f32.copysign(x) } else { x };
    let Some((first, rest)) = heads.split_first() else { return Vec::new() };
    let mut acc: Vec<f32> = first.iter().map(|&s| widen(s)).collect();
    for head in rest {
        for (a, &s) in acc.iter_mut().zip(head.iter()) {
            *a = ftz(ftz(*a) + ftz(widen(s)));
        }
    }
    acc
}

/// A score's exact f32 value (bf16 widened), recovered from its rank key, which is one to one
/// on every value but NaN (key 0; any NaN sums to a NaN).
fn widen<T: Score>(s: T) -> f32 {
    match s.order_key() {
        0 => f32::NAN,
        key if key & 0x8000_0000 != 0 => f32::from_bits(key & 0x7fff_ffff),
        key => f32::from_bits(!key),
    }
}

/// The grouped selection on the host: `indices [batch, seq_q, heads, k]` from `scores
/// [batch, seq_q, heads * group, seq_k]`, index head `h` ranking keys by [`group_sum`] of
/// score heads `h * group ..= h * group + group - 1` (one index set per GQA group from
/// per-query-head scores), then by the rule of [`select_topk_host`].
pub fn select_topk_grouped_host<T: Score>(scores: &[T], dims: &SelectDims, group: usize, k: usize, causal: bool) -> Result<Vec<i32>> {
    let rows = dims.validate(k)?;
    if group == 0 {
        return Err(Error::ZeroDimension { dim: "group" });
    }
    crate::shape::check_len("scores", scores.len(), &[rows, group, dims.seq_k])?;
    let mut sums = Vec::with_capacity(rows * dims.seq_k);
    for row in scores.chunks_exact(group * dims.seq_k) {
        let heads: Vec<&[T]> = row.chunks_exact(dims.seq_k).collect();
        sums.extend(group_sum(&heads));
    }
    select_topk_host(&sums, dims, k, causal)
}
