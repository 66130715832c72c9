//! Token top-k selection (`kernels/topk_select.cu`, kernel `topk_select_f32`): one CTA of
//! [`THREADS`] per score row, grid `(rows, 1, 1)`. The rule it implements, and its host
//! reference, are in `crate::pattern::topk_select`.

use super::buffers::DeviceBuffer;
use super::LaunchPlan;
use crate::checked::to_i32;
use crate::error::Result;
use crate::params::{TopkSelectParams, TOPK_SELECT_THREADS};
use crate::pattern::topk_select::SelectDims;

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "topk_select";

/// The kernel's `extern "C"` name (f32 scores).
pub const KERNEL: &str = "topk_select_f32";

/// Threads per CTA (one CTA per score row).
pub const THREADS: u32 = TOPK_SELECT_THREADS;

/// Plans the selection of the `k` largest scores of every row of `scores [batch, seq_q,
/// heads, seq_k]` (f32) into `indices [batch, seq_q, heads, k]` (i32), after validating
/// it: the sizes and `k` ([`SelectDims::validate`]: `k` in `1..=seq_k`), both buffers'
/// lengths and alignment, and the grid (one CTA per row, at most `i32::MAX` rows).
pub fn plan(dims: &SelectDims, k: usize, causal: bool, scores: DeviceBuffer, indices: DeviceBuffer) -> Result<LaunchPlan> {
    let p = params(dims, k, causal, scores, indices)?;
    // rows fits i32, so this cannot saturate; LaunchPlan::new checks the grid anyway.
    let grid = [u32::try_from(p.rows).unwrap_or(u32::MAX), 1, 1];
    LaunchPlan::new(MODULE, KERNEL.to_string(), grid, [THREADS, 1, 1], 0, &p)
}

/// Validates a selection and returns its params struct.
pub fn params(dims: &SelectDims, k: usize, causal: bool, scores: DeviceBuffer, indices: DeviceBuffer) -> Result<TopkSelectParams> {
    let rows = dims.validate(k)?;
    Ok(TopkSelectParams {
        // validate has checked that both products fit usize.
        scores: scores.index_addr("scores", rows * dims.seq_k)?,
        indices: indices.index_addr("indices", rows * k)?,
        rows: to_i32("rows", rows)?,
        seq_q: to_i32("seq_q", dims.seq_q)?,
        heads: to_i32("heads", dims.heads)?,
        seq_k: to_i32("seq_k", dims.seq_k)?,
        k: to_i32("k", k)?,
        causal: i32::from(causal),
    })
}
