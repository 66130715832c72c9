//! The block-sparse descriptor (SeerAttention, MInference block-sparse): for every row
//! block of every head, an ascending list of the key blocks it attends.
//!
//! Format (docs/architecture.md): `block_count: i32 [B, H, MB]` and `block_index: i32 [B, H, MB,
//! max_blocks]`, with `MB = ceil(seq_q / BLOCK_M)`. Only the first `block_count` entries of
//! an index row are read, so padding (conventionally -1) past the count is never an error.
//! `H` is `heads_q`, or `heads_kv` when one mask serves a whole GQA group.

use std::borrow::Cow;

use super::{BLOCK_M, BLOCK_N};
use crate::checked::product;
use crate::error::{at, Error, Result};
use crate::mask::{ElementMask, SparsePattern};
use crate::shape::{check_len, AttnShape};
use crate::source::{BlockSparseDims, BlockSparseIndex, Source};

/// Block-sparse index tensors, checked for size on construction and against a problem
/// shape by [`SparsePattern::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSparse {
    /// The sizes, in the form the kernels' `Source` carries them.
    dims: BlockSparseDims,
    block_count: Vec<i32>,
    block_index: Vec<i32>,
}

impl BlockSparse {
    /// Wraps existing index tensors after checking their lengths. `batch`, `heads` and
    /// `row_blocks` must be at least 1; `max_blocks` may be 0 only when every count is 0
    /// (a descriptor that keeps nothing). Index values are checked by `validate`, which
    /// needs the problem shape.
    pub fn new(
        batch: usize,
        heads: usize,
        row_blocks: usize,
        max_blocks: usize,
        block_count: Vec<i32>,
        block_index: Vec<i32>,
    ) -> Result<Self> {
        for (dim, value) in [("batch", batch), ("heads", heads), ("row_blocks", row_blocks)] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
        }
        product("batch * heads * row_blocks * max_blocks", &[batch, heads, row_blocks, max_blocks])?;
        check_len("block_count", block_count.len(), &[batch, heads, row_blocks])?;
        check_len("block_index", block_index.len(), &[batch, heads, row_blocks, max_blocks])?;
        // Cannot fail: the product above covers both tensors.
        let dims = BlockSparseDims::new(batch, heads, row_blocks, max_blocks)?;
        let this = Self { dims, block_count, block_index };
        if max_blocks == 0 {
            // No index row has room for an entry, so any non-zero count is already wrong.
            if let Some(flat) = this.block_count.iter().position(|&c| c != 0) {
                return Err(Error::CountOutOfRange {
                    tensor: "block_count",
                    at: at(&this.unflatten(flat)),
                    value: this.block_count[flat] as i64,
                    max: 0,
                });
            }
        }
        Ok(this)
    }

    /// Builds the descriptor from a boolean block mask `[B, H, MB, NB]`: row `m` lists every
    /// `n` whose entry is true, ascending. `max_blocks` is the longest list, but at least 1
    /// so the index tensor is never empty (a zero-length device buffer is awkward); unused
    /// slots hold -1.
    pub fn from_block_mask(
        batch: usize,
        heads: usize,
        row_blocks: usize,
        key_blocks: usize,
        mask: &[bool],
    ) -> Result<Self> {
        for (dim, value) in
            [("batch", batch), ("heads", heads), ("row_blocks", row_blocks), ("key_blocks", key_blocks)]
        {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
        }
        if key_blocks > i32::MAX as usize {
            return Err(Error::DimensionTooLarge {
                dim: "key_blocks",
                value: key_blocks,
                max: i32::MAX as usize,
            });
        }
        product("batch * heads * row_blocks * key_blocks", &[batch, heads, row_blocks, key_blocks])?;
        check_len("block_mask", mask.len(), &[batch, heads, row_blocks, key_blocks])?;

        let rows: Vec<&[bool]> = mask.chunks_exact(key_blocks).collect();
        let max_blocks = rows.iter().map(|r| r.iter().filter(|&&x| x).count()).max().unwrap_or(0).max(1);
        let mut block_count = Vec::with_capacity(rows.len());
        let mut block_index = vec![-1i32; rows.len() * max_blocks];
        for (row, slots) in rows.iter().zip(block_index.chunks_exact_mut(max_blocks)) {
            let kept = row.iter().enumerate().filter(|&(_, &x)| x).map(|(n, _)| n as i32);
            let mut count = 0;
            for (slot, n) in slots.iter_mut().zip(kept) {
                *slot = n;
                count += 1;
            }
            block_count.push(count);
        }
        Self::new(batch, heads, row_blocks, max_blocks, block_count, block_index)
    }

    /// Batch size the descriptor was built for.
    pub fn batch(&self) -> usize {
        self.dims.batch()
    }

    /// `H`: heads_q, or heads_kv when one mask serves a GQA group.
    pub fn heads(&self) -> usize {
        self.dims.heads()
    }

    /// `MB`: row blocks, `ceil(seq_q / BLOCK_M)` for a matching problem.
    pub fn row_blocks(&self) -> usize {
        self.dims.row_blocks()
    }

    /// Capacity of each index row (the last dimension of `block_index`).
    pub fn max_blocks(&self) -> usize {
        self.dims.max_blocks()
    }

    /// `[B, H, MB, max_blocks]`, in the order the tensors are laid out.
    pub fn dims(&self) -> [usize; 4] {
        self.dims.to_array()
    }

    /// The raw `block_count` tensor `[B, H, MB]`, for upload to the device.
    pub fn block_count(&self) -> &[i32] {
        &self.block_count
    }

    /// The raw `block_index` tensor `[B, H, MB, max_blocks]`, padding included, for upload.
    pub fn block_index(&self) -> &[i32] {
        &self.block_index
    }

    /// How many key blocks row block `m` of head `h` in batch `b` lists. Errors if the
    /// position is outside the descriptor or the stored count is outside `0..=max_blocks`.
    pub fn count(&self, b: usize, h: usize, m: usize) -> Result<usize> {
        let flat = self.flat_position(b, h, m)?;
        let value = self.block_count[flat];
        if value < 0 || value as usize > self.max_blocks() {
            return Err(Error::CountOutOfRange {
                tensor: "block_count",
                at: at(&[b, h, m]),
                value: value as i64,
                max: self.max_blocks(),
            });
        }
        Ok(value as usize)
    }

    /// The counted key-block ids of row block `m` of head `h` in batch `b` (padding
    /// excluded). Same errors as [`BlockSparse::count`]; the ids themselves are checked by
    /// `validate`.
    pub fn blocks(&self, b: usize, h: usize, m: usize) -> Result<&[i32]> {
        let count = self.count(b, h, m)?;
        let start = self.flat_position(b, h, m)? * self.max_blocks();
        Ok(&self.block_index[start..start + count])
    }

    /// The descriptor head that query head `head_q` reads: itself when `H == heads_q`,
    /// otherwise its GQA group. Meaningful only for a shape the descriptor validated against.
    pub fn mask_head(&self, shape: &AttnShape, head_q: usize) -> usize {
        if self.heads() == shape.heads_q() || shape.heads_kv() == 0 {
            head_q
        } else {
            head_q / (shape.heads_q() / shape.heads_kv()).max(1)
        }
    }

    /// Tiles of work, summed over batch and query heads: `(kept, dense)`. A tile is one row
    /// block by one key block holding at least one visible element (under `causal`, a
    /// tile entirely above the diagonal is not work even in the dense count), so
    /// `kept / dense` is the fraction of the dense kernel's tiles the sparse kernel runs.
    /// Validates first, because counting an invalid descriptor has no meaning.
    pub fn kept_tiles(&self, shape: &AttnShape, causal: bool) -> Result<(usize, usize)> {
        self.validate(shape)?;
        let mut kept = 0;
        let mut dense = 0;
        for m in 0..self.row_blocks() {
            // Visibility grows with the row index, so the block's last row sees the most.
            let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q()) - 1;
            let visible = shape.visible_keys(last_row, causal);
            let live_tiles = visible.div_ceil(BLOCK_N);
            dense += live_tiles * shape.batch() * shape.heads_q();
            for b in 0..shape.batch() {
                for h in 0..shape.heads_q() {
                    let listed = self.counted(b, self.mask_head(shape, h), m);
                    kept += listed.iter().filter(|&&n| (n as usize) < live_tiles).count();
                }
            }
        }
        Ok((kept, dense))
    }

    /// Flat offset of `[b, h, m]` in `block_count`, or an error naming the bad coordinate.
    fn flat_position(&self, b: usize, h: usize, m: usize) -> Result<usize> {
        for (value, extent, dim) in
            [(b, self.batch(), "batch"), (h, self.heads(), "heads"), (m, self.row_blocks(), "row_blocks")]
        {
            if value >= extent {
                return Err(Error::IndexOutOfRange {
                    tensor: "block_count",
                    at: at(&[b, h, m]),
                    value: value as i64,
                    range: format!("0..{extent} ({dim})"),
                });
            }
        }
        Ok((b * self.heads() + h) * self.row_blocks() + m)
    }

    /// `[b, h, m]` of a flat `block_count` offset, for error messages.
    fn unflatten(&self, flat: usize) -> [usize; 3] {
        let m = flat % self.row_blocks();
        let bh = flat / self.row_blocks();
        [bh / self.heads(), bh % self.heads(), m]
    }

    /// The counted entries of one index row, with the count clamped into `0..=max_blocks`
    /// so that even an unvalidated descriptor cannot cause an out-of-bounds slice. Callers
    /// validate first; the clamp is a second line of defence, not a semantics.
    pub(crate) fn counted(&self, b: usize, h: usize, m: usize) -> &[i32] {
        let flat = (b * self.heads() + h) * self.row_blocks() + m;
        let Some(&count) = self.block_count.get(flat) else { return &[] };
        let count = (count.max(0) as usize).min(self.max_blocks());
        let start = flat * self.max_blocks();
        self.block_index.get(start..start + count).unwrap_or(&[])
    }
}

