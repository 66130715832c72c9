//! Vertical-slash estimation on the PTX simulator: [`SimBackend::vs_estimate`] uploads host
//! Q and K, runs the four launches of [`crate::plan::vs_estimate::plan`] with a workspace of
//! [`workspace_len`] and downloads the index tensors.

use ptx_sim::{Counters, LaunchOptions};

use crate::error::Result;
use crate::pattern::VsEstimateConfig;
use crate::plan::vs_estimate::{workspace_len, VsEstimateBuffers, VsEstimateDims};
use crate::shape::{AttnDtype, AttnShape, Bshd, Varlen};
use crate::sim::SimBackend;

/// What a simulated estimation produced.
#[derive(Debug, Clone)]
pub struct SimVsEstimate {
    /// Verticals per head.
    pub nnz_v: usize,
    /// Slashes per head.
    pub nnz_s: usize,
    /// `[batch, heads_q, nnz_v]` key positions, ascending.
    pub vertical_indexes: Vec<i32>,
    /// `[batch, heads_q, nnz_s]` distances, descending.
    pub slash_indexes: Vec<i32>,
    /// The work of each launch, in order: scores, row statistics, sums, selection
    /// (simulator counts, not GPU timings).
    pub counters: [Counters; 4],
}

impl SimVsEstimate {
    /// Warp-instructions of the four launches together.
    pub fn warp_instructions(&self) -> u64 {
        self.counters.iter().map(|c| c.warp_instructions).sum()
    }
}

impl SimBackend {
    /// Estimates on the simulator, the counterpart of [`crate::cuda::vs_estimate`] for a
    /// padded batch: q `[batch, seq_q, heads_q, head_dim]` and k `[batch, seq_k, heads_kv,
    /// head_dim]`, contiguous. Equal to
    /// [`crate::pattern::vs_estimate::estimate_vertical_slash_indices`] on inputs without
    /// near-ties.
    pub fn vs_estimate<T: AttnDtype + ptx_sim::Element>(&self, shape: &AttnShape, config: &VsEstimateConfig, softmax_scale: f32, q: &[T], k: &[T]) -> Result<SimVsEstimate> {
        self.vs_estimate_with(shape, None, config, softmax_scale, q, k, &LaunchOptions::default())
    }

    /// [`Self::vs_estimate`] for a varlen batch: q `[total_q, heads_q, head_dim]` and k
    /// `[total_k, heads_kv, head_dim]` packed by `varlen` (uploaded as the device's
    /// cu_seqlens, and checked as the host copy); `shape` holds the batch and the longest
    /// sequences. Equal to [`crate::pattern::estimate_varlen::estimate_vertical_slash_varlen`]
    /// on inputs without near-ties.
    pub fn vs_estimate_varlen<T: AttnDtype + ptx_sim::Element>(
        &self,
        shape: &AttnShape,
        varlen: &Varlen,
        config: &VsEstimateConfig,
        softmax_scale: f32,
        q: &[T],
        k: &[T],
    ) -> Result<SimVsEstimate> {
        self.vs_estimate_with(shape, Some(varlen), config, softmax_scale, q, k, &LaunchOptions::default())
    }

    /// The estimation with the simulator's launch options (racecheck, host threads), padded
    /// (`varlen` `None`) or varlen.
    #[allow(clippy::too_many_arguments)]
    pub fn vs_estimate_with<T: AttnDtype + ptx_sim::Element>(
        &self,
        shape: &AttnShape,
        varlen: Option<&Varlen>,
        config: &VsEstimateConfig,
        softmax_scale: f32,
        q: &[T],
        k: &[T],
        opts: &LaunchOptions,
    ) -> Result<SimVsEstimate> {
        let dims = VsEstimateDims::new(shape, config)?;
        let d = shape.head_dim();
        let lens = varlen.map(|v| self.upload_varlen(v)).transpose()?;
        let (q_layout, k_layout) = match varlen {
            Some(v) => (Bshd::contiguous(v.total_q(), shape.heads_q(), d), Bshd::contiguous(v.total_k(), shape.heads_kv(), d)),
            None => (shape.q_layout(), shape.kv_layout()),
        };
        let heads = crate::checked::product("vertical_indexes", &[shape.batch(), shape.heads_q()])?;
        let bufs = VsEstimateBuffers {
            q: self.upload(q)?,
            k: self.upload(k)?,
            q_layout,
            k_layout,
            varlen: lens.as_ref(),
            workspace: self.alloc::<f32>(workspace_len(shape, config)?)?,
            vertical_indexes: self.alloc::<i32>(crate::checked::product("vertical_indexes", &[heads, dims.nnz_v])?)?,
            slash_indexes: self.alloc::<i32>(crate::checked::product("slash_indexes", &[heads, dims.nnz_s])?)?,
        };
        let plan = crate::plan::vs_estimate::plan(shape, T::DTYPE, config, softmax_scale, &bufs)?;
        let mut counters: [Counters; 4] = Default::default();
        for (c, launch) in counters.iter_mut().zip(plan.launches()) {
            *c = self.launch(launch, opts)?;
        }
        Ok(SimVsEstimate {
            nnz_v: dims.nnz_v,
            nnz_s: dims.nnz_s,
            vertical_indexes: self.download(bufs.vertical_indexes)?,
            slash_indexes: self.download(bufs.slash_indexes)?,
            counters,
        })
    }
}
