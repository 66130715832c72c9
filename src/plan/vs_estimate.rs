//! Vertical-slash estimation on the device (`kernels/vs_estimate.cu`): MInference's online
//! estimate of which key columns and diagonals to keep, in four launches on one stream
//! ([`VsEstimatePlan`]) that share the caller's f32 workspace ([`workspace_len`]). The rule
//! and its host reference are [`crate::pattern::vs_estimate`] (per sequence for varlen:
//! [`crate::pattern::estimate_varlen::estimate_vertical_slash_varlen`], whose padding of
//! short sequences the kernels reproduce).
//!
//! Sizes follow the host: `nnz_v = min(vertical_size, seq_k)` and `nnz_s = min(slash_size,
//! seq_k)` (the longest sequence's `seq_k` for varlen), so a budget above the sequence is
//! clamped, as the host estimator clamps it, while a budget of 0 is an error. The output is
//! the vertical-slash format `[batch, heads_q, nnz]` that [`super::vs_convert`] converts.
//! With [`VsEstimateConfig::per_kv_group`] one set is chosen per kv head, from the
//! probabilities of its group's query heads, and written to each of them.
//!
//! Cost: `batch x units x rows x seq_k` scores (rows = `min(last_q, seq_q)` per query head
//! of a unit), each written once and read three times, never `seq_q x seq_k`. That buffer,
//! two statistics per probe row and two sums per key are the workspace.
//!
//! Non-finite inputs: a NaN or inf in Q or K gives NaN probabilities in the probe rows that
//! see it (an infinite score makes `inf - inf`), so the sums those rows reach are NaN. NaN
//! ranks below every number and ties go to the lower index, as on the host, so the result
//! is still a well-formed, in-range set: the forced entries, then the finite sums, then the
//! lowest NaN indices (`tests/vs_estimate_sim.rs` checks it against the host).

use super::buffers::DeviceBuffer;
use super::tensors::{check_row_alignment, span_elems};
use super::{LaunchPlan, VarlenBuffers};
use crate::checked::{product, to_i32, to_u32};
use crate::error::{Error, Result};
use crate::params::{VsEstimateParams, HEAD_DIMS, VS_ESTIMATE_SELECT_THREADS, VS_ESTIMATE_THREADS, VS_ESTIMATE_TILE};
use crate::pattern::VsEstimateConfig;
use crate::shape::{AttnShape, Bshd, DType};

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "vs_estimate";

/// The workspace's required alignment (every allocation has it; a view into one may not).
pub const WORKSPACE_ALIGN_BYTES: u64 = 16;

/// The buffers of one estimation.
#[derive(Debug, Clone, Copy)]
pub struct VsEstimateBuffers<'a> {
    /// Queries (f16 / bf16): `[batch, seq_q, heads_q, head_dim]` under `q_layout`, or packed
    /// `[total_q, heads_q, head_dim]` with `varlen`.
    pub q: DeviceBuffer,
    /// Keys: `[batch, seq_k, heads_kv, head_dim]` under `k_layout`, or packed `[total_k,
    /// heads_kv, head_dim]` with `varlen`.
    pub k: DeviceBuffer,
    /// Strides of q (for varlen, of the packed rows; the batch stride is unused).
    pub q_layout: Bshd,
    /// Strides of k.
    pub k_layout: Bshd,
    /// The sequence boundaries of a varlen batch; `None` for a padded one.
    pub varlen: Option<&'a VarlenBuffers<'a>>,
    /// f32 scratch of at least [`workspace_len`] elements, [`WORKSPACE_ALIGN_BYTES`]-aligned.
    pub workspace: DeviceBuffer,
    /// Output i32 `[batch, heads_q, nnz_v]`.
    pub vertical_indexes: DeviceBuffer,
    /// Output i32 `[batch, heads_q, nnz_s]`.
    pub slash_indexes: DeviceBuffer,
}

/// The four launches of an estimation, to run in this order on one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VsEstimatePlan {
    /// `vs_estimate_scores_<dtype>_hd<D>`: the probe rows' scores into the workspace.
    pub scores: LaunchPlan,
    /// `vs_estimate_row_stats`: each probe row's max and normaliser.
    pub row_stats: LaunchPlan,
    /// `vs_estimate_sums`: column and diagonal sums of the probabilities.
    pub sums: LaunchPlan,
    /// `vs_estimate_select`: the top columns and distances into the index tensors.
    pub select: LaunchPlan,
}

