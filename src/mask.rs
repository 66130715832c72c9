//! The element mask: which key each query row of each query head attends.
//!
//! Every sparsity descriptor expands to one of these (`SparsePattern::element_mask`), and
//! the dense masked reference consumes it. It is the common ground on which a sparse
//! reference, a kernel and a descriptor are compared.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::shape::AttnShape;
use crate::source::Source;

/// A bit per (batch, query head, query row, key): `[batch, heads_q, seq_q, seq_k]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ElementMask {
    batch: usize,
    heads: usize,
    seq_q: usize,
    seq_k: usize,
    words_per_row: usize,
    bits: Vec<u64>,
}

impl std::fmt::Debug for ElementMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ElementMask[{} x {} x {} x {}] ({} set)",
            self.batch,
            self.heads,
            self.seq_q,
            self.seq_k,
            self.count()
        )
    }
}

impl ElementMask {
    /// A mask with no key allowed anywhere, sized for the query heads of `shape`.
    ///
    /// # Panics
    /// Like `vec!`, when the `batch x heads_q x seq_q x ceil(seq_k / 64)` words do not fit
    /// in memory. [`SparsePattern::element_mask`] checks that and returns an error instead.
    pub fn empty(shape: &AttnShape) -> Self {
        let words_per_row = shape.seq_k().div_ceil(64);
        Self {
            batch: shape.batch(),
            heads: shape.heads_q(),
            seq_q: shape.seq_q(),
            seq_k: shape.seq_k(),
            words_per_row,
            bits: vec![0; shape.batch() * shape.heads_q() * shape.seq_q() * words_per_row],
        }
    }

    /// Like [`ElementMask::empty`], but a mask whose bit count overflows `usize` or cannot
    /// be allocated is an error rather than a capacity-overflow panic or an allocation
    /// abort: a valid shape with a small descriptor can still imply an enormous mask.
    pub(crate) fn try_empty(shape: &AttnShape) -> Result<Self> {
        let words_per_row = shape.seq_k().div_ceil(64);
        let words = crate::checked::product("element mask", &[shape.batch(), shape.heads_q(), shape.seq_q(), words_per_row]).ok();
        let unallocatable = || Error::InvalidParameter {
            name: "element mask",
            reason: format!(
                "a [{} x {} x {} x {}] bit mask cannot be allocated",
                shape.batch(), shape.heads_q(), shape.seq_q(), shape.seq_k()
            ),
        };
        let words = words.ok_or_else(unallocatable)?;
        let mut bits = Vec::new();
        bits.try_reserve_exact(words).map_err(|_| unallocatable())?;
        bits.resize(words, 0);
        Ok(Self { batch: shape.batch(), heads: shape.heads_q(), seq_q: shape.seq_q(), seq_k: shape.seq_k(), words_per_row, bits })
    }

    /// Dense attention: every key, or the bottom-right causal triangle.
    pub fn dense(shape: &AttnShape, causal: bool) -> Self {
        let mut mask = Self::empty(shape);
        mask.allow_visible(shape, causal);
        mask
    }

