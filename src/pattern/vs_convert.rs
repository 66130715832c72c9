//! Converts a vertical-slash descriptor into the per-row-block tensors the attention
//! kernels walk: tiles of `BLOCK_N` keys that cover the slashes, plus single columns for the
//! verticals those tiles miss. `kernels/vs_convert.cu` (`vertical_slash_convert`) computes the
//! same tensors on the GPU, bit for bit.
//!
//! Output, per batch `b`, descriptor head `h` and row block `m` (`MB = ceil(seq_q / BLOCK_M)`):
//! `block_count [B, H, MB]`, `block_offset [B, H, MB, NNZ_S]` (strictly ascending start keys
//! of disjoint `BLOCK_N`-key tiles), `column_count [B, H, MB]`, `column_index [B, H, MB,
//! NNZ_V]` (strictly ascending keys outside every tile). Entries past a count are -1.
//!
//! # The rule (MInference's `convert_vertical_slash_indexes`)
//! Row block `m` spans the diagonal keys `lo = m * BLOCK_M + seq_k - seq_q` up to
//! `hi = lo + BLOCK_M` (a full block even when the last one is partial). Slash distance `d`
//! crosses the block on keys `[lo - d, hi - d)`; a slash with `d >= hi` lies entirely before
//! key 0 and is skipped; otherwise its window is `[e - BLOCK_M, e)` with
//! `e = max(hi - d, BLOCK_M)` (a window reaching below key 0 is shifted to `[0, BLOCK_M)`).
//! Taking slashes farthest first, windows arrive with non-decreasing `e`, and a running
//! range `[start, end)` absorbs them: a window starting past `end` closes the range and
//! opens a new one equal to the window; a window sticking out past `end` grows the range by
//! exactly `BLOCK_M` keys; a window inside changes nothing. Each closed range is emitted as
//! tile starts `start, start + BLOCK_N, ...` below `end`. Verticals inside a range are
//! absorbed; the others become columns.
//!
//! Each slash adds at most one tile, so `block_count <= NNZ_S`, and each vertical at most
//! one column, so `column_count <= NNZ_V`: the outputs always fit.
//!
//! # Where we deliberately differ from MInference
//! a. No out-of-range reads. MInference's skip loop (`while (s_idx >= end_m) s_idx =
//!    slash_indexes[s++]`) reads past `NNZ_S` when every slash lies beyond a row block (a
//!    later revision bounds the loop but then emits a tile at `end_m`, past every row of
//!    the block). Ours stops: that row block gets no tiles, and every causally visible
//!    vertical becomes a column.
//! b. MInference leaves its merge loop once the last slash range is passed and drops the
//!    verticals after it; ours keeps every causally visible vertical as a column. With
//!    slash 0 present (the usual case, and `seq_q == seq_k`) the last range reaches `end_m`,
//!    so the dropped verticals are exactly those no row of the block can see and both give
//!    the same indices (`tests/vs_convert.rs` checks this against a re-statement of
//!    MInference's loop).
//! c. `seq_q != seq_k`: the block's rows are placed in key coordinates shifted by
//!    `seq_k - seq_q` (bottom-right causal). MInference only handles `seq_q == seq_k`.
//! d. Nothing that no row of the block can see is emitted: tiles starting at or after the
//!    block's visibility limit `min(last row of the block + seq_k - seq_q + 1, seq_k)` are
//!    dropped (MInference can emit tiles at or past `seq_k` in a partial last block), and a
//!    vertical at or past that limit is not a column.
//!
//! Why tile rounding stays near the slashes: a new range's tiles are one slash window; a
//! growth tile `[end, end + BLOCK_M)` is added only for a window `[e - BLOCK_M, e)` with
//! `end < e <= end + BLOCK_M`, and that slash's own keys for the block's rows lie in
//! `[e - BLOCK_M, e)`. So every key a tile adds to row `i` lies within `2 * BLOCK_N - 1`
//! diagonals of a slash that crosses the row's block (`BLOCK_M == BLOCK_N`).

use std::borrow::Cow;

use super::vertical_slash::{require_causal, VerticalSlash};
use super::{BLOCK_M, BLOCK_N};
use crate::error::{at, Error, Result};
use crate::mask::{ElementMask, SparsePattern};
use crate::shape::{AttnShape, Varlen};
pub use crate::source::{row_blocks, Source, VsIndex, VsIndexDims, VsTensorLens};

// Ranges grow in BLOCK_M steps and are cut into BLOCK_N tiles; the tiles cover a range
// exactly only when the two agree (as they do in MInference's 64 x 64 instantiation).
const _: () = assert!(BLOCK_M == BLOCK_N);

