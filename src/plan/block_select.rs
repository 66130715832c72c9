//! Block selection on the device (`kernels/block_select.cu`): scoring (two `block_pool_<dtype>`
//! launches, one for Q and one for K, then `block_score`) and selection
//! (`block_select_blocks`). The rules, and their host references, are in
//! [`crate::pattern::block_select`].
//!
//! The scoring launches use one caller workspace of f32, [`workspace_len`] elements, laid
//! out as [`ScoreLayout`]: the score tensor `[batch, H, row_blocks, key_blocks]` first (so a
//! caller, or another scoring kernel, hands that range to [`plan_select`]), then the query
//! and key feature rows.

use super::buffers::DeviceBuffer;
use super::varlen::VarlenBuffers;
use super::LaunchPlan;
use crate::checked::{product, to_i32, to_u32};
use crate::error::{Error, Result};
use crate::params::{
    BlockPoolParams, BlockScoreParams, BlockSelectParams, XattnScoreParams, BLOCK_POOL_MAX_IN, BLOCK_POOL_MAX_OUT, BLOCK_POOL_THREADS,
    BLOCK_SELECT_MAX_KEY_BLOCKS, BLOCK_SELECT_THREADS,
};
use crate::pattern::block_select::{gate_dims_ok, BlockBudget, BlockSelectConfig, ScoreDims, ScoreKind};
use crate::pattern::{BLOCK_M, BLOCK_N};
use crate::shape::{AttnShape, Bshd, DType};

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "block_select";

/// The largest dynamic shared memory a selection launch may ask for (the opt-in limit of
/// sm_86 and sm_89, the smallest of the supported GPUs).
const MAX_SELECT_SHARED: usize = 99 * 1024;
/// What `block_score` may keep of a group's query features (48 KiB, no opt-in).
const MAX_SCORE_SHARED: usize = 48 * 1024;

/// A SeerAttention gate's sizes (its weights are device buffers of the inputs' dtype, in the
/// checkpoint's shapes; see [`crate::pattern::block_select::GateHost`] for the math).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateDims {
    /// `wq [heads_q, head_dim, hidden]` is given; without it (SeerAttention's single-linear
    /// form) `hidden` must equal head_dim and pooled Q is used as is.
    pub has_wq: bool,
    /// Heads of `wk [k_heads, 3 * head_dim, hidden]`: heads_kv, or heads_q.
    pub k_heads: usize,
    /// The gate's hidden size, 1..=256 (even with RoPE).
    pub hidden: usize,
    /// RoPE base (the model's `rope_theta`), or `None` for no RoPE.
    pub rope_theta: Option<f32>,
}

/// How the device scores blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// `scale * mean_q . mean_k` (one pooling launch each for Q and K, then `block_score`).
    Pooled,
    /// SeerAttention's gate (its weights in [`ScoreBuffers`]).
    Gate(GateDims),
    /// XAttention's antidiagonal probability sums with this stride (dividing 64; XAttention
    /// uses 8); one `xattn_score_<dtype>` launch. Select with `ScoreKind::Mass`.
    Xattn {
        /// Rows of Q and K per reshaped row / column.
        stride: usize,
    },
}

/// What the scoring launches compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreProblem {
    /// Batch, the longest seq_q / seq_k (a varlen batch's maxima), heads, head_dim.
    pub shape: AttnShape,
    /// Q, K (and gate weight) dtype.
    pub dtype: DType,
    /// One score set per kv head (the group's query heads' scores averaged), else per
    /// query head.
    pub per_kv_group: bool,
    /// Key blocks past the causal diagonal score -inf.
    pub causal: bool,
    /// Multiplies every dot product: the softmax scale for pooled scores, SeerAttention's
    /// `hidden^-0.5` for its gate, the softmax scale for XAttention (which divides it by
    /// the stride). Finite and > 0.
    pub scale: f32,
    /// Pooled, gate or XAttention scores.
    pub scoring: Scoring,
}

/// Where the scoring launches keep their tensors in the workspace (f32 element ranges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreLayout {
    /// `[batch, H, row_blocks, key_blocks]`.
    pub scores: std::ops::Range<usize>,
    /// `[batch, heads_q, row_blocks, q_dim]`.
    pub q_features: std::ops::Range<usize>,
    /// `[batch, k_heads, key_blocks, k_dim]`.
    pub k_features: std::ops::Range<usize>,
}

