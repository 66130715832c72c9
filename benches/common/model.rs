//! The timing MODEL's column of the attention bench (not a measurement).
//!
//! `benches/attention.rs` calls [`model_cell`] once for every case it builds and writes the
//! answer to the `model_s` column of its TSV (`SPARSE_ATTN_BENCH_TSV`), which
//! `scripts/gpu-bench.sh` prints as the "model" column of its summary, next to the measured
//! time.
//!
//! The model is `examples/perf_report/model.rs`, fed by one perf_report run: the script runs
//! it with `SPARSE_ATTN_PERF_MODEL_OUT`, and the bench reads that file from
//! `SPARSE_ATTN_MODEL_TSV` (a [`core::Calibration`]: the calibration factor, fitted on
//! FlashAttention-2's published H100 figure, and this crate's dense kernel's counts per CTA
//! and per key tile, fitted from two simulated runs). A case's predicted time is that
//! kernel's counts at the case's geometry, with the key tiles scaled by the share of the
//! dense causal elements the case keeps, through the GPU's four peak rates. So a sparse
//! case is modelled as the dense loop over its kept share: right for block-sparse and
//! A-shape (the same loop), an approximation for vertical-slash (its one-row-block loop).
//! Top-k and the index conversion run other kernels and have no model. The GPU's constants
//! are A100's for compute capability 8.0 and H100's for 9.0; other GPUs get no prediction.
//! The calibration is on H100, so A100 figures are uncalibrated.

use std::sync::OnceLock;

use sparse_attn::params::{PREFILL_ROW_BLOCKS, PREFILL_TILE_M};
use sparse_attn::plan::prefill::key_tile;
use sparse_attn::{AttnShape, Source, SparsePattern};

#[allow(dead_code, unused_imports)] // perf_report's model; the bench uses its fitting and timing parts (and not its tests)
#[path = "../../examples/perf_report/model.rs"]
pub mod core;

/// What the model column says when there is no prediction, and why.
pub const NO_DEVICE: &str = "n/a (no GPU)";
pub const NO_CALIBRATION: &str = "n/a (no SPARSE_ATTN_MODEL_TSV)";
pub const NO_MODEL: &str = "n/a (no model for this kernel or GPU)";

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
    /// Whether the launch is causal.
    pub causal: bool,
    /// Kept (query head, query, key) elements, causal mask applied (0 for the conversion).
    pub kept_elements: u64,
    /// Every (query head, query, key) element the mask allows: the dense count.
    pub dense_elements: u64,
    /// FLOPs of the kept elements (4 x head_dim each; 0 for the conversion).
    pub flops: u64,
    /// The GPU, or `None` on a host-only run.
    pub device: Option<&'a Device>,
}

/// A nominal GPU for host-only runs, named by `SPARSE_ATTN_BENCH_MODEL_GPU` (`A100` or
/// `H100`), so that the model column can be checked without a GPU.
pub fn nominal_device() -> Option<Device> {
    let (name, cc, sms) = match std::env::var("SPARSE_ATTN_BENCH_MODEL_GPU").ok()?.to_ascii_uppercase().as_str() {
        "A100" => ("A100 (nominal, host-only)", (8, 0), 108),
        "H100" => ("H100 (nominal, host-only)", (9, 0), 132),
        _ => return None,
    };
    Some(Device { name: name.to_string(), compute_capability: cc, sm_count: sms, memory_bytes: 80 << 30 })
}

/// The calibration file named by `SPARSE_ATTN_MODEL_TSV`, read once.
fn calibration() -> Option<&'static core::Calibration> {
    static CAL: OnceLock<Option<core::Calibration>> = OnceLock::new();
    CAL.get_or_init(|| {
        let path = std::env::var_os("SPARSE_ATTN_MODEL_TSV")?;
        let text = std::fs::read_to_string(&path).map_err(|e| eprintln!("model: {}: {e}", path.to_string_lossy())).ok()?;
        core::Calibration::from_tsv(&text).map_err(|e| eprintln!("model: {}: {e}", path.to_string_lossy())).ok()
    })
    .as_ref()
}

/// Predicted seconds of one launch under `cal`; `None` for a kernel or GPU the model does
/// not cover.
pub fn predict_with(input: &ModelInput<'_>, cal: &core::Calibration) -> Option<f64> {
    let device = input.device?;
    let (gpu, arch) = match device.compute_capability {
        (8, 0) => (&core::A100, 0),
        (9, 0) => (&core::H100, 1),
        _ => return None,
    };
    // The prefill loop's cases: dense, block-sparse, A-shape, vertical-slash.
    let prefill = ["dense", "block_sparse", "a_shape", "vertical_slash_v"].iter().any(|p| input.case.starts_with(p));
    if !prefill || input.dense_elements == 0 {
        return None;
    }
    let s = input.shape;
    let d = s.head_dim();
    let fit = cal.fits.iter().find(|f| f.head_dim == d && f.causal == input.causal)?;
    let n = key_tile(&Source::<&[i32]>::Dense, d);
    let full = core::geometry(s.batch(), s.heads_q(), s.seq_q(), PREFILL_ROW_BLOCKS * PREFILL_TILE_M, n, input.causal);
    let share = input.kept_elements as f64 / input.dense_elements as f64;
    let g = core::Geometry { ctas: full.ctas, tiles: full.tiles * share };
    // Compulsory HBM traffic: q and out per query head (and the LSE row, which the bench does
    // not ask for), k and v per kv head, once.
    let elem = 2.0 * d as f64;
    let hbm = (s.batch() * s.seq_q() * s.heads_q()) as f64 * 2.0 * elem + (s.batch() * s.seq_k() * s.heads_kv()) as f64 * 2.0 * elem;
    let (seconds, _bound) = core::seconds(gpu, fit.ours.predict(g), hbm, g.ctas, fit.blocks[arch]);
    Some(cal.k * seconds)
}

/// The TSV's `model_s` cell: seconds in `%e` form, or why there is none.
pub fn model_cell(input: &ModelInput<'_>) -> String {
    if input.device.is_none() {
        return NO_DEVICE.to_string();
    }
    let Some(cal) = calibration() else { return NO_CALIBRATION.to_string() };
    match predict_with(input, cal) {
        Some(seconds) => format!("{seconds:.6e}"),
        None => NO_MODEL.to_string(),
    }
}
