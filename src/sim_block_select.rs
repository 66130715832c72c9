//! Block selection on the PTX simulator: [`SimBackend::block_scores`] and
//! [`SimBackend::block_select`] run the plans that [`crate::cuda::block_scores`] and
//! [`crate::cuda::block_select`] launch, from host tensors; [`SimBackend::block_estimate`]
//! runs all four launches with the scores kept on the device, as an engine would.

use ptx_sim::{Counters, LaunchOptions};

use crate::error::Result;
use crate::pattern::block_select::{BlockSelectConfig, ScoreDims};
use crate::pattern::BlockSparse;
use crate::plan::block_select::{plan_scores, plan_select, workspace_len, ScoreBuffers, ScoreProblem};
use crate::plan::{DeviceBuffer, VarlenBuffers};
use crate::shape::{AttnDtype, Bshd, Varlen};
use crate::sim::SimBackend;

/// Host inputs of a simulated block scoring.
#[derive(Debug, Clone, Copy)]
pub struct SimBlockInputs<'a, T> {
    /// Q, contiguous `[batch, seq_q, heads_q, head_dim]`, or packed `[total_q, heads_q,
    /// head_dim]` with `varlen`.
    pub q: &'a [T],
    /// K, likewise with heads_kv.
    pub k: &'a [T],
    /// Packed sequences' boundaries (uploaded; the host copy is checked against the batch).
    pub varlen: Option<&'a Varlen>,
    /// The gate's `wq` (when its dims say it has one).
    pub wq: Option<&'a [T]>,
    /// The gate's `wk`.
    pub wk: Option<&'a [T]>,
}

/// What [`SimBackend::block_estimate`] produced.
#[derive(Debug, Clone)]
pub struct SimBlockEstimate {
    /// The selection, `max_blocks = config.max_blocks(key_blocks)`.
    pub blocks: BlockSparse,
    /// The device's scores `[batch, H, row_blocks, key_blocks]`.
    pub scores: Vec<f32>,
    /// The launches' work (simulator counts): pool Q, pool K, score, select; for
    /// XAttention scoring its one launch, then select (the middle two zero).
    pub counters: [Counters; 4],
}

/// Device copies of the inputs.
struct Uploaded {
    q: DeviceBuffer,
    k: DeviceBuffer,
    wq: Option<DeviceBuffer>,
    wk: Option<DeviceBuffer>,
    cu: Option<(DeviceBuffer, DeviceBuffer)>,
}

impl SimBackend {
    fn upload_block_inputs<T: AttnDtype + ptx_sim::Element>(&self, inputs: &SimBlockInputs<'_, T>) -> Result<Uploaded> {
        Ok(Uploaded {
            q: self.upload(inputs.q)?,
            k: self.upload(inputs.k)?,
            wq: inputs.wq.map(|w| self.upload(w)).transpose()?,
            wk: inputs.wk.map(|w| self.upload(w)).transpose()?,
            cu: inputs.varlen.map(|v| Ok::<_, crate::Error>((self.upload(v.cu_seqlens_q())?, self.upload(v.cu_seqlens_k())?))).transpose()?,
        })
    }

    /// Runs the scoring launches and returns the device's score tensor `[batch, H,
    /// row_blocks, key_blocks]`, equal (up to f32 rounding) to
    /// [`crate::pattern::block_select::block_scores_host`]. `problem.dtype` is taken from `T`.
    pub fn block_scores<T: AttnDtype + ptx_sim::Element>(&self, problem: &ScoreProblem, inputs: &SimBlockInputs<'_, T>) -> Result<Vec<f32>> {
        let est = self.block_run(problem, None, inputs, &LaunchOptions::default())?;
        Ok(est.scores)
    }

    /// Selects blocks from host `scores` on the device ([`plan_select`]); returns the
    /// descriptor, equal to [`crate::pattern::block_select::select_blocks_host`] on the same
    /// scores away from near-ties.
    pub fn block_select(&self, dims: &ScoreDims, config: &BlockSelectConfig, scores: &[f32], varlen: Option<&Varlen>, opts: &LaunchOptions) -> Result<BlockSparse> {
        let len = dims.len()?;
        crate::shape::check_len("scores", scores.len(), &[len])?;
        config.validate(dims.key_blocks())?;
        let scores = self.upload(scores)?;
        let cu = varlen.map(|v| Ok::<_, crate::Error>((self.upload(v.cu_seqlens_q())?, self.upload(v.cu_seqlens_k())?))).transpose()?;
        let vb = cu.map(|(q, k)| varlen_buffers(varlen, q, k));
        self.select_on_device(dims, config, scores, vb.as_ref(), opts).map(|(b, _)| b)
    }

