//! The vertical-slash descriptor (MInference): a few key columns that every row attends
//! ("verticals") plus a few diagonals at fixed distances from the main diagonal ("slashes").
//!
//! Format (docs/architecture.md): `vertical_indexes: i32 [B, H, NNZ_V]`, key positions strictly
//! ascending; `slash_indexes: i32 [B, H, NNZ_S]`, distances from the bottom-right causal
//! diagonal (0 = the diagonal itself), strictly DESCENDING (farthest first), the order
//! MInference's `vertical_slash_sparse_attention` sorts them into before conversion. `H` is
//! `heads_q`, or `heads_kv` when one descriptor serves a whole GQA group (query head `h`
//! then reads descriptor head `h / (heads_q / heads_kv)`).
//!
//! Validation rules:
//! - every vertical lies in `[0, seq_k)`: the last query row sees every key, so each such
//!   column is visible to some row, and anything else names no key;
//! - every slash distance lies in `[0, seq_k)`: a distance `d` touches a key only for rows
//!   whose diagonal key `i + seq_k - seq_q` is at least `d`, and the largest diagonal key is
//!   `seq_k - 1`, so `d >= seq_k` would be a slash that no row ever sees. It is rejected
//!   rather than silently ignored, because such a value only comes from a caller bug (e.g.
//!   distances computed for a longer context). A valid slash may still lie beyond every row
//!   of an early row block; the conversion then skips it for that block, as MInference does;
//! - `nnz_v` and `nnz_s` may be 0 (no verticals, or no slashes); with both 0 every row
//!   attends nothing (output 0, LSE -inf).
//!
//! # Which elements vertical-slash attention computes
//! Vertical-slash attention is causal only. Row `i` of row block `m = i / BLOCK_M` attends
//! key `j` iff `j <= i + seq_k - seq_q` (bottom-right causal) and either
//! - `j` lies in a converted tile: some `o` among the first `block_count` entries of
//!   `block_offset[b, h, m]` has `o <= j < min(o + BLOCK_N, seq_k)`, or
//! - `j` is among the first `column_count` entries of `column_index[b, h, m]`,
//!
//! where the tensors are those of [`convert`](super::vs_convert::convert). Tile rounding makes this a superset of the
//! "pure" pattern (exact verticals and exact diagonals, [`VerticalSlash::pure_mask`]); every
//! extra element lies within `2 * BLOCK_N - 1` diagonals of some slash that crosses the
//! row's block (see `vs_convert` for why). The attention kernels compute exactly this set,
//! and [`SparsePattern::element_mask`](crate::SparsePattern::element_mask) returns it.
//!
//! Non-causal vertical-slash attention is rejected with `InvalidParameter { name: "causal" }`:
//! slashes are distances from the causal diagonal and the converter places its tiles
//! relative to it, so without the causal cut the tile rounding would hand each row an
//! arbitrary band of future keys that no definition of the pattern asked for.

use crate::checked::product;
use crate::error::{at, Error, Result};
use crate::mask::ElementMask;
use crate::shape::{check_len, AttnShape};

/// Vertical and slash index tensors, checked for length on construction and against a
/// problem shape by [`SparsePattern::validate`](crate::SparsePattern::validate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerticalSlash {
    batch: usize,
    heads: usize,
    nnz_v: usize,
    nnz_s: usize,
    vertical_indexes: Vec<i32>,
    slash_indexes: Vec<i32>,
}

