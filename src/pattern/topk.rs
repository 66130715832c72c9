//! Top-k token selection (DSA, NSA's selection branch, HiP): every query row lists the
//! individual keys it attends, per kv head.
//!
//! The index tensor is `indices: i32 [batch, seq_q, heads_kv, k]`. One row of `k` entries
//! serves every query head of a GQA group, because selectors score keys per kv head and
//! the gather kernel then loads each selected K/V row once for the whole group. `-1` pads
//! a row that selected fewer than `k` keys. Order within a row is free: the kernel's online
//! softmax does not care, and forcing a sort would cost selectors a pass for nothing.
//!
//! With causal attention, entries past a row's causal limit (`j > i + seq_k - seq_q`) are
//! not errors: a selector that runs once per block of rows, or without knowing the causal
//! offset, may pick keys that a given row cannot see, and both the kernel and the
//! reference skip them exactly like `-1`. `validate` only checks that they name a key.

use std::borrow::Cow;

use crate::error::{at, Error, Result};
use crate::mask::{ElementMask, SparsePattern};
use crate::shape::{check_len, AttnShape, MAX_SEQ};
use crate::source::{Source, TopkDims, TopkIndex};

/// Padding entry: "no key in this slot".
pub const NO_KEY: i32 = -1;

/// Per-query, per-kv-head lists of selected keys: `indices [batch, seq_q, heads_kv, k]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopkTokens {
    /// The sizes, in the form the kernels' `Source` carries them.
    dims: TopkDims,
    indices: Vec<i32>,
}

impl TopkTokens {
    /// Takes ownership of an index tensor after checking its dimensions and length. The
    /// entries themselves are checked by [`SparsePattern::validate`], which needs `seq_k`.
    pub fn new(batch: usize, seq_q: usize, heads_kv: usize, k: usize, indices: Vec<i32>) -> Result<Self> {
        for (dim, value) in [("batch", batch), ("seq_q", seq_q), ("heads_kv", heads_kv), ("k", k)] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
            if value > MAX_SEQ {
                return Err(Error::DimensionTooLarge { dim, value, max: MAX_SEQ });
            }
        }
        // Four dims under 2^31 can still overflow usize together: `check_len` reports that.
        check_len("indices", indices.len(), &[batch, seq_q, heads_kv, k])?;
        // Cannot fail: check_len has computed the same product.
        let dims = TopkDims::new(batch, seq_q, heads_kv, k)?;
        Ok(Self { dims, indices })
    }

    /// `[batch, seq_q, heads_kv, k]`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims.to_array()
    }

    /// Batch size the tensor was built for.
    pub fn batch(&self) -> usize {
        self.dims.batch()
    }

    /// Query rows per sequence.
    pub fn seq_q(&self) -> usize {
        self.dims.seq_q()
    }

    /// kv heads: one index row per kv head, shared by its query-head group.
    pub fn heads_kv(&self) -> usize {
        self.dims.heads_kv()
    }

    /// Slots per row (selected keys plus `-1` padding).
    pub fn k(&self) -> usize {
        self.dims.k()
    }

    /// The whole index tensor, row-major `[batch, seq_q, heads_kv, k]`, as the kernels read it.
    pub fn indices(&self) -> &[i32] {
        &self.indices
    }

    /// The `k` entries of query row `i` of kv head `h_kv` in batch `b`, or `None` when the
    /// position is outside the tensor (a lookup, not an invariant, so no panic).
    pub fn row(&self, b: usize, i: usize, h_kv: usize) -> Option<&[i32]> {
        if b >= self.batch() || i >= self.seq_q() || h_kv >= self.heads_kv() {
            return None;
        }
        let start = ((b * self.seq_q() + i) * self.heads_kv() + h_kv) * self.k();
        self.indices.get(start..start + self.k())
    }

    /// Kept (row, key) elements over the dense element count, over all query heads, with
    /// the causal mask applied to both. Padding and causally hidden entries are not kept.
    /// Validates first: duplicated or out-of-range entries would make the count meaningless.
    pub fn kept_fraction(&self, shape: &AttnShape, causal: bool) -> Result<f64> {
        self.validate(shape)?;
        // u128: the dense count is batch x seq_q x seq_k x heads_q, which a valid shape with
        // a small index tensor can push past u64.
        let mut kept = 0u128;
        let mut dense = 0u128;
        for b in 0..self.batch() {
            for i in 0..self.seq_q() {
                let limit = shape.visible_keys(i, causal);
                dense += limit as u128 * shape.heads_q() as u128;
                for h_kv in 0..self.heads_kv() {
                    let visible = self.visible_keys(b, i, h_kv, limit).count();
                    kept += visible as u128 * shape.group_size() as u128;
                }
            }
        }
        if dense == 0 {
            return Ok(0.0);
        }
        Ok(kept as f64 / dense as f64)
    }

    /// The keys of one row that attention actually reads: skips padding, negative garbage
    /// and everything at or past `limit` (the row's causal limit, or `seq_k`). Repeats are
    /// not removed here; [`SparsePattern::validate`] rejects them.
    pub fn visible_keys(&self, b: usize, i: usize, h_kv: usize, limit: usize) -> impl Iterator<Item = usize> + '_ {
        self.row(b, i, h_kv)
            .unwrap_or(&[])
            .iter()
            .filter_map(move |&j| usize::try_from(j).ok().filter(|&j| j < limit))
    }

    fn check_shape(&self, shape: &AttnShape) -> Result<()> {
        let pairs = [
            ("batch", self.batch(), shape.batch()),
            ("seq_q", self.seq_q(), shape.seq_q()),
            ("heads_kv", self.heads_kv(), shape.heads_kv()),
        ];
        for (name, ours, theirs) in pairs {
            if ours != theirs {
                return Err(Error::DescriptorMismatch {
                    reason: format!("top-k indices have {name} = {ours}, the problem has {name} = {theirs}"),
                });
            }
        }
        Ok(())
    }
}

