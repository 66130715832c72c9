//! The A-shape pattern (StreamingLLM's attention sinks plus a local window; MInference's
//! "A-shape" head): every row block keeps the first `sink_blocks` key blocks and the
//! `local_blocks` key blocks that end at its diagonal. It is expressed as a
//! [`BlockSparse`] descriptor so it runs on the block-sparse kernel.

use super::block_sparse::BlockSparse;
use super::{BLOCK_M, BLOCK_N};
use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::mask::{ElementMask, SparsePattern};
use crate::shape::{AttnShape, Varlen};
use crate::source::Source;

/// Sink plus local window, counted in key blocks of `BLOCK_N` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AShape {
    sink_blocks: usize,
    local_blocks: usize,
}

/// The key block holding the last key that the last row of row block `m` sees under the
/// bottom-right causal mask, or `None` when that row sees no key at all (possible when
/// `seq_q > seq_k`). Both A-shape and the top-k estimator anchor their window here.
pub(crate) fn diagonal_block(shape: &AttnShape, m: usize) -> Option<usize> {
    let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q()).checked_sub(1)?;
    let visible = shape.visible_keys(last_row, true);
    visible.checked_sub(1).map(|last_key| last_key / BLOCK_N)
}

impl AShape {
    /// `sink_blocks` may be 0 (a pure sliding window); the window must hold at least the
    /// diagonal block, otherwise rows would lose the keys closest to them.
    pub fn new(sink_blocks: usize, local_blocks: usize) -> Result<Self> {
        if local_blocks == 0 {
            return Err(Error::InvalidParameter {
                name: "local_blocks",
                reason: "must be at least 1 so each row block keeps its diagonal block".into(),
            });
        }
        Ok(Self { sink_blocks, local_blocks })
    }

    /// Leading key blocks every row block keeps.
    pub fn sink_blocks(&self) -> usize {
        self.sink_blocks
    }

    /// Key blocks of the window ending at the diagonal block (the diagonal included).
    pub fn local_blocks(&self) -> usize {
        self.local_blocks
    }

    /// The block lists for `shape`, one mask per GQA group (`H = heads_kv`), every head the
    /// same. The window is anchored on the bottom-right causal diagonal with or without
    /// causal masking: without it the same tiles are kept, but every key in them is
    /// attended, including those right of the diagonal inside the diagonal block. A row
    /// block whose last row sees no key gets no blocks.
    pub fn to_block_sparse(&self, shape: &AttnShape) -> Result<BlockSparse> {
        let shape = *shape;
        let row_blocks = shape.seq_q().div_ceil(BLOCK_M);
        let key_blocks = shape.seq_k().div_ceil(BLOCK_N);
        let rows: Vec<Vec<i32>> =
            (0..row_blocks).map(|m| self.row_blocks_for(&shape, m, key_blocks)).collect();
        let max_blocks = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);

        let per_head = row_blocks;
        let total_rows = shape.batch() * shape.heads_kv() * per_head;
        let mut block_count = Vec::with_capacity(total_rows);
        let mut block_index = vec![-1i32; total_rows * max_blocks];
        for (r, slots) in block_index.chunks_exact_mut(max_blocks).enumerate() {
            let row = &rows[r % per_head];
            slots[..row.len()].copy_from_slice(row);
            block_count.push(row.len() as i32);
        }
        BlockSparse::new(shape.batch(), shape.heads_kv(), row_blocks, max_blocks, block_count, block_index)
    }

    /// The A-shape of each sequence of a varlen batch, as one block-sparse descriptor for
    /// [`crate::plan::attention_varlen`]: `[batch, heads_kv, MB, max_blocks]` with `MB`
    /// from `shape`'s longest query sequence. Sequence `b`'s row blocks get the lists
    /// [`AShape::to_block_sparse`] gives a problem of its own lengths (its own diagonal);
    /// rows past its end, and every row of an empty sequence, list nothing.
    pub fn to_block_sparse_varlen(&self, shape: &AttnShape, varlen: &Varlen) -> Result<BlockSparse> {
        if varlen.batch() != shape.batch() {
            return Err(Error::DescriptorMismatch {
                reason: format!("the varlen batch has {} sequences, the shape {}", varlen.batch(), shape.batch()),
            });
        }
        let row_blocks = shape.seq_q().div_ceil(BLOCK_M);
        let mut rows: Vec<Vec<i32>> = Vec::with_capacity(shape.batch() * row_blocks);
        for b in 0..shape.batch() {
            let (lq, lk) = varlen.seqlens(b);
            let own = if lq > 0 && lk > 0 {
                Some(AttnShape::new(1, lq, lk, shape.heads_q(), shape.heads_kv(), shape.head_dim())?)
            } else {
                None
            };
            for m in 0..row_blocks {
                rows.push(match own {
                    Some(s) if m < lq.div_ceil(BLOCK_M) => self.row_blocks_for(&s, m, lk.div_ceil(BLOCK_N)),
                    _ => Vec::new(),
                });
            }
        }
        let max_blocks = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let heads = shape.heads_kv();
        let mut block_count = Vec::with_capacity(rows.len() * heads);
        let mut block_index = Vec::with_capacity(rows.len() * heads * max_blocks);
        for b in 0..shape.batch() {
            for _ in 0..heads {
                for row in &rows[b * row_blocks..(b + 1) * row_blocks] {
                    block_count.push(row.len() as i32);
                    block_index.extend(row.iter().copied().chain(std::iter::repeat(-1)).take(max_blocks));
                }
            }
        }
        BlockSparse::new(shape.batch(), heads, row_blocks, max_blocks, block_count, block_index)
    }

    /// Sink blocks then the window, ascending, without repeats. Sinks are also clipped at
    /// the diagonal block: a sink tile right of it holds no causally visible key, so under
    /// causal it would be pure wasted work, and without causal it would let early rows
    /// read "sink" keys from their future, which is not what a sink means.
    fn row_blocks_for(&self, shape: &AttnShape, m: usize, key_blocks: usize) -> Vec<i32> {
        let Some(d) = diagonal_block(shape, m) else { return Vec::new() };
        let sink_end = self.sink_blocks.min(d + 1).min(key_blocks);
        // Overlapping sink and window merge: start the window after the sink.
        let window_start = (d + 1).saturating_sub(self.local_blocks).max(sink_end);
        let window = window_start..(d + 1).min(key_blocks);
        (0..sink_end).chain(window).map(|n| n as i32).collect()
    }
}

impl SparsePattern for AShape {
    fn validate(&self, shape: &AttnShape) -> Result<()> {
        self.to_block_sparse(shape)?.validate(shape)
    }

    fn element_mask(&self, shape: &AttnShape, causal: bool) -> Result<ElementMask> {
        self.to_block_sparse(shape)?.element_mask(shape, causal)
    }

    /// The block lists of [`AShape::to_block_sparse`]; A-shape runs on the block-sparse kernel.
    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        let blocks = self.to_block_sparse(shape)?;
        Ok(blocks.source(shape)?.map(|_, data| Cow::Owned(data.into_owned())))
    }
}
