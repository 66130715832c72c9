//! MInference's vertical-slash attention end to end, on the device: estimate the pattern
//! from the last query rows ([`super::vs_estimate`]), convert it to tiles and columns
//! ([`super::vs_convert`]), and run the vertical-slash attention kernel over it, as one
//! [`PipelinePlan`] whose scratch tensors all live in one caller workspace of
//! [`workspace_len`] words. Nothing goes back to the host between the launches.

use super::pipeline::{PipelinePlan, PipelineStep};
use super::vs_convert::SeqLens;
use super::vs_estimate::{VsEstimateBuffers, VsEstimateDims};
use super::workspace::WorkspaceLayout;
use super::{AttnBuffers, DeviceBuffer, VarlenBuffers};
use crate::checked::product;
use crate::error::{Error, Result};
use crate::pattern::VsEstimateConfig;
use crate::shape::{AttnOptions, AttnShape, DType};
use crate::source::{row_blocks, Source, VsIndex, VsIndexDims};

/// The buffers of one MInference step.
#[derive(Debug, Clone, Copy)]
pub struct MinferenceBuffers<'a> {
    /// Q, K, V, the output and the optional LSE, as for [`super::attention`] (packed with
    /// `varlen`, as for [`super::attention_varlen`]).
    pub attn: AttnBuffers,
    /// The boundaries of a varlen batch; `None` for a padded one.
    pub varlen: Option<&'a VarlenBuffers<'a>>,
    /// 4-byte scratch of at least [`workspace_len`] elements, 16-byte aligned. Its contents
    /// on entry do not matter; on exit it holds the estimate and the converted index
    /// ([`PipelinePlan::source`]).
    pub workspace: DeviceBuffer,
}

/// The workspace's parts, in order: the estimator's scratch, its two index tensors, and
/// the four tensors of the converted index.
fn layout(shape: &AttnShape, config: &VsEstimateConfig) -> Result<(WorkspaceLayout, VsIndexDims)> {
    let dims = VsEstimateDims::new(shape, config)?;
    let heads = product("vertical_indexes", &[shape.batch(), shape.heads_q()])?;
    let index = VsIndexDims::new(shape.batch(), shape.heads_q(), row_blocks(shape.seq_q()), dims.nnz_v, dims.nnz_s)?;
    let lens = index.lens();
    let layout = WorkspaceLayout::new(&[
        ("estimate", super::vs_estimate::workspace_len(shape, config)?),
        ("vertical_indexes", product("vertical_indexes", &[heads, dims.nnz_v])?),
        ("slash_indexes", product("slash_indexes", &[heads, dims.nnz_s])?),
        ("block_count", lens.rows),
        ("block_offset", lens.block_offset),
        ("column_count", lens.rows),
        ("column_index", lens.column_index),
    ])?;
    Ok((layout, index))
}

/// 4-byte words of workspace that a step of `shape` with `config` needs (for varlen,
/// `shape` holds the longest sequences). Errors as [`VsEstimateDims::new`] (a budget or
/// `last_q` of 0) or when the sizes overflow.
pub fn workspace_len(shape: &AttnShape, config: &VsEstimateConfig) -> Result<usize> {
    Ok(layout(shape, config)?.0.total())
}

/// Plans the step after validating all of it before anything runs: the estimation
/// ([`super::vs_estimate::plan`], with the scale `opts` gives the attention, so the
/// estimate ranks the probabilities the attention will compute), the conversion and the
/// vertical-slash attention (which must be causal), and the workspace.
pub fn plan(shape: &AttnShape, dtype: DType, opts: &AttnOptions, config: &VsEstimateConfig, bufs: &MinferenceBuffers) -> Result<PipelinePlan> {
    if !opts.causal {
        return Err(Error::InvalidParameter {
            name: "causal",
            reason: "vertical-slash attention is causal only (slashes are distances from the causal diagonal)".into(),
        });
    }
    let scale = opts.kernel_scale(shape.head_dim(), dtype)?;
    let (layout, index_dims) = layout(shape, config)?;
    let parts = layout.carve(bufs.workspace)?;
    let [scratch, vertical, slash, block_count, block_offset, column_count, column_index] = parts[..] else {
        unreachable!("the layout has seven parts");
    };
    let attn = &bufs.attn;
    let estimate = super::vs_estimate::plan(
        shape,
        dtype,
        config,
        scale,
        &VsEstimateBuffers {
            q: attn.q,
            k: attn.k,
            q_layout: attn.layouts.q,
            k_layout: attn.layouts.k,
            varlen: bufs.varlen,
            workspace: scratch,
            vertical_indexes: vertical,
            slash_indexes: slash,
        },
    )?;
    let index = VsIndex { dims: index_dims, block_count, block_offset, column_count, column_index };
    let source = Source::VerticalSlash(index);
    let (convert, attention) = match bufs.varlen {
        None => (super::vs_convert::plan(shape, vertical, slash, &index)?, super::attention(shape, dtype, opts, attn, &source)?),
        Some(lens) => (
            super::vs_convert::plan_varlen(shape, SeqLens::Varlen(lens), vertical, slash, &index)?,
            super::attention_varlen(shape, lens, dtype, opts, attn, &source)?,
        ),
    };
    let mut steps: Vec<PipelineStep> = ["vs_estimate_scores", "vs_estimate_row_stats", "vs_estimate_sums", "vs_estimate_select"]
        .into_iter()
        .zip(estimate.launches())
        .map(|(name, plan)| PipelineStep { name, plan: plan.clone() })
        .collect();
    steps.push(PipelineStep { name: "vs_convert", plan: convert });
    steps.push(PipelineStep { name: "attention", plan: attention });
    Ok(PipelinePlan { steps, source })
}