impl SparsePattern for BlockSparse {
    fn validate(&self, shape: &AttnShape) -> Result<()> {
        let shape = *shape;
        if self.batch() != shape.batch() {
            return Err(Error::DescriptorMismatch {
                reason: format!(
                    "block-sparse descriptor has batch {}, the problem has batch {}",
                    self.batch(), shape.batch()
                ),
            });
        }
        if self.heads() != shape.heads_q() && self.heads() != shape.heads_kv() {
            return Err(Error::DescriptorMismatch {
                reason: format!(
                    "block-sparse descriptor has {} heads; it must have heads_q ({}) or heads_kv ({})",
                    self.heads(), shape.heads_q(), shape.heads_kv()
                ),
            });
        }
        let want_rows = shape.seq_q().div_ceil(BLOCK_M);
        if self.row_blocks() != want_rows {
            return Err(Error::DescriptorMismatch {
                reason: format!(
                    "block-sparse descriptor has {} row blocks; seq_q = {} needs ceil({}/{BLOCK_M}) = {want_rows}",
                    self.row_blocks(), shape.seq_q(), shape.seq_q()
                ),
            });
        }
        let key_blocks = shape.seq_k().div_ceil(BLOCK_N) as i64;
        for b in 0..self.batch() {
            for h in 0..self.heads() {
                for m in 0..self.row_blocks() {
                    self.count(b, h, m)?;
                    let mut prev: Option<i64> = None;
                    for (slot, &n) in self.counted(b, h, m).iter().enumerate() {
                        let n = n as i64;
                        if !(0..key_blocks).contains(&n) {
                            return Err(Error::IndexOutOfRange {
                                tensor: "block_index",
                                at: at(&[b, h, m, slot]),
                                value: n,
                                range: format!("0..{key_blocks} (key blocks of seq_k = {})", shape.seq_k()),
                            });
                        }
                        if let Some(p) = prev.filter(|&p| n <= p) {
                            return Err(Error::IndexNotAscending {
                                tensor: "block_index",
                                at: at(&[b, h, m, slot]),
                                prev: p,
                                value: n,
                            });
                        }
                        prev = Some(n);
                    }
                }
            }
        }
        Ok(())
    }

    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        self.validate(shape)?;
        let dims = self.dims;
        let (block_count, block_index) = (Cow::Borrowed(&self.block_count[..]), Cow::Borrowed(&self.block_index[..]));
        Ok(Source::BlockSparse(BlockSparseIndex { dims, block_count, block_index }))
    }

    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask> {
        self.validate(shape)?;
        let mut mask = ElementMask::try_empty(shape)?;
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                let mh = self.mask_head(shape, h);
                for i in 0..shape.seq_q() {
                    let limit = shape.visible_keys(i, causal);
                    for &n in self.counted(b, mh, i / BLOCK_M) {
                        let start = n as usize * BLOCK_N;
                        mask.set_range(b, h, i, start, (start + BLOCK_N).min(limit));
                    }
                }
            }
        }
        Ok(mask)
    }
}
