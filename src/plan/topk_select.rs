//! Token top-k selection (`kernels/topk_select.cu`, kernels `topk_select_<f32|bf16>`): one CTA of
//! [`THREADS`] per score row, grid `(rows, 1, 1)`. The rule it implements, and its host
//! reference, are in `crate::pattern::topk_select`.

use super::buffers::DeviceBuffer;
use super::LaunchPlan;
use crate::checked::to_i32;
use crate::error::{Error, Result};
use crate::params::{IndexRowsParams, TopkSelectParams, TopkSelectRowsParams, TOPK_SELECT_THREADS};
use crate::pattern::topk_select::{ScoreDtype, SelectDims};

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "topk_select";

/// The `extern "C"` name of the kernel for `dtype` scores: `topk_select_f32`,
/// `topk_select_bf16`.
pub fn kernel(dtype: ScoreDtype) -> String {
    format!("topk_select_{}", dtype.name())
}

/// Threads per CTA (one CTA per score row).
pub const THREADS: u32 = TOPK_SELECT_THREADS;

/// Plans the selection of the `k` largest scores of every row of `scores [batch, seq_q,
/// heads, seq_k]` (`dtype`: f32 or bf16) into `indices [batch, seq_q, heads, k]` (i32), after validating
/// it: the sizes and `k` ([`SelectDims::validate`]: `k` in `1..=seq_k`), both buffers'
/// lengths and alignment, and the grid (one CTA per row, at most `i32::MAX` rows).
pub fn plan(dims: &SelectDims, k: usize, causal: bool, dtype: ScoreDtype, scores: DeviceBuffer, indices: DeviceBuffer) -> Result<LaunchPlan> {
    let p = params(dims, k, causal, dtype, scores, indices)?;
    // rows fits i32, so this cannot saturate; LaunchPlan::new checks the grid anyway.
    let grid = [u32::try_from(p.rows).unwrap_or(u32::MAX), 1, 1];
    LaunchPlan::new(MODULE, kernel(dtype), grid, [THREADS, 1, 1], 0, &p)
}

/// Validates a selection and returns its params struct.
pub fn params(dims: &SelectDims, k: usize, causal: bool, dtype: ScoreDtype, scores: DeviceBuffer, indices: DeviceBuffer) -> Result<TopkSelectParams> {
    let rows = dims.validate(k)?;
    // validate has checked that both products fit usize.
    let needed = rows * dims.seq_k;
    let scores = match dtype {
        // Four-byte elements: the index tensors' check fits exactly.
        ScoreDtype::F32 => scores.index_addr("scores", needed)?,
        ScoreDtype::BF16 => {
            if scores.len < needed {
                return Err(Error::BufferTooSmall { tensor: "scores", needed, len: scores.len });
            }
            if scores.addr == 0 || !scores.addr.is_multiple_of(2) {
                return Err(Error::InvalidParameter {
                    name: "scores",
                    reason: format!("device address {:#x} is null or not 2-byte aligned", scores.addr),
                });
            }
            scores.addr
        }
    };
    Ok(TopkSelectParams {
        scores,
        indices: indices.index_addr("indices", rows * k)?,
        rows: to_i32("rows", rows)?,
        seq_q: to_i32("seq_q", dims.seq_q)?,
        heads: to_i32("heads", dims.heads)?,
        seq_k: to_i32("seq_k", dims.seq_k)?,
        k: to_i32("k", k)?,
        causal: i32::from(causal),
    })
}

/// The `extern "C"` name of the chunked-rows kernel for `dtype` scores:
/// `topk_select_rows_f32`, `topk_select_rows_bf16`.
pub fn rows_kernel(dtype: ScoreDtype) -> String {
    format!("topk_select_rows_{}", dtype.name())
}

/// Plans the selection for the chunk of query rows `rows` (flat rows of `[batch, seq_q]`,
/// so a chunk may span sequences) of a selection of `dims`: `scores [rows.len(), heads *
/// group, seq_k]` holds only the chunk's scores, and the chunk's rows of the whole `indices
/// [batch, seq_q, heads, k]` are written, each with the causal limit of its own query
/// position. Index head `h` ranks keys by the f32 sum of score heads `h * group .. (h + 1) *
/// group` (ascending; `group` 1 is [`plan`]'s selection): with per-query-head scores and
/// `group` = heads_q / heads_kv, one index set per kv head, ranked by the group's mean
/// ([`select_topk_grouped_host`](crate::pattern::topk_select::select_topk_grouped_host) is
/// the host rule). Selecting every chunk gives exactly the whole tensor's selection, so an
/// engine can compute and select scores chunk by chunk with a workspace of `rows * heads *
/// group * seq_k`.
#[allow(clippy::too_many_arguments)]
pub fn plan_rows(
    dims: &SelectDims,
    rows: std::ops::Range<usize>,
    group: usize,
    k: usize,
    causal: bool,
    dtype: ScoreDtype,
    scores: DeviceBuffer,
    indices: DeviceBuffer,
) -> Result<LaunchPlan> {
    if group == 0 {
        return Err(Error::ZeroDimension { dim: "group" });
    }
    let total = dims.validate(k)? / dims.heads;
    if rows.end > total {
        return Err(Error::InvalidParameter { name: "rows", reason: format!("rows {rows:?} pass the {total} query rows of batch * seq_q") });
    }
    if rows.is_empty() {
        return Err(Error::ZeroDimension { dim: "rows" });
    }
    let (first_row, rows) = (rows.start, rows.len());
    let chunk = crate::checked::product("scores", &[rows, dims.heads, group, dims.seq_k])?;
    let scores = match dtype {
        ScoreDtype::F32 => scores.index_addr("scores", chunk)?,
        ScoreDtype::BF16 => {
            if scores.len < chunk {
                return Err(Error::BufferTooSmall { tensor: "scores", needed: chunk, len: scores.len });
            }
            if scores.addr == 0 || !scores.addr.is_multiple_of(2) {
                return Err(Error::InvalidParameter { name: "scores", reason: format!("device address {:#x} is null or not 2-byte aligned", scores.addr) });
            }
            scores.addr
        }
    };
    let p = TopkSelectRowsParams {
        scores,
        indices: indices.index_addr("indices", total * dims.heads * k)?,
        rows: IndexRowsParams {
            batch: to_i32("batch", dims.batch)?,
            seq_q: to_i32("seq_q", dims.seq_q)?,
            seq_k: to_i32("seq_k", dims.seq_k)?,
            total_q: to_i32("total_q", total)?,
            first_row: to_i32("first_row", first_row)?,
            rows: to_i32("rows", rows)?,
            causal: i32::from(causal),
            ..Default::default()
        },
        heads: to_i32("heads", dims.heads)?,
        k: to_i32("k", k)?,
        group: to_i32("group", group)?,
        pad0: 0,
    };
    let ctas = u32::try_from(rows * dims.heads).unwrap_or(u32::MAX);
    LaunchPlan::new(MODULE, rows_kernel(dtype), [ctas, 1, 1], [THREADS, 1, 1], 0, &p)
}