impl VsEstimatePlan {
    /// The launches in order.
    pub fn launches(&self) -> [&LaunchPlan; 4] {
        [&self.scores, &self.row_stats, &self.sums, &self.select]
    }
}

/// The estimate's sizes for a shape (the longest sequences, for varlen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsEstimateDims {
    /// Verticals per head: `min(vertical_size, seq_k)`.
    pub nnz_v: usize,
    /// Slashes per head: `min(slash_size, seq_k)`.
    pub nnz_s: usize,
    /// Probe rows per head: `min(last_q, seq_q)`.
    pub last_q: usize,
    /// Query heads per estimation unit: 1, or `heads_q / heads_kv` with `per_kv_group`.
    pub heads_per_unit: usize,
    /// Estimation units per sequence: `heads_q / heads_per_unit`.
    pub units: usize,
}

impl VsEstimateDims {
    /// Validates `config` (`last_q`, `vertical_size`, `slash_size` at least 1) and derives the sizes.
    pub fn new(shape: &AttnShape, config: &VsEstimateConfig) -> Result<Self> {
        config.check()?;
        let heads_per_unit = if config.per_kv_group { shape.heads_q() / shape.heads_kv() } else { 1 };
        Ok(Self {
            nnz_v: config.vertical_size.min(shape.seq_k()),
            nnz_s: config.slash_size.min(shape.seq_k()),
            last_q: config.last_q.min(shape.seq_q()),
            heads_per_unit,
            units: shape.heads_q() / heads_per_unit,
        })
    }

    /// Probe rows per unit.
    fn rows(&self) -> usize {
        self.heads_per_unit * self.last_q
    }
}

/// Where each part of the workspace starts, in f32 elements, and its total length.
struct WorkspaceLayout {
    row_stats: usize,
    vertical: usize,
    slash: usize,
    total: usize,
}

fn workspace_layout(shape: &AttnShape, dims: &VsEstimateDims) -> Result<WorkspaceLayout> {
    let heads = product("workspace", &[shape.batch(), dims.units])?;
    let scores = product("workspace", &[heads, dims.rows(), shape.seq_k()])?;
    let stats = product("workspace", &[heads, dims.rows(), 2])?;
    let sums = product("workspace", &[heads, shape.seq_k()])?;
    let add = |a: usize, b: usize| a.checked_add(b).ok_or(Error::DimensionTooLarge { dim: "workspace", value: b, max: usize::MAX - a });
    // Each part starts on a 16-byte boundary (the row statistics are read as pairs).
    let align = |n: usize| add(n, 3).map(|n| n & !3);
    let row_stats = align(scores)?;
    let vertical = align(add(row_stats, stats)?)?;
    let slash = align(add(vertical, sums)?)?;
    Ok(WorkspaceLayout { row_stats, vertical, slash, total: add(slash, sums)? })
}

/// f32 elements of workspace an estimation of `shape` with `config` needs: the probe
/// scores `[batch, units, rows, seq_k]` (rows = `min(last_q, seq_q)` per query head of a
/// unit), two statistics per probe row, and the column and diagonal sums `[batch, units,
/// seq_k]`. For varlen, `shape` holds the longest sequences. Errors as [`VsEstimateDims::new`].
pub fn workspace_len(shape: &AttnShape, config: &VsEstimateConfig) -> Result<usize> {
    Ok(workspace_layout(shape, &VsEstimateDims::new(shape, config)?)?.total)
}

