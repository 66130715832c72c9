//! Vertical-slash reference attention: each row attends the keys that the converted
//! indices hand it, enumerated the way the attention kernel walks them (tiles, then
//! columns), so comparing it with dense masked attention under
//! `VerticalSlash::element_mask` checks the enumeration against the definition.

use super::core::{attend_rows_opts, RefOutput};
use crate::inputs::RefInputs;
use crate::error::Result;
use crate::mask::SparsePattern;
use crate::pattern::vertical_slash::{require_causal, VerticalSlash};
use crate::pattern::vs_convert::convert;
use crate::pattern::{BLOCK_M, BLOCK_N};
use crate::shape::AttnOptions;

/// Attention under a vertical-slash descriptor. It is causal by definition, so
/// `opts.causal` must be set (otherwise `InvalidParameter { name: "causal" }`).
pub fn vertical_slash_attention(inputs: &RefInputs, opts: &AttnOptions, vs: &VerticalSlash) -> Result<RefOutput> {
    let s = inputs.shape;
    vs.validate(&s)?;
    require_causal(opts.causal)?;
    let index = convert(vs, &s)?;
    // Resolve every row block up front so the row loop (which cannot return errors) only
    // reads slices that are known to exist.
    let mut blocks = Vec::with_capacity(vs.batch() * vs.heads() * index.dims.row_blocks());
    for b in 0..vs.batch() {
        for h in 0..vs.heads() {
            for m in 0..index.dims.row_blocks() {
                blocks.push(index.row_block_checked(b, h, m)?);
            }
        }
    }
    let row_blocks = index.dims.row_blocks();
    attend_rows_opts(inputs, opts, |b, hq, i, list| {
        let h = vs.descriptor_head(&s, hq);
        let (tiles, columns) = blocks[(b * vs.heads() + h) * row_blocks + i / BLOCK_M];
        let visible = s.visible_keys(i, true);
        // Tiles are disjoint and columns lie outside them, so each key is pushed once.
        for &o in tiles {
            let start = o as usize;
            list.extend(start..(start + BLOCK_N).min(visible));
        }
        list.extend(columns.iter().map(|&c| c as usize).filter(|&c| c < visible));
    })
}