impl ScoreProblem {
    /// The score tensor's sizes (H = heads_kv or heads_q).
    pub fn score_dims(&self) -> ScoreDims {
        let s = &self.shape;
        let heads = if self.per_kv_group { s.heads_kv() } else { s.heads_q() };
        ScoreDims { batch: s.batch(), heads, seq_q: s.seq_q(), seq_k: s.seq_k() }
    }

    /// The gate, if the scoring is one.
    fn gate(&self) -> Option<GateDims> {
        match self.scoring {
            Scoring::Gate(g) => Some(g),
            _ => None,
        }
    }

    /// Feature width and key feature heads (none for XAttention).
    fn features(&self) -> (usize, usize) {
        match self.scoring {
            Scoring::Gate(g) => (g.hidden, g.k_heads),
            Scoring::Pooled => (self.shape.head_dim(), self.shape.heads_kv()),
            Scoring::Xattn { .. } => (0, 0),
        }
    }

    /// Validates the problem and returns the workspace layout.
    pub fn layout(&self) -> Result<ScoreLayout> {
        let s = &self.shape;
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(Error::InvalidSoftmaxScale { value: self.scale, reason: "it must be finite and > 0".into() });
        }
        match self.scoring {
            Scoring::Gate(g) => gate_dims_ok(s, g.has_wq, g.k_heads, g.hidden, g.rope_theta.is_some())?,
            Scoring::Xattn { stride } => {
                if stride == 0 || !BLOCK_M.is_multiple_of(stride) || !BLOCK_N.is_multiple_of(stride) {
                    return Err(Error::InvalidParameter { name: "stride", reason: format!("is {stride}, must divide {BLOCK_N}") });
                }
                if stride * s.head_dim() * 4 > MAX_SCORE_SHARED {
                    return Err(Error::InvalidParameter {
                        name: "stride",
                        reason: format!("{stride} x head_dim {} floats of reshaped query exceed 48 KiB", s.head_dim()),
                    });
                }
            }
            Scoring::Pooled if s.head_dim() > BLOCK_POOL_MAX_OUT => {
                return Err(Error::InvalidParameter { name: "head_dim", reason: format!("is {}, block scoring takes at most {BLOCK_POOL_MAX_OUT}", s.head_dim()) });
            }
            Scoring::Pooled => {}
        }
        if let Some(GateDims { rope_theta: Some(t), .. }) = self.gate() {
            if !(t.is_finite() && t > 1.0) {
                return Err(Error::InvalidParameter { name: "gate.rope_theta", reason: format!("is {t}, must be finite and > 1") });
            }
        }
        let dims = self.score_dims();
        let nb = dims.key_blocks();
        if nb > BLOCK_SELECT_MAX_KEY_BLOCKS {
            return Err(Error::DimensionTooLarge { dim: "seq_k", value: s.seq_k(), max: BLOCK_SELECT_MAX_KEY_BLOCKS * BLOCK_N });
        }
        let (dim, k_heads) = self.features();
        let group = s.heads_q() / dims.heads;
        if group * dim * 4 > MAX_SCORE_SHARED {
            return Err(Error::InvalidParameter {
                name: "heads_q",
                reason: format!("a selection head stands for {group} query heads of {dim} features, more than block_score keeps"),
            });
        }
        let scores = dims.len()?;
        let q = product("q features", &[s.batch(), s.heads_q(), dims.row_blocks(), dim])?;
        let k = product("k features", &[s.batch(), k_heads, nb, dim])?;
        let end = scores.checked_add(q).and_then(|x| x.checked_add(k)).ok_or(Error::DimensionTooLarge { dim: "workspace", value: usize::MAX, max: isize::MAX as usize })?;
        Ok(ScoreLayout { scores: 0..scores, q_features: scores..scores + q, k_features: scores + q..end })
    }
}

/// f32 elements of workspace the scoring launches need (validates the problem).
pub fn workspace_len(problem: &ScoreProblem) -> Result<usize> {
    Ok(problem.layout()?.k_features.end)
}