/// Plans an estimation after validating it: the config (`last_q`, `vertical_size`,
/// `slash_size` at least 1; budgets above `seq_k` are clamped to it), the scale (finite,
/// positive), head_dim (one of [`HEAD_DIMS`]), q and k (lengths, strides, 16-byte rows), the
/// varlen boundaries (sizes, and the host copy when given), the workspace
/// ([`workspace_len`] elements, [`WORKSPACE_ALIGN_BYTES`]-aligned) and both outputs, which must not overlap each other or the
/// workspace. Always causal, bottom-right per sequence.
pub fn plan(shape: &AttnShape, dtype: DType, config: &VsEstimateConfig, softmax_scale: f32, bufs: &VsEstimateBuffers) -> Result<VsEstimatePlan> {
    let p = params(shape, config, softmax_scale, bufs)?;
    let dims = VsEstimateDims::new(shape, config)?;
    let (b, units, rows, seq_k) = (shape.batch(), dims.units, dims.rows(), shape.seq_k());
    let tile = VS_ESTIMATE_TILE;
    // params has checked head_dim.
    let scores_kernel = format!("vs_estimate_scores_{}_hd{}", dtype.name(), shape.head_dim());
    let threads = [VS_ESTIMATE_THREADS, 1, 1];
    let warps = VS_ESTIMATE_THREADS as usize / 32;
    let grid = |x: usize, y: usize, z: usize| -> Result<[u32; 3]> { Ok([to_u32("grid", x)?, to_u32("grid", y)?, to_u32("grid", z)?]) };
    Ok(VsEstimatePlan {
        scores: LaunchPlan::new(MODULE, scores_kernel, grid(seq_k.div_ceil(tile), rows.div_ceil(tile), b * units)?, threads, 0, &p)?,
        row_stats: LaunchPlan::new(MODULE, "vs_estimate_row_stats".into(), grid(rows.div_ceil(warps), units, b)?, threads, 0, &p)?,
        sums: LaunchPlan::new(MODULE, "vs_estimate_sums".into(), grid(seq_k.div_ceil(VS_ESTIMATE_THREADS as usize), units, b)?, threads, 0, &p)?,
        select: LaunchPlan::new(MODULE, "vs_estimate_select".into(), grid(units, 2, b)?, [VS_ESTIMATE_SELECT_THREADS, 1, 1], 0, &p)?,
    })
}

/// Validates an estimation (as [`plan`]) and returns its params struct.
pub fn params(shape: &AttnShape, config: &VsEstimateConfig, softmax_scale: f32, bufs: &VsEstimateBuffers) -> Result<VsEstimateParams> {
    let dims = VsEstimateDims::new(shape, config)?;
    if !HEAD_DIMS.contains(&shape.head_dim()) {
        return Err(Error::UnsupportedHeadDim { head_dim: shape.head_dim(), supported: HEAD_DIMS });
    }
    if !(softmax_scale.is_finite() && softmax_scale > 0.0) {
        return Err(Error::InvalidSoftmaxScale { value: softmax_scale, reason: "it must be finite and > 0".into() });
    }
    let d = shape.head_dim();
    let (q_dims, k_dims, total) = match bufs.varlen {
        Some(v) => {
            super::varlen::check_host(shape, v)?;
            if v.total_q == 0 {
                return Err(Error::ZeroDimension { dim: "total_q" });
            }
            if v.total_k == 0 {
                return Err(Error::ZeroDimension { dim: "total_k" });
            }
            ([1, v.total_q, shape.heads_q(), d], [1, v.total_k, shape.heads_kv(), d], Some((v.total_q, v.total_k)))
        }
        None => ([shape.batch(), shape.seq_q(), shape.heads_q(), d], [shape.batch(), shape.seq_k(), shape.heads_kv(), d], None),
    };
    let q_strides = check_input("q", bufs.q, &bufs.q_layout, q_dims)?;
    let k_strides = check_input("k", bufs.k, &bufs.k_layout, k_dims)?;

    let ws = workspace_layout(shape, &dims)?;
    let workspace = bufs.workspace.index_addr("workspace", ws.total)?;
    if !workspace.is_multiple_of(WORKSPACE_ALIGN_BYTES) {
        return Err(Error::InvalidParameter { name: "workspace", reason: format!("device address {workspace:#x} is not {WORKSPACE_ALIGN_BYTES}-byte aligned") });
    }
    let heads = product("vertical_indexes", &[shape.batch(), shape.heads_q()])?;
    let vertical_len = product("vertical_indexes", &[heads, dims.nnz_v])?;
    let slash_len = product("slash_indexes", &[heads, dims.nnz_s])?;
    let vertical = bufs.vertical_indexes.index_addr("vertical_indexes", vertical_len)?;
    let slash = bufs.slash_indexes.index_addr("slash_indexes", slash_len)?;
    check_disjoint(&[("workspace", workspace, ws.total), ("vertical_indexes", vertical, vertical_len), ("slash_indexes", slash, slash_len)])?;

    let (cu_q, cu_k, total_q, total_k) = match (bufs.varlen, total) {
        (Some(v), Some((tq, tk))) => {
            let entries = shape.batch() + 1;
            (v.cu_seqlens_q.index_addr("cu_seqlens_q", entries)?, v.cu_seqlens_k.index_addr("cu_seqlens_k", entries)?, to_i32("total_q", tq)?, to_i32("total_k", tk)?)
        }
        _ => (0, 0, 0, 0),
    };
    // The addressed span of each workspace part fits usize (checked above); the kernels index
    // them with 64-bit offsets.
    let at = |elems: usize| workspace + 4 * elems as u64;
    let seq_k = shape.seq_k();
    Ok(VsEstimateParams {
        q: bufs.q.addr,
        k: bufs.k.addr,
        cu_seqlens_q: cu_q,
        cu_seqlens_k: cu_k,
        scores: workspace,
        row_stats: at(ws.row_stats),
        vertical_scores: at(ws.vertical),
        slash_scores: at(ws.slash),
        vertical_indexes: vertical,
        slash_indexes: slash,
        q_batch: if total.is_some() { 0 } else { q_strides[0] },
        q_seq: q_strides[1],
        q_head: q_strides[2],
        k_batch: if total.is_some() { 0 } else { k_strides[0] },
        k_seq: k_strides[1],
        k_head: k_strides[2],
        batch: to_i32("batch", shape.batch())?,
        seq_q: to_i32("seq_q", shape.seq_q())?,
        seq_k: to_i32("seq_k", seq_k)?,
        heads_q: to_i32("heads_q", shape.heads_q())?,
        heads_kv: to_i32("heads_kv", shape.heads_kv())?,
        head_dim: to_i32("head_dim", d)?,
        last_q: to_i32("last_q", dims.last_q)?,
        heads_per_unit: to_i32("heads_per_unit", dims.heads_per_unit)?,
        units: to_i32("units", dims.units)?,
        rows: to_i32("rows", dims.rows())?,
        nnz_v: to_i32("vertical_size", dims.nnz_v)?,
        nnz_s: to_i32("slash_size", dims.nnz_s)?,
        // Forcing more than every candidate forces every candidate.
        forced_columns: to_i32("forced_first_columns", config.forced_first_columns.min(seq_k))?,
        forced_diagonals: to_i32("forced_last_diagonals", config.forced_last_diagonals.min(seq_k))?,
        total_q,
        total_k,
        softmax_scale,
        pad0: 0,
    })
}

