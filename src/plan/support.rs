//! What an engine asks before routing a layer here: whether the kernels exist for its
//! dtype, head_dim, score options and GPU, and if not, why (mistral.rs asks its flash
//! backend the same question and falls back to eager attention on "no").

use super::prefill;
use super::MIN_COMPUTE_CAPABILITY;
use crate::params::{DTYPES, HEAD_DIMS};
use crate::shape::{AttnOptions, DType};

/// One layer's attention, as [`support`] judges it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupportQuery {
    /// Element type of q, k, v and the output.
    pub dtype: DType,
    /// Head dimension.
    pub head_dim: usize,
    /// Logit softcap ([`AttnOptions::softcap`]).
    pub softcap: Option<f32>,
    /// Sliding window ([`AttnOptions::window_left`]).
    pub window_left: Option<usize>,
    /// Whether the layer has per-head attention sinks.
    pub sinks: bool,
    /// The GPU's compute capability, major * 10 + minor (90 for an H100).
    pub compute_capability: u32,
}

impl SupportQuery {
    /// A query with every score option off.
    pub fn new(dtype: DType, head_dim: usize, compute_capability: u32) -> Self {
        Self { dtype, head_dim, softcap: None, window_left: None, sinks: false, compute_capability }
    }

    /// The same query with the options of `opts` (softcap, window) and `sinks`.
    pub fn with_options(self, opts: &AttnOptions, sinks: bool) -> Self {
        Self { softcap: opts.softcap, window_left: opts.window_left, sinks, ..self }
    }
}

/// Why [`support`] said no, in words an engine can log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sparse-attn cannot run this layer: {reason}")]
pub struct Unsupported {
    /// What is missing.
    pub reason: String,
}

/// `Ok` when every attention kernel (prefill patterns, top-k, decode) runs this layer on
/// this GPU in this build; otherwise the reason. Softcap, window and sinks are supported at
/// every dtype, head_dim and target (their `_opt` kernel variants are built with the
/// plain ones); only values the launch would refuse are a "no".
pub fn support(q: &SupportQuery) -> Result<(), Unsupported> {
    let no = |reason: String| Err(Unsupported { reason });
    if !DTYPES.contains(&q.dtype) {
        return no(format!("dtype {} has no kernels (built: {:?})", q.dtype.name(), DTYPES.iter().map(|d| d.name()).collect::<Vec<_>>()));
    }
    if !HEAD_DIMS.contains(&q.head_dim) {
        return no(format!("head_dim {} has no kernels (built: {HEAD_DIMS:?})", q.head_dim));
    }
    if q.compute_capability < MIN_COMPUTE_CAPABILITY {
        let cc = q.compute_capability;
        return no(format!("compute capability {}.{} is below 8.0, which the kernels' bf16 mma.sync and cp.async need", cc / 10, cc % 10));
    }
    let opts = AttnOptions { softcap: q.softcap, window_left: q.window_left, ..AttnOptions::default() };
    if let Err(e) = opts.checked_softcap().and_then(|_| opts.checked_window_left()) {
        return no(e.to_string());
    }
    if let Err(e) = crate::ptx::module_for(prefill::MODULE, q.compute_capability) {
        return no(e.to_string());
    }
    Ok(())
}
