//! Reference attention for top-k token selection, enumerating keys from the index tensor.

use super::core::{attend_rows_opts, RefOutput};
use crate::inputs::RefInputs;
use crate::error::Result;
use crate::mask::SparsePattern;
use crate::pattern::topk::TopkTokens;
use crate::shape::{check_len, AttnOptions};

/// Attention where each query row sees the keys its kv head's index row lists, read
/// straight from the tensor (not through the element mask, so that the two can be
/// compared): `-1` padding and keys past the causal limit (with `opts.causal`) are skipped.
pub fn topk_attention(inputs: &RefInputs, opts: &AttnOptions, pattern: &TopkTokens) -> Result<RefOutput> {
    let s = inputs.shape;
    pattern.validate(&s)?;
    // RefInputs' fields are public: re-check the lengths the row loop will slice.
    check_len("q", inputs.q.len(), &[s.batch(), s.seq_q(), s.heads_q(), s.head_dim()])?;
    check_len("k", inputs.k.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    check_len("v", inputs.v.len(), &[s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])?;
    attend_rows_opts(inputs, opts, |b, h, i, list| {
        list.extend(pattern.visible_keys(b, i, s.kv_head(h), s.visible_keys(i, opts.causal)))
    })
}