impl VerticalSlash {
    /// Wraps the two index tensors after checking their lengths (`batch * heads * nnz_v` and
    /// `batch * heads * nnz_s`). `batch` and `heads` must be at least 1 and every size must
    /// fit in i32, the type the kernels index with; the values are checked by `validate`,
    /// which needs the problem shape.
    pub fn new(
        batch: usize,
        heads: usize,
        nnz_v: usize,
        nnz_s: usize,
        vertical_indexes: Vec<i32>,
        slash_indexes: Vec<i32>,
    ) -> Result<Self> {
        for (dim, value) in [("batch", batch), ("heads", heads)] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
        }
        let max = i32::MAX as usize;
        for (dim, value) in [("batch", batch), ("heads", heads), ("nnz_v", nnz_v), ("nnz_s", nnz_s)] {
            if value > max {
                return Err(Error::DimensionTooLarge { dim, value, max });
            }
        }
        // Each factor is below 2^31, so the three-way products fit in a 64-bit usize; on a
        // 32-bit target they may not, and a length that cannot exist is an error, not a wrap.
        product("batch * heads * nnz_v", &[batch, heads, nnz_v])?;
        product("batch * heads * nnz_s", &[batch, heads, nnz_s])?;
        check_len("vertical_indexes", vertical_indexes.len(), &[batch, heads, nnz_v])?;
        check_len("slash_indexes", slash_indexes.len(), &[batch, heads, nnz_s])?;
        Ok(Self { batch, heads, nnz_v, nnz_s, vertical_indexes, slash_indexes })
    }

    /// Batch size `B` the tensors were built for.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Head count `H` of the tensors: `heads_q`, or `heads_kv` for one mask per GQA group.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Verticals per head (`NNZ_V`).
    pub fn nnz_v(&self) -> usize {
        self.nnz_v
    }

    /// Slashes per head (`NNZ_S`).
    pub fn nnz_s(&self) -> usize {
        self.nnz_s
    }

    /// The whole `[B, H, NNZ_V]` vertical tensor, as handed to `new`.
    pub fn vertical_indexes(&self) -> &[i32] {
        &self.vertical_indexes
    }

    /// The whole `[B, H, NNZ_S]` slash tensor, as handed to `new`.
    pub fn slash_indexes(&self) -> &[i32] {
        &self.slash_indexes
    }

    /// Verticals of descriptor head `h` in batch `b`, or `None` outside `[batch, heads]`.
    pub fn verticals(&self, b: usize, h: usize) -> Option<&[i32]> {
        (b < self.batch && h < self.heads).then(|| self.verticals_of(b, h))
    }

    /// Slash distances of descriptor head `h` in batch `b`, farthest first, or `None`
    /// outside `[batch, heads]`.
    pub fn slashes(&self, b: usize, h: usize) -> Option<&[i32]> {
        (b < self.batch && h < self.heads).then(|| self.slashes_of(b, h))
    }

    /// In-range positions only (crate loops over `0..batch`, `0..heads`).
    pub(crate) fn verticals_of(&self, b: usize, h: usize) -> &[i32] {
        let start = (b * self.heads + h) * self.nnz_v;
        &self.vertical_indexes[start..start + self.nnz_v]
    }

    pub(crate) fn slashes_of(&self, b: usize, h: usize) -> &[i32] {
        let start = (b * self.heads + h) * self.nnz_s;
        &self.slash_indexes[start..start + self.nnz_s]
    }

    /// The descriptor head that query head `head_q` reads under a shape that `validate`
    /// accepted: itself when `H == heads_q`, its GQA group otherwise.
    pub(crate) fn descriptor_head(&self, shape: &AttnShape, head_q: usize) -> usize {
        if self.heads == shape.heads_q() {
            head_q
        } else {
            head_q / shape.group_size()
        }
    }

    /// The pattern before tile rounding: row `i` sees key `j` iff `j` is causally visible
    /// and `j` is a vertical or `i + seq_k - seq_q - j` is a slash distance. The attention
    /// kernels compute a superset of this (see the module docs); it exists to state and
    /// test that relation. Validates first.
    pub fn pure_mask(&self, shape: &AttnShape) -> Result<ElementMask> {
        self.check(shape)?;
        let mut mask = ElementMask::try_empty(shape)?;
        let offset = shape.causal_offset();
        for b in 0..shape.batch() {
            for hq in 0..shape.heads_q() {
                let h = self.descriptor_head(shape, hq);
                for i in 0..shape.seq_q() {
                    let visible = shape.visible_keys(i, true);
                    let diagonal = i as i64 + offset;
                    for &v in self.verticals_of(b, h) {
                        if (v as usize) < visible {
                            mask.set(b, hq, i, v as usize);
                        }
                    }
                    for &d in self.slashes_of(b, h) {
                        let j = diagonal - d as i64;
                        if j >= 0 && (j as usize) < visible {
                            mask.set(b, hq, i, j as usize);
                        }
                    }
                }
            }
        }
        Ok(mask)
    }

    fn check_values(&self, shape: &AttnShape) -> Result<()> {
        let seq_k = shape.seq_k() as i64;
        let range = format!("[0, {seq_k}) (seq_k = {seq_k})");
        for b in 0..self.batch {
            for h in 0..self.heads {
                let mut prev: Option<i64> = None;
                for (k, &v) in self.verticals_of(b, h).iter().enumerate() {
                    let value = v as i64;
                    if !(0..seq_k).contains(&value) {
                        let at = at(&[b, h, k]);
                        return Err(Error::IndexOutOfRange { tensor: "vertical_indexes", at, value, range });
                    }
                    if let Some(prev) = prev.filter(|&p| value <= p) {
                        return Err(Error::IndexNotAscending { tensor: "vertical_indexes", at: at(&[b, h, k]), prev, value });
                    }
                    prev = Some(value);
                }
                let mut prev: Option<i64> = None;
                for (k, &d) in self.slashes_of(b, h).iter().enumerate() {
                    let value = d as i64;
                    if !(0..seq_k).contains(&value) {
                        let at = at(&[b, h, k]);
                        return Err(Error::IndexOutOfRange { tensor: "slash_indexes", at, value, range });
                    }
                    if let Some(prev) = prev.filter(|&p| value >= p) {
                        return Err(Error::IndexNotDescending { tensor: "slash_indexes", at: at(&[b, h, k]), prev, value });
                    }
                    prev = Some(value);
                }
            }
        }
        Ok(())
    }
}

/// Rejects a non-causal request (see the module docs for why it has no meaning here).
pub(crate) fn require_causal(causal: bool) -> Result<()> {
    if causal {
        return Ok(());
    }
    Err(Error::InvalidParameter {
        name: "causal",
        reason: "vertical-slash attention is defined only under the bottom-right causal mask: slashes are distances from that diagonal".into(),
    })
}

impl VerticalSlash {
    /// The checks of [`SparsePattern::validate`](crate::SparsePattern::validate): batch and heads against the problem, and
    /// every index value. (The trait impl lives in `vs_convert.rs`, next to the conversion
    /// that defines the element set.)
    pub(crate) fn check(&self, shape: &AttnShape) -> Result<()> {
        if self.batch != shape.batch() {
            return Err(Error::DescriptorMismatch {
                reason: format!("vertical-slash descriptor has batch {}, the problem has batch {}", self.batch, shape.batch()),
            });
        }
        if self.heads != shape.heads_q() && self.heads != shape.heads_kv() {
            return Err(Error::DescriptorMismatch {
                reason: format!(
                    "vertical-slash descriptor has {} heads; it must have heads_q = {} or heads_kv = {}",
                    self.heads, shape.heads_q(), shape.heads_kv()
                ),
            });
        }
        self.check_values(shape)
    }
}

