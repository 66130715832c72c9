//! A method's whole step as an ordered list of launches on one stream: the index builders'
//! kernels, then the sparse attention that reads what they wrote. Both backends run the
//! list in order, so the end-to-end entry points (`crate::cuda::minference_attention`,
//! `SimBackend::minference_attention`, ...) share one planner per method.

use super::buffers::DeviceBuffer;
use super::LaunchPlan;
use crate::source::Source;

/// One launch of a pipeline and what it does.
#[derive(Debug, Clone)]
pub struct PipelineStep {
    /// A short name for reports: "vs_estimate_scores", "vs_convert", "attention", ...
    pub name: &'static str,
    /// The launch.
    pub plan: LaunchPlan,
}

/// The launches of one end-to-end step, in stream order, and the sparse index they build.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    /// Every launch, in the order they must run.
    pub steps: Vec<PipelineStep>,
    /// The index tensors the builders write and the attention reads (inside the caller's
    /// workspace), so a caller can inspect them after the step.
    pub source: Source<DeviceBuffer>,
}