/// The device tensors of the scoring launches.
#[derive(Debug, Clone, Copy)]
pub struct ScoreBuffers<'a> {
    /// Q, `[batch, seq_q, heads_q, head_dim]` under `q_layout`, or packed `[total_q, heads_q,
    /// head_dim]` (row stride `q_layout.seq`) with `varlen`.
    pub q: DeviceBuffer,
    /// K, likewise with heads_kv.
    pub k: DeviceBuffer,
    /// Strides of Q (batch unused when packed).
    pub q_layout: Bshd,
    /// Strides of K.
    pub k_layout: Bshd,
    /// Packed sequences' boundaries on the device.
    pub varlen: Option<&'a VarlenBuffers<'a>>,
    /// Gate weights `wq [heads_q, head_dim, hidden]` (dtype elements); with `gate.has_wq`.
    pub wq: Option<DeviceBuffer>,
    /// Gate weights `wk [k_heads, 3 * head_dim, hidden]`; with a gate.
    pub wk: Option<DeviceBuffer>,
    /// f32, at least [`workspace_len`] elements.
    pub workspace: DeviceBuffer,
}

/// An f16 / bf16 tensor's address: at least `needed` elements, 2-byte aligned, non-null.
fn half_addr(buf: DeviceBuffer, tensor: &'static str, needed: usize) -> Result<u64> {
    if buf.len < needed {
        return Err(Error::BufferTooSmall { tensor, needed, len: buf.len });
    }
    if buf.addr == 0 || !buf.addr.is_multiple_of(2) {
        return Err(Error::InvalidParameter { name: tensor, reason: format!("device address {:#x} is null or not 2-byte aligned", buf.addr) });
    }
    Ok(buf.addr)
}

/// Elements a strided `[rows_batch, seq, heads, d]` tensor reaches.
fn reach(tensor: &'static str, layout: &Bshd, batch: usize, seq: usize, heads: usize, d: usize) -> Result<usize> {
    if layout.head < d && heads > 1 || layout.seq < d {
        return Err(Error::InvalidStrides { tensor, reason: "rows or heads overlap".into() });
    }
    let far = |stride: usize, n: usize| stride.checked_mul(n.saturating_sub(1));
    let parts = [far(layout.batch, batch), far(layout.seq, seq), far(layout.head, heads), Some(d)];
    parts.iter().try_fold(0usize, |acc, p| p.and_then(|p| acc.checked_add(p))).ok_or(Error::InvalidStrides { tensor, reason: "the strides address more elements than memory holds".into() })
}

/// Varlen bounds as the params carry them: (cu_seqlens_q, cu_seqlens_k, total_q, total_k).
fn varlen_params(batch: usize, varlen: Option<&VarlenBuffers>) -> Result<(u64, u64, i32, i32)> {
    match varlen {
        None => Ok((0, 0, 0, 0)),
        Some(v) => {
            if let Some(h) = v.host {
                if h.batch() != batch {
                    return Err(Error::DescriptorMismatch { reason: format!("the varlen batch has {} sequences, the shape {batch}", h.batch()) });
                }
            }
            Ok((
                v.cu_seqlens_q.index_addr("cu_seqlens_q", batch + 1)?,
                v.cu_seqlens_k.index_addr("cu_seqlens_k", batch + 1)?,
                to_i32("total_q", v.total_q)?,
                to_i32("total_k", v.total_k)?,
            ))
        }
    }
}