impl VsIndex {
    /// The counted tile starts and columns of row block `m` of head `h` in batch `b`, or
    /// `None` when the position is outside `dims` or the (public, hence editable) tensors
    /// are inconsistent with `dims` (a count outside `0..=capacity`, a short buffer).
    pub fn row_block(&self, b: usize, h: usize, m: usize) -> Option<(&[i32], &[i32])> {
        let d = self.dims;
        if b >= d.batch() || h >= d.heads() || m >= d.row_blocks() {
            return None;
        }
        // In range of `dims`, whose element counts fit in usize.
        let row = (b * d.heads() + h) * d.row_blocks() + m;
        let counted = |counts: &[i32], cap: usize| {
            counts.get(row).and_then(|&c| usize::try_from(c).ok()).filter(|&c| c <= cap)
        };
        let n_tiles = counted(&self.block_count, d.nnz_s())?;
        let n_columns = counted(&self.column_count, d.nnz_v())?;
        Some((prefix(&self.block_offset, row, d.nnz_s(), n_tiles)?, prefix(&self.column_index, row, d.nnz_v(), n_columns)?))
    }

    /// Like [`row_block`](Self::row_block), as an error naming the position.
    pub(crate) fn row_block_checked(&self, b: usize, h: usize, m: usize) -> Result<(&[i32], &[i32])> {
        self.row_block(b, h, m).ok_or_else(|| Error::DescriptorMismatch {
            reason: format!("converted vertical-slash index has no consistent row block at {} (dims {:?})", at(&[b, h, m]), self.dims),
        })
    }
}

/// The first `count` entries of row `row` of a `[rows, cap]` tensor, if they exist.
fn prefix(data: &[i32], row: usize, cap: usize, count: usize) -> Option<&[i32]> {
    let start = row.checked_mul(cap)?;
    data.get(start..start.checked_add(count)?)
}

/// Converts a descriptor for `shape` (validated first). Runs on the host; the GPU kernel
/// `vertical_slash_convert` gives identical tensors.
pub fn convert(vs: &VerticalSlash, shape: &AttnShape) -> Result<VsIndex> {
    vs.validate(shape)?;
    Ok(convert_rows(vs, index_dims(vs, shape)?, |_| (shape.seq_q(), shape.seq_k())))
}

/// Converts a descriptor for a varlen batch: `shape` holds the batch and the longest
/// sequences (the descriptor is validated against it), and each sequence's row blocks are
/// converted on its own lengths and diagonal; rows past a sequence's end, and every row of
/// an empty sequence, get no tiles and no columns. The index has the shape's row blocks.
/// The GPU kernel gives identical tensors from device lengths
/// (`crate::plan::vs_convert::plan_varlen`).
pub fn convert_varlen(vs: &VerticalSlash, shape: &AttnShape, varlen: &Varlen) -> Result<VsIndex> {
    vs.validate(shape)?;
    if varlen.batch() != shape.batch() {
        return Err(Error::DescriptorMismatch { reason: format!("the varlen batch has {} sequences, the shape {}", varlen.batch(), shape.batch()) });
    }
    Ok(convert_rows(vs, index_dims(vs, shape)?, |b| varlen.seqlens(b)))
}

/// The conversion of every row block of `dims`, batch entry `b` on the lengths
/// `seqs(b)` = (seq_q, seq_k): its first ceil(seq_q / BLOCK_M) row blocks are converted,
/// any after them stay empty.
fn convert_rows(vs: &VerticalSlash, dims: VsIndexDims, seqs: impl Fn(usize) -> (usize, usize)) -> VsIndex {
    let lens = dims.lens();
    let (nnz_v, nnz_s) = (dims.nnz_v(), dims.nnz_s());
    let mut index = VsIndex {
        block_count: vec![0; lens.rows],
        block_offset: vec![-1; lens.block_offset],
        column_count: vec![0; lens.rows],
        column_index: vec![-1; lens.column_index],
        dims,
    };
    for b in 0..dims.batch() {
        let (seq_q, seq_k) = seqs(b);
        for h in 0..dims.heads() {
            for m in 0..seq_q.div_ceil(BLOCK_M).min(dims.row_blocks()) {
                let row = (b * dims.heads() + h) * dims.row_blocks() + m;
                let geometry = RowBlock::new(seq_q as i64, seq_k as i64, m as i64);
                let tiles = &mut index.block_offset[row * nnz_s..(row + 1) * nnz_s];
                let n_tiles = geometry.tiles(vs.slashes_of(b, h), tiles);
                let columns = &mut index.column_index[row * nnz_v..(row + 1) * nnz_v];
                let n_columns = geometry.columns(vs.verticals_of(b, h), &tiles[..n_tiles], columns);
                index.block_count[row] = n_tiles as i32;
                index.column_count[row] = n_columns as i32;
            }
        }
    }
    index
}

