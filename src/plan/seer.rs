//! Block-sparse attention with its index built on the device, end to end: score (row
//! block, key block) pairs from Q and K ([`super::block_select::plan_scores`]: pooled,
//! SeerAttention's gate, or XAttention), keep each row block's best key blocks
//! ([`super::block_select::plan_select`]), and run the block-sparse attention kernel over
//! them, as one [`PipelinePlan`] whose scratch lives in one caller workspace of
//! [`workspace_len`] words. SeerAttention's prefill is the gate scoring; the same pipeline
//! serves MInference's block-sparse heads (pooled) and XAttention.

use super::block_select::{ScoreBuffers, ScoreProblem, Scoring};
use super::pipeline::{PipelinePlan, PipelineStep};
use super::workspace::WorkspaceLayout;
use super::{AttnBuffers, DeviceBuffer, VarlenBuffers};
use crate::error::{Error, Result};
use crate::pattern::block_select::BlockSelectConfig;
use crate::shape::{AttnOptions, AttnShape, DType};
use crate::source::{BlockSparseDims, BlockSparseIndex, Source};

/// How the step chooses its blocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeerConfig {
    /// How blocks are scored. The scale of the scores is the attention's softmax scale for
    /// pooled and XAttention scores, and `hidden^-0.5` for the gate (as SeerAttention's
    /// `AttnGate` scales its logits).
    pub scoring: Scoring,
    /// One block set per kv head, scored by the mean over its query heads (the attention
    /// then loads each K/V tile once per group); otherwise one per query head.
    pub per_kv_group: bool,
    /// The budget and forcing per row block. Its `causal` must equal the attention's.
    pub select: BlockSelectConfig,
}

/// The buffers of one step.
#[derive(Debug, Clone, Copy)]
pub struct SeerBuffers<'a> {
    /// Q, K, V, the output and the optional LSE, as for [`super::attention`] (packed with
    /// `varlen`, as for [`super::attention_varlen`]).
    pub attn: AttnBuffers,
    /// The boundaries of a varlen batch; `None` for a padded one.
    pub varlen: Option<&'a VarlenBuffers<'a>>,
    /// The gate's `wq [heads_q, head_dim, hidden]` (Q's dtype), when the gate has one.
    pub wq: Option<DeviceBuffer>,
    /// The gate's `wk [k_heads, 3 * head_dim, hidden]`, with a gate.
    pub wk: Option<DeviceBuffer>,
    /// 4-byte scratch of at least [`workspace_len`] elements, 16-byte aligned; its contents on
    /// entry do not matter. On exit it holds the scores and the block index
    /// ([`PipelinePlan::source`]).
    pub workspace: DeviceBuffer,
}

/// The scoring problem the step solves, after checking that the selection's mask is the
/// attention's.
fn problem(shape: &AttnShape, dtype: DType, opts: &AttnOptions, config: &SeerConfig) -> Result<ScoreProblem> {
    if config.select.causal != opts.causal {
        return Err(Error::InvalidParameter {
            name: "causal",
            reason: format!("the attention has causal = {} but the block selection {}", opts.causal, config.select.causal),
        });
    }
    let scale = match config.scoring {
        // Checked against 1..=256 by the scoring's own validation.
        Scoring::Gate(g) => 1.0 / (g.hidden.max(1) as f32).sqrt(),
        Scoring::Pooled | Scoring::Xattn { .. } => opts.kernel_scale(shape.head_dim(), dtype)?,
    };
    Ok(ScoreProblem { shape: *shape, dtype, per_kv_group: config.per_kv_group, causal: opts.causal, scale, scoring: config.scoring })
}

/// The workspace's parts (the scoring's scratch, block_count, block_index) and the index's
/// sizes.
fn layout(problem: &ScoreProblem, config: &SeerConfig) -> Result<(WorkspaceLayout, BlockSparseDims)> {
    let scratch = super::block_select::workspace_len(problem)?;
    let dims = problem.score_dims();
    let (mb, nb) = (dims.row_blocks(), dims.key_blocks());
    config.select.validate(nb)?;
    let index = BlockSparseDims::new(dims.batch, dims.heads, mb, config.select.max_blocks(nb))?;
    let rows = crate::checked::product("block_count", &[dims.batch, dims.heads, mb])?;
    let slots = crate::checked::product("block_index", &[rows, index.max_blocks()])?;
    Ok((WorkspaceLayout::new(&[("scores", scratch), ("block_count", rows), ("block_index", slots)])?, index))
}

/// 4-byte words of workspace a step needs (for varlen, `shape` holds the longest
/// sequences). Validates the config as [`plan`] does.
pub fn workspace_len(shape: &AttnShape, dtype: DType, opts: &AttnOptions, config: &SeerConfig) -> Result<usize> {
    Ok(layout(&problem(shape, dtype, opts, config)?, config)?.0.total())
}

/// Plans the step, validating all of it before anything runs: the scoring (its problem,
/// the gate weights' presence and lengths, named `gate.wq` / `gate.wk`), the selection
/// (budget, forcing, the mask equal to the attention's), the block-sparse attention and the
/// workspace.
pub fn plan(shape: &AttnShape, dtype: DType, opts: &AttnOptions, config: &SeerConfig, bufs: &SeerBuffers) -> Result<PipelinePlan> {
    let problem = problem(shape, dtype, opts, config)?;
    let (layout, dims) = layout(&problem, config)?;
    let parts = layout.carve(bufs.workspace)?;
    let [scratch, block_count, block_index] = parts[..] else {
        unreachable!("the layout has three parts");
    };
    let attn = &bufs.attn;
    let score_bufs = ScoreBuffers {
        q: attn.q,
        k: attn.k,
        q_layout: attn.layouts.q,
        k_layout: attn.layouts.k,
        varlen: bufs.varlen,
        wq: bufs.wq,
        wk: bufs.wk,
        workspace: scratch,
    };
    let estimate = super::block_select::plan_estimate(&problem, &config.select, &score_bufs, block_count, block_index)?;
    // The last launch of the estimate is the selection; the others score.
    let last = estimate.len() - 1;
    let mut steps: Vec<PipelineStep> =
        estimate.into_iter().enumerate().map(|(i, plan)| PipelineStep { name: if i == last { "block_select" } else { "block_scores" }, plan }).collect();
    let source = Source::BlockSparse(BlockSparseIndex { dims, block_count, block_index });
    let attention = match bufs.varlen {
        None => super::attention(shape, dtype, opts, attn, &source)?,
        Some(lens) => super::attention_varlen(shape, lens, dtype, opts, attn, &source)?,
    };
    steps.push(PipelineStep { name: "attention", plan: attention });
    Ok(PipelinePlan { steps, source })
}