/// Plans the scoring launches (pooled and gate: pool Q, pool K, score; XAttention: one),
/// after validating the problem, every buffer's length and alignment, and the gate weights'
/// presence and lengths (named `gate.wq`, `gate.wk`). Run them in order on one stream.
pub fn plan_scores(problem: &ScoreProblem, bufs: &ScoreBuffers<'_>) -> Result<Vec<LaunchPlan>> {
    let layout = problem.layout()?;
    let s = &problem.shape;
    let dims = problem.score_dims();
    let (mb, nb, d) = (dims.row_blocks(), dims.key_blocks(), s.head_dim());
    let (dim, k_heads) = problem.features();
    let ws = bufs.workspace.index_addr("workspace", layout.k_features.end)?;
    let (cu_q, cu_k, total_q, total_k) = varlen_params(s.batch(), bufs.varlen)?;
    let (q_rows_batch, k_rows_batch, q_seq, k_seq) = match bufs.varlen {
        Some(v) => (1, 1, v.total_q, v.total_k),
        None => (s.batch(), s.batch(), s.seq_q(), s.seq_k()),
    };
    let q_need = reach("q", &bufs.q_layout, q_rows_batch, q_seq, s.heads_q(), d)?;
    let k_need = reach("k", &bufs.k_layout, k_rows_batch, k_seq, s.heads_kv(), d)?;
    let q = half_addr(bufs.q, "q", q_need)?;
    let k = half_addr(bufs.k, "k", k_need)?;
    if let Scoring::Xattn { stride } = problem.scoring {
        if bufs.wq.is_some() || bufs.wk.is_some() {
            return Err(Error::InvalidParameter { name: "gate", reason: "weights were given but the scoring is XAttention".into() });
        }
        let p = XattnScoreParams {
            q,
            k,
            scores: ws,
            cu_seqlens_q: cu_q,
            cu_seqlens_k: cu_k,
            q_batch_stride: bufs.q_layout.batch as i64,
            q_seq_stride: bufs.q_layout.seq as i64,
            q_head_stride: bufs.q_layout.head as i64,
            k_batch_stride: bufs.k_layout.batch as i64,
            k_seq_stride: bufs.k_layout.seq as i64,
            k_head_stride: bufs.k_layout.head as i64,
            batch: to_i32("batch", s.batch())?,
            seq_q: to_i32("seq_q", s.seq_q())?,
            seq_k: to_i32("seq_k", s.seq_k())?,
            total_q,
            total_k,
            heads_q: to_i32("heads_q", s.heads_q())?,
            heads_kv: to_i32("heads_kv", s.heads_kv())?,
            sel_heads: to_i32("heads", dims.heads)?,
            head_dim: to_i32("head_dim", d)?,
            row_blocks: to_i32("row_blocks", mb)?,
            key_blocks: to_i32("key_blocks", nb)?,
            stride: to_i32("stride", stride)?,
            causal: i32::from(problem.causal),
            scale: problem.scale,
        };
        let grid = [to_u32("row_blocks", mb)?, to_u32("heads", dims.heads)?, to_u32("batch", s.batch())?];
        let kernel = format!("xattn_score_{}", problem.dtype.name());
        return Ok(vec![LaunchPlan::new(MODULE, kernel, grid, [BLOCK_SELECT_THREADS, 1, 1], to_u32("shared memory", stride * d * 4)?, &p)?]);
    }
    let (wq, wk) = match problem.gate() {
        None => {
            if bufs.wq.is_some() || bufs.wk.is_some() {
                return Err(Error::InvalidParameter { name: "gate", reason: "weights were given but the problem has no gate".into() });
            }
            (0, 0)
        }
        Some(g) => {
            let wq = match (g.has_wq, bufs.wq) {
                (true, Some(w)) => half_addr(w, "gate.wq", product("gate.wq", &[s.heads_q(), d, g.hidden])?)?,
                (false, None) => 0,
                (true, None) => return Err(Error::InvalidParameter { name: "gate.wq", reason: "the gate has wq but no buffer was given".into() }),
                (false, Some(_)) => return Err(Error::InvalidParameter { name: "gate.wq", reason: "given, but the gate's dims say it has none".into() }),
            };
            let wk = bufs.wk.ok_or(Error::InvalidParameter { name: "gate.wk", reason: "a gate needs wk".into() })?;
            (wq, half_addr(wk, "gate.wk", product("gate.wk", &[g.k_heads, 3 * d, g.hidden])?)?)
        }
    };
    let (rope, log2_theta) = match problem.gate().and_then(|g| g.rope_theta) {
        Some(t) => (1, t.log2()),
        None => (0, 0.0),
    };
    let f32_addr = |r: &std::ops::Range<usize>| ws + 4 * r.start as u64;
    let kernel = format!("block_pool_{}", problem.dtype.name());
    let pool_q = BlockPoolParams {
        x: q,
        cu_seqlens: cu_q,
        cu_seqlens_other: cu_k,
        weight: wq,
        out: f32_addr(&layout.q_features),
        batch_stride: bufs.q_layout.batch as i64,
        seq_stride: bufs.q_layout.seq as i64,
        head_stride: bufs.q_layout.head as i64,
        batch: to_i32("batch", s.batch())?,
        seq: to_i32("seq_q", s.seq_q())?,
        total: total_q,
        seq_other: to_i32("seq_k", s.seq_k())?,
        total_other: total_k,
        heads: to_i32("heads_q", s.heads_q())?,
        out_heads: to_i32("heads_q", s.heads_q())?,
        head_dim: to_i32("head_dim", d)?,
        blocks: to_i32("row_blocks", mb)?,
        block: BLOCK_M as i32,
        pool_max_min: 0,
        out_dim: to_i32("hidden", dim)?,
        rope,
        rope_from_end: 1,
        rope_log2_theta: log2_theta,
        reserved: 0,
    };
    let gate = problem.gate().is_some();
    let pool_k = BlockPoolParams {
        x: k,
        cu_seqlens: cu_k,
        cu_seqlens_other: cu_q,
        weight: wk,
        out: f32_addr(&layout.k_features),
        batch_stride: bufs.k_layout.batch as i64,
        seq_stride: bufs.k_layout.seq as i64,
        head_stride: bufs.k_layout.head as i64,
        seq: to_i32("seq_k", s.seq_k())?,
        total: total_k,
        seq_other: to_i32("seq_q", s.seq_q())?,
        total_other: total_q,
        heads: to_i32("heads_kv", s.heads_kv())?,
        out_heads: to_i32("gate.wk", k_heads)?,
        blocks: to_i32("key_blocks", nb)?,
        block: BLOCK_N as i32,
        pool_max_min: i32::from(gate),
        rope_from_end: 0,
        ..pool_q
    };
    debug_assert!(3 * d <= BLOCK_POOL_MAX_IN || !gate);
    let score = BlockScoreParams {
        q_features: pool_q.out,
        k_features: pool_k.out,
        scores: f32_addr(&layout.scores),
        cu_seqlens_q: cu_q,
        cu_seqlens_k: cu_k,
        batch: pool_q.batch,
        seq_q: pool_q.seq,
        seq_k: pool_k.seq,
        total_q,
        total_k,
        q_heads: pool_q.heads,
        k_heads: pool_k.out_heads,
        sel_heads: to_i32("heads", dims.heads)?,
        row_blocks: pool_q.blocks,
        key_blocks: pool_k.blocks,
        dim: to_i32("hidden", dim)?,
        causal: i32::from(problem.causal),
        scale: problem.scale,
        reserved: 0,
    };
    let batch = to_u32("batch", s.batch())?;
    let threads = [BLOCK_POOL_THREADS, 1, 1];
    let group = s.heads_q() / dims.heads;
    Ok(vec![
        LaunchPlan::new(MODULE, kernel.clone(), [to_u32("row_blocks", mb)?, to_u32("heads_q", s.heads_q())?, batch], threads, 0, &pool_q)?,
        LaunchPlan::new(MODULE, kernel, [to_u32("key_blocks", nb)?, to_u32("gate.wk", k_heads)?, batch], threads, 0, &pool_k)?,
        LaunchPlan::new(
            MODULE,
            "block_score".into(),
            [to_u32("row_blocks", mb)?, to_u32("heads", dims.heads)?, batch],
            [BLOCK_SELECT_THREADS, 1, 1],
            to_u32("block_score shared memory", group * dim * 4)?,
            &score,
        )?,
    ])
}

