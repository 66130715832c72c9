//! Block-sparse (and A-shape) reference attention that enumerates keys straight from the
//! index tensors. Comparing it with `masked_attention` on the descriptor's element mask
//! checks the descriptor's two readings of the same tensors against each other.

use super::core::{attend_rows_opts, RefOutput};
use crate::inputs::RefInputs;
use crate::error::Result;
use crate::mask::SparsePattern;
use crate::pattern::{AShape, BlockSparse, BLOCK_M, BLOCK_N};
use crate::shape::{check_len, AttnOptions};

/// Row `i` attends every key of every key block its row block lists, cut at the
/// bottom-right causal limit when `opts.causal`. Validates the pattern against
/// `inputs.shape` (and the input lengths, since `RefInputs` fields are public) first.
pub fn block_sparse_attention(
    inputs: &RefInputs,
    opts: &AttnOptions,
    pattern: &BlockSparse,
) -> Result<RefOutput> {
    let s = inputs.shape;
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    check_len("v", inputs.v.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    pattern.validate(&s)?;
    attend_rows_opts(inputs, opts, |b, h, i, list| {
        let limit = s.visible_keys(i, opts.causal);
        for &n in pattern.counted(b, pattern.mask_head(&s, h), i / BLOCK_M) {
            let start = n as usize * BLOCK_N;
            list.extend(start..(start + BLOCK_N).min(limit).min(s.seq_k()));
        }
    })
}

/// A-shape attention: the A-shape's block lists for this shape, run as block-sparse.
pub fn a_shape_attention(inputs: &RefInputs, opts: &AttnOptions, pattern: &AShape) -> Result<RefOutput> {
    let blocks = pattern.to_block_sparse(&inputs.shape)?;
    block_sparse_attention(inputs, opts, &blocks)
}