/// Checks one input tensor (length, strides, 16-byte rows, a span the kernels' 64-bit byte
/// offsets hold) and returns its (batch, seq, head) strides, 0 for a dimension of extent 1.
fn check_input(name: &'static str, buf: DeviceBuffer, layout: &Bshd, dims: [usize; 4]) -> Result<[i64; 3]> {
    layout.validate(name, dims, buf.len, false)?;
    check_row_alignment(name, buf, layout, dims)?;
    if (span_elems(layout, dims) as u64).checked_mul(2).is_none_or(|b| b > i64::MAX as u64) {
        return Err(Error::InvalidStrides { tensor: name, reason: format!("the strides address more than {} bytes", i64::MAX) });
    }
    let stride = |s: usize, extent: usize| if extent > 1 { s as i64 } else { 0 };
    Ok([stride(layout.batch, dims[0]), stride(layout.seq, dims[1]), stride(layout.head, dims[2])])
}

/// The written buffers (address, 4-byte elements) must not overlap: the selection reads the
/// workspace while it writes the outputs.
fn check_disjoint(spans: &[(&'static str, u64, usize)]) -> Result<()> {
    for (i, &(a, a_addr, a_len)) in spans.iter().enumerate() {
        for &(b, b_addr, b_len) in &spans[i + 1..] {
            let (a_end, b_end) = (a_addr.saturating_add(4 * a_len as u64), b_addr.saturating_add(4 * b_len as u64));
            if a_len > 0 && b_len > 0 && a_addr < b_end && b_addr < a_end {
                return Err(Error::InvalidParameter { name: b, reason: format!("the `{b}` buffer overlaps the `{a}` buffer") });
            }
        }
    }
    Ok(())
}
