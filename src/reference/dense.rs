//! Dense attention, plain or under an arbitrary element mask.

use super::core::{attend_rows_opts, RefOutput};
use crate::inputs::RefInputs;
use crate::error::{Error, Result};
use crate::mask::ElementMask;
use crate::shape::AttnOptions;

/// Full (or bottom-right causal) attention.
pub fn dense_attention(inputs: &RefInputs, opts: &AttnOptions) -> Result<RefOutput> {
    let s = inputs.shape;
    attend_rows_opts(inputs, opts, |_, _, i, list| list.extend(0..s.visible_keys(i, opts.causal)))
}

/// Attention where each row sees exactly the keys the mask allows. `opts.causal` is
/// ignored: causality, if wanted, is part of the mask.
pub fn masked_attention(inputs: &RefInputs, opts: &AttnOptions, mask: &ElementMask) -> Result<RefOutput> {
    let s = inputs.shape;
    let want = [s.batch(), s.heads_q(), s.seq_q(), s.seq_k()];
    if mask.dims() != want {
        return Err(Error::DescriptorMismatch {
            reason: format!("element mask is {:?}, the problem needs {:?}", mask.dims(), want),
        });
    }
    attend_rows_opts(inputs, opts, |b, h, i, list| list.extend(mask.row_keys(b, h, i)))
}
