//! Block selection on the GPU (kernels/block_select.cu), planned by
//! [`crate::plan::block_select`]: [`block_scores`] enqueues the scoring launches, and
//! [`block_select`] the selection from a score tensor (the scoring's, or any other f32
//! scores of that shape, such as XAttention-style masses).

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::VarlenTensors;
use super::tensors::{read, write};
use crate::error::Result;
use crate::pattern::block_select::{BlockSelectConfig, ScoreDims};
use crate::plan::block_select::{plan_estimate, plan_scores, plan_select, ScoreBuffers, ScoreProblem};
use crate::shape::{AttnDtype, Bshd};

/// The device tensors [`block_scores`] reads.
pub struct BlockScoreTensors<'a, T, B> {
    /// Q `[batch, seq_q, heads_q, head_dim]` under `q_layout`, or packed `[total_q, heads_q,
    /// head_dim]` with `varlen`.
    pub q: &'a dyn DevicePtr<T>,
    /// K, likewise with heads_kv.
    pub k: &'a dyn DevicePtr<T>,
    /// Strides of Q.
    pub q_layout: Bshd,
    /// Strides of K.
    pub k_layout: Bshd,
    /// Packed sequences' boundaries.
    pub varlen: Option<VarlenTensors<'a, B>>,
    /// The gate's `wq [heads_q, head_dim, hidden]` (when its dims say it has one).
    pub wq: Option<&'a dyn DevicePtr<T>>,
    /// The gate's `wk [k_heads, 3 * head_dim, hidden]`.
    pub wk: Option<&'a dyn DevicePtr<T>>,
}

/// Enqueues the scoring launches on `stream`: the score tensor `[batch, H, row_blocks,
/// key_blocks]` lands in `workspace` at [`ScoreProblem::layout`]'s `scores` range (f32,
/// [`crate::plan::block_select::workspace_len`] elements). Everything is validated first
/// ([`plan_scores`]).
pub fn block_scores<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    problem: &ScoreProblem,
    tensors: &BlockScoreTensors<'_, T, B>,
    workspace: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    let mut guards = Vec::new();
    let q = read(stream, "q", tensors.q, &mut guards)?;
    let k = read(stream, "k", tensors.k, &mut guards)?;
    let wq = tensors.wq.map(|w| read(stream, "gate.wq", w, &mut guards)).transpose()?;
    let wk = tensors.wk.map(|w| read(stream, "gate.wk", w, &mut guards)).transpose()?;
    let varlen = tensors.varlen.as_ref().map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let workspace = write(stream, "workspace", workspace, &mut guards)?;
    let bufs = ScoreBuffers { q, k, q_layout: tensors.q_layout, k_layout: tensors.k_layout, varlen: varlen.as_ref(), wq, wk, workspace };
    let problem = ScoreProblem { dtype: T::DTYPE, ..*problem };
    let plans = plan_scores(&problem, &bufs)?;
    for plan in &plans {
        // SAFETY: every address comes from a live buffer of this stream's context (checked
        // above) whose length the planner checked against every element the kernels
        // address; the guards keep cudarc's ordering until the launches are enqueued.
        unsafe { super::launch::launch(stream.cu_stream(), plan) }?;
    }
    drop(guards);
    Ok(())
}

/// Enqueues the selection of key blocks from `scores [batch, heads, row_blocks, key_blocks]`
/// (f32; `dims` the longest lengths, `varlen` the per-sequence ones) into `block_count [batch,
/// heads, row_blocks]` and `block_index [batch, heads, row_blocks, config.max_blocks(key_blocks)]`
/// (the block-sparse format, ids ascending, -1 padding). The rule is
/// [`crate::pattern::block_select::select_row`]; validated by [`plan_select`].
pub fn block_select<B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    dims: &ScoreDims,
    config: &BlockSelectConfig,
    scores: &dyn DevicePtr<f32>,
    varlen: Option<&VarlenTensors<'_, B>>,
    block_count: &mut dyn DevicePtrMut<i32>,
    block_index: &mut dyn DevicePtrMut<i32>,
) -> Result<()> {
    let mut guards = Vec::new();
    let scores = read(stream, "scores", scores, &mut guards)?;
    let varlen = varlen.map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let count = write(stream, "block_count", block_count, &mut guards)?;
    let index = write(stream, "block_index", block_index, &mut guards)?;
    let plan = plan_select(dims, config, scores, varlen.as_ref(), count, index)?;
    // SAFETY: as in block_scores.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}

/// [`block_scores`] then [`block_select`] on one stream, the scores staying in `workspace`
/// (f32, [`crate::plan::block_select::workspace_len`] elements): Q and K to the
/// block-sparse index tensors `block_count [batch, H, row_blocks]` and `block_index [batch,
/// H, row_blocks, config.max_blocks(key_blocks)]`, H from `problem.per_kv_group`. The
/// selection reads the scoring's per-sequence lengths (`tensors.varlen`); select XAttention
/// scores with `ScoreKind::Mass`. `config.causal` must be `problem.causal`.
pub fn block_estimate<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>>(
    stream: &Arc<CudaStream>,
    problem: &ScoreProblem,
    config: &BlockSelectConfig,
    tensors: &BlockScoreTensors<'_, T, B>,
    workspace: &mut dyn DevicePtrMut<f32>,
    block_count: &mut dyn DevicePtrMut<i32>,
    block_index: &mut dyn DevicePtrMut<i32>,
) -> Result<()> {
    let mut guards = Vec::new();
    let q = read(stream, "q", tensors.q, &mut guards)?;
    let k = read(stream, "k", tensors.k, &mut guards)?;
    let wq = tensors.wq.map(|w| read(stream, "gate.wq", w, &mut guards)).transpose()?;
    let wk = tensors.wk.map(|w| read(stream, "gate.wk", w, &mut guards)).transpose()?;
    let varlen = tensors.varlen.as_ref().map(|v| v.buffers(stream, &mut guards)).transpose()?;
    let workspace = write(stream, "workspace", workspace, &mut guards)?;
    let count = write(stream, "block_count", block_count, &mut guards)?;
    let index = write(stream, "block_index", block_index, &mut guards)?;
    let problem = ScoreProblem { dtype: T::DTYPE, ..*problem };
    let bufs = ScoreBuffers { q, k, q_layout: tensors.q_layout, k_layout: tensors.k_layout, varlen: varlen.as_ref(), wq, wk, workspace };
    let plans = plan_estimate(&problem, config, &bufs, count, index)?;
    for plan in &plans {
        // SAFETY: as in block_scores; the selection reads the scores the scoring launches
        // wrote earlier on the same stream.
        unsafe { super::launch::launch(stream.cu_stream(), plan) }?;
    }
    drop(guards);
    Ok(())
}
