//! The timing model's hook: where a model of the kernels' GPU time plugs into the attention
//! bench. There is no model yet.
//!
//! `benches/attention.rs` calls [`predict`] once for every case it builds (each sequence
//! length x pattern, and the vertical-slash conversion kernel) and writes the answer to the
//! `model_s` column of its TSV (`SPARSE_ATTN_BENCH_TSV`), which `scripts/gpu-bench.sh`
//! prints as the "model" column of its summary, next to the measured time:
//! [`NOT_BUILT`] while `predict` returns `None`, the predicted time otherwise. A model
//! replaces the body of `predict` (and may add fields to [`ModelInput`]); nothing else in
//! the bench or the script needs to change.

use sparse_attn::{AttnShape, SparsePattern};

/// What the model column says while [`predict`] has no answer.
pub const NOT_BUILT: &str = "n/a (model not built yet)";

/// The GPU the bench runs on (absent on host-only runs).
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub sm_count: usize,
    pub memory_bytes: usize,
}

/// Everything the bench knows about one timed case before it runs it.
pub struct ModelInput<'a> {
    /// The bench's case name (`dense`, `block_sparse_10pct`, ..., `vertical_slash_convert_...`).
    pub case: &'a str,
    pub shape: &'a AttnShape,
    /// The descriptor the launch runs (the vertical-slash descriptor for the conversion
    /// kernel); `source(shape)` gives the exact index tensors the kernel reads.
    pub pattern: &'a dyn SparsePattern,
    /// Kept (query head, query, key) elements, causal mask applied (0 for the conversion).
    pub kept_elements: u64,
    /// FLOPs of the kept elements (4 x head_dim each; 0 for the conversion).
    pub flops: u64,
    /// The GPU, or `None` on a host-only run.
    pub device: Option<&'a Device>,
}

/// Predicted time of one launch, in seconds; `None` while there is no model.
pub fn predict(input: &ModelInput<'_>) -> Option<f64> {
    let _ = input;
    None
}

/// The TSV's `model_s` cell: seconds in `%e` form, or [`NOT_BUILT`].
pub fn model_cell(input: &ModelInput<'_>) -> String {
    match predict(input) {
        Some(seconds) => format!("{seconds:.6e}"),
        None => NOT_BUILT.to_string(),
    }
}