/// The sizes of converting `vs` for `shape`.
pub fn index_dims(vs: &VerticalSlash, shape: &AttnShape) -> Result<VsIndexDims> {
    VsIndexDims::new(vs.batch(), vs.heads(), row_blocks(shape.seq_q()), vs.nnz_v(), vs.nnz_s())
}

// The descriptor's element set is defined by its conversion, so its SparsePattern impl lives
// here (vertical_slash.rs holds the descriptor and its value checks).
impl SparsePattern for VerticalSlash {
    fn validate(&self, shape: &AttnShape) -> Result<()> {
        self.check(shape)
    }

    /// The converted index ([`convert`]).
    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        Ok(Source::VerticalSlash(convert(self, shape)?.map(|_, data| Cow::Owned(data))))
    }

    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask> {
        self.validate(shape)?;
        require_causal(causal)?;
        let index = convert(self, shape)?;
        let mut mask = ElementMask::try_empty(shape)?;
        for b in 0..shape.batch() {
            for hq in 0..shape.heads_q() {
                let h = self.descriptor_head(shape, hq);
                for i in 0..shape.seq_q() {
                    let visible = shape.visible_keys(i, true);
                    let (offsets, columns) = index.row_block_checked(b, h, i / BLOCK_M)?;
                    for &o in offsets {
                        let start = o as usize;
                        mask.set_range(b, hq, i, start, (start + BLOCK_N).min(visible));
                    }
                    for &c in columns {
                        if (c as usize) < visible {
                            mask.set(b, hq, i, c as usize);
                        }
                    }
                }
            }
        }
        Ok(mask)
    }
}

/// One row block's placement in key coordinates (all i64: `hi` may pass i32::MAX).
struct RowBlock {
    /// One past the diagonal key of the block's last row, counting a full BLOCK_M rows.
    hi: i64,
    /// Keys below this are visible to at least one actual row of the block.
    limit: i64,
}

impl RowBlock {
    fn new(seq_q: i64, seq_k: i64, m: i64) -> Self {
        let offset = seq_k - seq_q;
        let block = BLOCK_M as i64;
        let hi = (m + 1) * block + offset;
        let last_row = ((m + 1) * block).min(seq_q) - 1;
        Self { hi, limit: (last_row + offset + 1).min(seq_k) }
    }

    /// Writes the tile starts into `out` (capacity NNZ_S) and returns how many. Entries the
    /// rule cannot use (negative, or beyond the block) are skipped, so the loop is safe on
    /// any input; on validated input none exist past the leading `d >= hi` ones.
    fn tiles(&self, slashes: &[i32], out: &mut [i32]) -> usize {
        let block = BLOCK_M as i64;
        let mut count = 0;
        let mut range: Option<(i64, i64)> = None;
        for &d in slashes {
            let d = d as i64;
            if d < 0 || d >= self.hi {
                continue;
            }
            let e = (self.hi - d).max(block);
            range = match range {
                None => Some((e - block, e)),
                Some((start, end)) if e - block > end => {
                    count = self.emit(start, end, out, count);
                    Some((e - block, e))
                }
                Some((start, end)) if e > end => Some((start, end + block)),
                unchanged => unchanged,
            };
        }
        if let Some((start, end)) = range {
            count = self.emit(start, end, out, count);
        }
        count
    }

    fn emit(&self, start: i64, end: i64, out: &mut [i32], mut count: usize) -> usize {
        let mut o = start;
        while o < end && o < self.limit && count < out.len() {
            out[count] = o as i32;
            count += 1;
            o += BLOCK_N as i64;
        }
        count
    }

    /// Writes the visible verticals that no tile covers into `out` (capacity NNZ_V) and
    /// returns how many. `tiles` is ascending, so one forward pointer finds the tile that
    /// could hold each (ascending) vertical.
    fn columns(&self, verticals: &[i32], tiles: &[i32], out: &mut [i32]) -> usize {
        let mut count = 0;
        let mut t = 0;
        for &v in verticals {
            let v = v as i64;
            if v < 0 {
                continue;
            }
            if v >= self.limit || count == out.len() {
                break;
            }
            while t < tiles.len() && tiles[t] as i64 + (BLOCK_N as i64) <= v {
                t += 1;
            }
            if t < tiles.len() && tiles[t] as i64 <= v {
                continue;
            }
            out[count] = v as i32;
            count += 1;
        }
        count
    }
}