/// Plans the selection of blocks from `scores [batch, heads, row_blocks, key_blocks]` (f32,
/// the dims' longest lengths; per-sequence lengths from `varlen`) into `block_count [batch,
/// heads, row_blocks]` and `block_index [batch, heads, row_blocks, config.max_blocks(key_blocks)]`
/// (i32), after validating the dims, the budget (`top_k` in `1..=key_blocks`, `threshold`
/// in `(0, 1]`), key blocks up to 8192 (seq_k 512K) and every buffer's length.
pub fn plan_select(
    dims: &ScoreDims,
    config: &BlockSelectConfig,
    scores: DeviceBuffer,
    varlen: Option<&VarlenBuffers<'_>>,
    block_count: DeviceBuffer,
    block_index: DeviceBuffer,
) -> Result<LaunchPlan> {
    let len = dims.len()?;
    let (mb, nb) = (dims.row_blocks(), dims.key_blocks());
    if nb > BLOCK_SELECT_MAX_KEY_BLOCKS {
        return Err(Error::DimensionTooLarge { dim: "seq_k", value: dims.seq_k, max: BLOCK_SELECT_MAX_KEY_BLOCKS * BLOCK_N });
    }
    config.validate(nb)?;
    let max_blocks = config.max_blocks(nb);
    let rows = len / nb;
    let (cu_q, cu_k, total_q, total_k) = varlen_params(dims.batch, varlen)?;
    let sort_len = nb.next_power_of_two();
    let (top_k, threshold) = match config.budget {
        BlockBudget::TopK(k) => (to_i32("top_k", k)?, 1.0),
        BlockBudget::Threshold(p) => (0, p as f32),
    };
    if !(threshold > 0.0 && threshold <= 1.0) {
        // A threshold just above 0 in f64 that rounds to 0 in f32.
        return Err(Error::InvalidParameter { name: "threshold", reason: format!("{threshold} in f32, must be in (0, 1]") });
    }
    let p = BlockSelectParams {
        scores: scores.index_addr("scores", len)?,
        cu_seqlens_q: cu_q,
        cu_seqlens_k: cu_k,
        block_count: block_count.index_addr("block_count", rows)?,
        block_index: block_index.index_addr("block_index", rows * max_blocks)?,
        batch: to_i32("batch", dims.batch)?,
        heads: to_i32("heads", dims.heads)?,
        seq_q: to_i32("seq_q", dims.seq_q)?,
        seq_k: to_i32("seq_k", dims.seq_k)?,
        total_q,
        total_k,
        row_blocks: to_i32("row_blocks", mb)?,
        key_blocks: to_i32("key_blocks", nb)?,
        sort_len: to_i32("key_blocks", sort_len)?,
        max_blocks: to_i32("max_blocks", max_blocks)?,
        top_k,
        causal: i32::from(config.causal),
        force_sink: i32::from(config.force_sink),
        force_diagonal: i32::from(config.force_diagonal),
        mass_scores: i32::from(config.kind == ScoreKind::Mass),
        threshold,
    };
    let shared = sort_len * 8 + (sort_len / 32 + 1) * 4;
    debug_assert!(shared <= MAX_SELECT_SHARED);
    let grid = [to_u32("row_blocks", mb)?, to_u32("heads", dims.heads)?, to_u32("batch", dims.batch)?];
    LaunchPlan::new(MODULE, "block_select_blocks".into(), grid, [BLOCK_SELECT_THREADS, 1, 1], to_u32("shared memory", shared)?, &p)
}