    /// Allows every key each row may see (all, or the bottom-right causal triangle).
    pub(crate) fn allow_visible(&mut self, shape: &AttnShape, causal: bool) {
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                for i in 0..shape.seq_q() {
                    self.set_range(b, h, i, 0, shape.visible_keys(i, causal));
                }
            }
        }
    }

    /// Builds a mask from a predicate, evaluated once per element.
    pub fn from_fn(shape: &AttnShape, mut allowed: impl FnMut(usize, usize, usize, usize) -> bool) -> Self {
        let mut mask = Self::empty(shape);
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                for i in 0..shape.seq_q() {
                    for j in 0..shape.seq_k() {
                        if allowed(b, h, i, j) {
                            mask.set(b, h, i, j);
                        }
                    }
                }
            }
        }
        mask
    }

    /// The mask's extent `[batch, heads_q, seq_q, seq_k]`, the order of the indices
    /// every accessor takes.
    pub fn dims(&self) -> [usize; 4] {
        [self.batch, self.heads, self.seq_q, self.seq_k]
    }

    fn row_start(&self, b: usize, h: usize, i: usize) -> usize {
        ((b * self.heads + h) * self.seq_q + i) * self.words_per_row
    }

    /// The word and bit of element `[b, h, i, j]`, or `None` outside the mask.
    fn position(&self, b: usize, h: usize, i: usize, j: usize) -> Option<(usize, u64)> {
        (b < self.batch && h < self.heads && i < self.seq_q && j < self.seq_k)
            .then(|| (self.row_start(b, h, i) + j / 64, 1u64 << (j % 64)))
    }

    /// Allows key `j` for row `i` of head `h` in batch `b`. A position outside
    /// `[batch, heads, seq_q, seq_k]` names no element, so nothing is set.
    pub fn set(&mut self, b: usize, h: usize, i: usize, j: usize) {
        if let Some((w, bit)) = self.position(b, h, i, j) {
            self.bits[w] |= bit;
        }
    }

    /// Allows keys `start..end` (clipped to `seq_k`; nothing outside the mask).
    pub fn set_range(&mut self, b: usize, h: usize, i: usize, start: usize, end: usize) {
        for j in start..end.min(self.seq_k) {
            self.set(b, h, i, j);
        }
    }

    /// Whether key `j` is allowed for row `i` of head `h` in batch `b`; false outside the mask.
    pub fn get(&self, b: usize, h: usize, i: usize, j: usize) -> bool {
        self.position(b, h, i, j).is_some_and(|(w, bit)| self.bits[w] & bit != 0)
    }

    /// The allowed keys of one row, ascending; none for a row outside the mask.
    pub fn row_keys(&self, b: usize, h: usize, i: usize) -> impl Iterator<Item = usize> + '_ {
        let words = match self.position(b, h, i, 0) {
            Some((start, _)) => &self.bits[start..start + self.words_per_row],
            None => &[][..],
        };
        words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }

    /// Keeps only the elements also allowed by the bottom-right causal mask.
    pub fn apply_causal(&mut self, shape: &AttnShape) {
        for b in 0..self.batch {
            for h in 0..self.heads {
                for i in 0..self.seq_q {
                    let limit = shape.visible_keys(i, true);
                    let start = self.row_start(b, h, i);
                    for (w, word) in self.bits[start..start + self.words_per_row].iter_mut().enumerate() {
                        let lo = w * 64;
                        if lo >= limit {
                            *word = 0;
                        } else if limit - lo < 64 {
                            *word &= (1u64 << (limit - lo)) - 1;
                        }
                    }
                }
            }
        }
    }

    /// Number of allowed elements.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Fraction of the dense (causal or full) element count that this mask keeps.
    pub fn density(&self, shape: &AttnShape, causal: bool) -> f64 {
        let dense: usize = (0..shape.seq_q()).map(|i| shape.visible_keys(i, causal)).sum::<usize>()
            * shape.batch()
            * shape.heads_q();
        if dense == 0 {
            return 0.0;
        }
        self.count() as f64 / dense as f64
    }
}

/// A sparsity descriptor: validated index tensors that say which keys each query row sees.
pub trait SparsePattern {
    /// Checks the descriptor against a problem shape: tensor sizes, head counts and every
    /// index. Entries that the format says to ignore (past a count, or -1) are not errors.
    fn validate(&self, shape: &AttnShape) -> Result<()>;

    /// The exact set of (row, key) elements that attention under this descriptor computes,
    /// including the causal mask when `causal` is set. Validates first.
    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask>;

    /// The index tensors a launch reads, as a [`Source`], after validating them against
    /// `shape` (so a bad index is an error here, on every backend, not an entry a kernel
    /// skips): borrowed where the descriptor stores them as the kernels read them, built
    /// otherwise (the converted vertical-slash index, A-shape's block lists).
    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>>;
}