    fn select_on_device(&self, dims: &ScoreDims, config: &BlockSelectConfig, scores: DeviceBuffer, varlen: Option<&VarlenBuffers<'_>>, opts: &LaunchOptions) -> Result<(BlockSparse, Counters)> {
        let rows = dims.len()? / dims.key_blocks();
        let max_blocks = config.max_blocks(dims.key_blocks());
        let count = self.alloc::<i32>(rows)?;
        let index = self.alloc::<i32>(rows * max_blocks)?;
        let plan = plan_select(dims, config, scores, varlen, count, index)?;
        let counters = self.launch(&plan, opts)?;
        let count: Vec<i32> = self.download(count)?;
        let index: Vec<i32> = self.download(index)?;
        let blocks = BlockSparse::new(dims.batch, dims.heads, dims.row_blocks(), max_blocks, count, index)?;
        Ok((blocks, counters))
    }

    /// Scores, then selects with `config` (its `causal` must be `problem.causal`), the scores
    /// staying on the device: what [`crate::cuda::block_estimate`] launches. `opts` applies
    /// to every launch (racecheck).
    pub fn block_estimate<T: AttnDtype + ptx_sim::Element>(
        &self,
        problem: &ScoreProblem,
        config: &BlockSelectConfig,
        inputs: &SimBlockInputs<'_, T>,
        opts: &LaunchOptions,
    ) -> Result<SimBlockEstimate> {
        crate::plan::block_select::check_same_mask(problem, config)?;
        self.block_run(problem, Some(config), inputs, opts)
    }

    fn block_run<T: AttnDtype + ptx_sim::Element>(
        &self,
        problem: &ScoreProblem,
        config: Option<&BlockSelectConfig>,
        inputs: &SimBlockInputs<'_, T>,
        opts: &LaunchOptions,
    ) -> Result<SimBlockEstimate> {
        let problem = ScoreProblem { dtype: T::DTYPE, ..*problem };
        let s = problem.shape;
        let ws_len = workspace_len(&problem)?;
        let up = self.upload_block_inputs(inputs)?;
        let workspace = self.alloc::<f32>(ws_len)?;
        let vb = up.cu.map(|(q, k)| varlen_buffers(inputs.varlen, q, k));
        let (q_layout, k_layout) = match inputs.varlen {
            Some(_) => (Bshd::contiguous(0, s.heads_q(), s.head_dim()), Bshd::contiguous(0, s.heads_kv(), s.head_dim())),
            None => (s.q_layout(), s.kv_layout()),
        };
        let bufs = ScoreBuffers { q: up.q, k: up.k, q_layout, k_layout, varlen: vb.as_ref(), wq: up.wq, wk: up.wk, workspace };
        let plans = plan_scores(&problem, &bufs)?;
        let mut counters: [Counters; 4] = Default::default();
        for (c, plan) in counters.iter_mut().zip(&plans) {
            *c = self.launch(plan, opts)?;
        }
        let layout = problem.layout()?;
        let dims = problem.score_dims();
        let scores_buf = DeviceBuffer { addr: workspace.addr, len: layout.scores.len() };
        let scores: Vec<f32> = self.download(scores_buf)?;
        let blocks = match config {
            Some(config) => {
                let (blocks, c) = self.select_on_device(&dims, config, scores_buf, vb.as_ref(), opts)?;
                counters[3] = c;
                blocks
            }
            None => BlockSparse::new(dims.batch, dims.heads, dims.row_blocks(), 1, vec![0; dims.len()? / dims.key_blocks()], vec![-1; dims.len()? / dims.key_blocks()])?,
        };
        Ok(SimBlockEstimate { blocks, scores, counters })
    }
}

/// The planner's view of uploaded boundaries.
fn varlen_buffers(host: Option<&Varlen>, cu_q: DeviceBuffer, cu_k: DeviceBuffer) -> VarlenBuffers<'_> {
    let (total_q, total_k) = host.map_or((0, 0), |v| (v.total_q(), v.total_k()));
    VarlenBuffers { cu_seqlens_q: cu_q, cu_seqlens_k: cu_k, total_q, total_k, host }
}