impl SparsePattern for TopkTokens {
    /// Checks the shape itself, batch, `seq_q` and `heads_kv` against it, every entry against
    /// `-1 or 0..seq_k`, and that no key repeats within a row. Causally hidden keys pass.
    fn validate(&self, shape: &AttnShape) -> Result<()> {
        self.check_shape(shape)?;
        let seq_k = shape.seq_k();
        // (row number + 1, slot) of the last time each key was seen: one allocation for the
        // whole tensor instead of clearing a set per row.
        let mut seen: Vec<(usize, usize)> = vec![(0, 0); seq_k];
        for (row_no, row) in self.indices.chunks_exact(self.k()).enumerate() {
            let stamp = row_no + 1;
            let (bi, h_kv) = (row_no / self.heads_kv(), row_no % self.heads_kv());
            let (b, i) = (bi / self.seq_q(), bi % self.seq_q());
            for (slot, &j) in row.iter().enumerate() {
                if j == NO_KEY {
                    continue;
                }
                let key = match usize::try_from(j) {
                    Ok(key) if key < seq_k => key,
                    _ => {
                        return Err(Error::IndexOutOfRange {
                            tensor: "indices",
                            at: at(&[b, i, h_kv, slot]),
                            value: j as i64,
                            range: format!("-1 or 0..{seq_k}"),
                        })
                    }
                };
                let (last_row, first_slot) = seen[key];
                if last_row == stamp {
                    return Err(Error::DuplicateIndex {
                        tensor: "indices",
                        at: at(&[b, i, h_kv, slot]),
                        value: j as i64,
                        first_slot,
                    });
                }
                seen[key] = (stamp, slot);
            }
        }
        Ok(())
    }

    /// The index tensor, borrowed, after `validate` (out-of-range or repeated keys are an
    /// error here, where the kernel could only skip or double-count them).
    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        self.validate(shape)?;
        Ok(Source::TopK(TopkIndex { dims: self.dims, indices: Cow::Borrowed(&self.indices[..]) }))
    }

    /// Query head `h`, row `i` sees exactly the valid keys of row `i` of kv head
    /// `h / group_size`, intersected with the causal mask when `causal` is set.
    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask> {
        self.validate(shape)?;
        let mut mask = ElementMask::try_empty(shape)?;
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                let h_kv = shape.kv_head(h);
                for i in 0..shape.seq_q() {
                    for j in self.visible_keys(b, i, h_kv, shape.visible_keys(i, causal)) {
                        mask.set(b, h, i, j);
                    }
                }
            }
        }
        Ok(mask)
    }
}
