//! The end-to-end methods on the PTX simulator: [`SimBackend::minference_attention`] and
//! [`SimBackend::seer_attention`] run the launches of [`crate::plan::minference::plan`]
//! (estimate, convert, attend) and [`crate::plan::seer::plan`] (score, select, attend) in
//! order, each reading only what the previous launches left in the simulated device's
//! memory, exactly as `crate::cuda::minference_attention` and `seer_attention` enqueue them
//! on a stream.

use ptx_sim::{Counters, LaunchOptions};

use crate::error::Result;
use crate::pattern::VsEstimateConfig;
use crate::plan::minference::{workspace_len, MinferenceBuffers};
use crate::plan::pipeline::PipelinePlan;
use crate::plan::seer::{SeerBuffers, SeerConfig};
use crate::plan::{AttnBuffers, DeviceBuffer};
use crate::shape::{AttnDtype, AttnOptions, AttnShape, Varlen};
use crate::sim::{HostTensors, SimBackend};
use crate::source::Source;

/// What a simulated end-to-end step produced.
#[derive(Debug, Clone)]
pub struct SimPipeline<T> {
    /// Like q: `[batch, seq_q, heads_q, head_dim]`, or packed `[total_q, heads_q, head_dim]`.
    pub out: Vec<T>,
    /// `[batch, heads_q, seq_q]`, or `[heads_q, total_q]` when packed; natural log.
    pub lse: Vec<f32>,
    /// The index the device built and the attention read, downloaded from the workspace.
    pub source: Source<Vec<i32>>,
    /// Each launch's name and work, in stream order (simulator counts, not GPU timings).
    pub steps: Vec<(&'static str, Counters)>,
}

impl<T> SimPipeline<T> {
    /// Warp-instructions of every launch before the attention: what building the index cost.
    pub fn index_warp_instructions(&self) -> u64 {
        self.steps.iter().filter(|(name, _)| *name != "attention").map(|(_, c)| c.warp_instructions).sum()
    }
}

/// Host gate weights for [`SimBackend::seer_attention`] (see `crate::cuda::GateWeights`).
#[derive(Debug, Clone, Copy)]
pub struct SimGate<'a, T> {
    /// `wq [heads_q, head_dim, hidden]`, or `None` for the single-linear gate.
    pub wq: Option<&'a [T]>,
    /// `wk [k_heads, 3 * head_dim, hidden]`.
    pub wk: &'a [T],
}

/// The workspace a simulated step starts with: every word `0xffff_ffff` (an f32 NaN, an i32
/// -1), as a reused engine buffer may hold anything, so a launch that reads scratch it did
/// not write shows up as a wrong result.
fn dirty_workspace(sim: &SimBackend, words: usize) -> Result<DeviceBuffer> {
    sim.upload(&vec![-1i32; words])
}

impl SimBackend {
    /// MInference's vertical-slash attention end to end on host tensors (contiguous BSHD,
    /// uploaded): the counterpart of [`crate::cuda::minference_attention`]. Always returns
    /// the LSE.
    pub fn minference_attention<T: AttnDtype + ptx_sim::Element>(
        &self,
        shape: &AttnShape,
        opts: &AttnOptions,
        config: &VsEstimateConfig,
        tensors: HostTensors<'_, T>,
    ) -> Result<SimPipeline<T>> {
        let attn = self.upload_attn(shape, None, tensors)?;
        let workspace = dirty_workspace(self, workspace_len(shape, config)?)?;
        let opts = AttnOptions { return_lse: true, ..*opts };
        let plan = crate::plan::minference::plan(shape, T::DTYPE, &opts, config, &MinferenceBuffers { attn, varlen: None, workspace })?;
        self.run_pipeline(&plan, &attn)
    }

    /// [`Self::minference_attention`] for a varlen batch packed by `varlen` (q `[total_q,
    /// heads_q, head_dim]`, k and v `[total_k, heads_kv, head_dim]`): the counterpart of
    /// [`crate::cuda::minference_attention_varlen`].
    pub fn minference_attention_varlen<T: AttnDtype + ptx_sim::Element>(
        &self,
        shape: &AttnShape,
        varlen: &Varlen,
        opts: &AttnOptions,
        config: &VsEstimateConfig,
        tensors: HostTensors<'_, T>,
    ) -> Result<SimPipeline<T>> {
        let attn = self.upload_attn(shape, Some(varlen), tensors)?;
        let lens = self.upload_varlen(varlen)?;
        let workspace = dirty_workspace(self, workspace_len(shape, config)?)?;
        let opts = AttnOptions { return_lse: true, ..*opts };
        let bufs = MinferenceBuffers { attn, varlen: Some(&lens), workspace };
        let plan = crate::plan::minference::plan(shape, T::DTYPE, &opts, config, &bufs)?;
        self.run_pipeline(&plan, &attn)
    }

    /// Block-sparse attention with its blocks chosen on the device by `config`, on host
    /// tensors (contiguous BSHD, or packed by `varlen`): the counterpart of
    /// [`crate::cuda::seer_attention`] and `seer_attention_varlen`. Always returns the LSE.
    pub fn seer_attention<T: AttnDtype + ptx_sim::Element>(
        &self,
        shape: &AttnShape,
        varlen: Option<&Varlen>,
        opts: &AttnOptions,
        config: &SeerConfig,
        tensors: HostTensors<'_, T>,
        gate: Option<SimGate<'_, T>>,
    ) -> Result<SimPipeline<T>> {
        let attn = self.upload_attn(shape, varlen, tensors)?;
        let lens = varlen.map(|v| self.upload_varlen(v)).transpose()?;
        let opts = AttnOptions { return_lse: true, ..*opts };
        let (mut wq, mut wk) = (None, None);
        if let Some(g) = gate {
            wq = g.wq.map(|w| self.upload(w)).transpose()?;
            wk = Some(self.upload(g.wk)?);
        }
        let workspace = dirty_workspace(self, crate::plan::seer::workspace_len(shape, T::DTYPE, &opts, config)?)?;
        let bufs = SeerBuffers { attn, varlen: lens.as_ref(), wq, wk, workspace };
        let plan = crate::plan::seer::plan(shape, T::DTYPE, &opts, config, &bufs)?;
        self.run_pipeline(&plan, &attn)
    }

    /// Runs every step of `plan` in order and downloads the output, the LSE and the index.
    fn run_pipeline<T: ptx_sim::Element>(&self, plan: &PipelinePlan, attn: &AttnBuffers) -> Result<SimPipeline<T>> {
        let mut steps = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            steps.push((step.name, self.launch(&step.plan, &LaunchOptions::default())?));
        }
        Ok(SimPipeline {
            out: self.download(attn.out)?,
            lse: attn.lse.map_or(Ok(Vec::new()), |l| self.download::<f32>(l))?,
            source: plan.source.as_ref().try_map(|_, b| self.download::<i32>(*b))?,
            steps,
        })
    }
}