/// Plans a whole estimation, scoring then selection, to run in order on one stream: the
/// scoring launches of [`plan_scores`] into `bufs.workspace`, then [`plan_select`] over the
/// scores they leave at its start, into `block_count` and `block_index`. The selection's mask
/// must be the scoring's ([`check_same_mask`]).
pub fn plan_estimate(
    problem: &ScoreProblem,
    config: &BlockSelectConfig,
    bufs: &ScoreBuffers<'_>,
    block_count: DeviceBuffer,
    block_index: DeviceBuffer,
) -> Result<Vec<LaunchPlan>> {
    check_same_mask(problem, config)?;
    let mut plans = plan_scores(problem, bufs)?;
    let scores = DeviceBuffer { addr: bufs.workspace.addr, len: problem.layout()?.scores.len() };
    plans.push(plan_select(&problem.score_dims(), config, scores, bufs.varlen, block_count, block_index)?);
    Ok(plans)
}

/// Errors unless the selection's `causal` is the scoring's: causal scores leave the blocks
/// past the diagonal at -inf, which a non-causal selection could still pick.
pub fn check_same_mask(problem: &ScoreProblem, config: &BlockSelectConfig) -> Result<()> {
    if problem.causal != config.causal {
        return Err(Error::InvalidParameter {
            name: "causal",
            reason: format!("the scoring has causal = {} but the selection {}", problem.causal, config.causal),
        });
    }
    Ok(())
}
