//! The three methods end to end through the public cudarc API, as an engine calls them:
//! Q, K, V in device buffers, the sparse index built on the device, the sparse attention on
//! the same stream, one workspace per method, nothing copied to the host until the result.
//!
//! - MInference: `cuda::minference_attention` (vertical-slash estimate -> conversion ->
//!   attention);
//! - SeerAttention: `cuda::seer_attention` with a checkpoint-shaped gate (random weights
//!   here) -> block selection -> block-sparse attention;
//! - DSA: `cuda::indexer_topk` (lightning-indexer scores and top-k) -> `cuda::attention`
//!   over the token index.
//!
//! Each result is compared with the host path (host estimator, CPU sparse reference), and
//! the example exits non-zero if an output is off by more than bf16's attention tolerance.
//!
//! ```sh
//! cargo run --release --example sparse_methods          # SPARSE_ATTN_DEVICE=auto
//! SPARSE_ATTN_DEVICE=sim cargo run --release --example sparse_methods
//! ```
//! `SPARSE_ATTN_DEVICE` picks the device: `cuda` (a real GPU or an error), `sim` (the
//! simulated CUDA driver, ptx-sim-driver) or `auto` (the default: a GPU when one is usable).
//! On the simulator the shape is small and the work counters are printed; they are
//! simulator counts, not GPU times.

use std::process::ExitCode;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use half::bf16;
use ptx_sim_driver::{DeviceChoice, Selected};
use sparse_attn::cuda::{AttnTensors, GateWeights, IndexerLayoutTensors, IndexerTensors};
use sparse_attn::pattern::block_select::{estimate_blocks, BlockBudget, BlockScoring, BlockSelectConfig, GateHost, ScoreKind};
use sparse_attn::pattern::indexer::{indexer_topk_host, HostLayout, IndexerDims};
use sparse_attn::pattern::{estimate_vertical_slash, TopkTokens, VsEstimateConfig};
use sparse_attn::plan::block_select::{GateDims, Scoring};
use sparse_attn::plan::seer::SeerConfig;
use sparse_attn::reference::{block_sparse_attention, topk_attention, vertical_slash_attention, RefInputs};
use sparse_attn::source::{TopkDims, TopkIndex};
use sparse_attn::{AttnOptions, AttnShape, Source};

/// bf16 attention output tolerance (tests/attention_cases explains the bound).
const TOLERANCE: f64 = 1e-2;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Deterministic unit-variance-ish values (a hash, not a model's activations).
fn tensor(n: usize, seed: u64, gain: f32) -> Vec<bf16> {
    (0..n as u64)
        .map(|i| {
            let x = (i ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let u = ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            bf16::from_f32(gain * 1.7 * u)
        })
        .collect()
}

/// The largest |device - reference| over the output.
fn max_error(got: &[bf16], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(g, w)| (g.to_f64() - w).abs()).fold(0.0, f64::max)
}

struct Run {
    stream: Arc<CudaStream>,
    on_sim: bool,
}

impl Run {
    fn upload(&self, x: &[bf16]) -> Res<CudaSlice<bf16>> {
        Ok(self.stream.clone_htod(x)?)
    }

    /// Prints one method's error (and, on the simulator, the work since the last report).
    fn report(&self, name: &str, error: f64) -> bool {
        let work = if self.on_sim {
            ptx_sim_driver::counters(true).map_or(String::new(), |c| format!("; simulator work: {} warp-instructions", c.warp_instructions))
        } else {
            String::new()
        };
        let ok = error <= TOLERANCE;
        println!("{name:<14} max |error| vs host path {error:.2e} ({}){work}", if ok { "ok" } else { "FAILED" });
        ok
    }
}

fn minference(run: &Run, shape: &AttnShape, q: &[bf16], k: &[bf16], v: &[bf16]) -> Res<f64> {
    let opts = AttnOptions::causal();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 64, slash_size: 32, forced_first_columns: 4, forced_last_diagonals: 8, per_kv_group: true };
    let (dq, dk, dv) = (run.upload(q)?, run.upload(k)?, run.upload(v)?);
    let mut out = run.stream.alloc_zeros::<bf16>(shape.q_len())?;
    let mut workspace = run.stream.alloc_zeros::<f32>(sparse_attn::plan::minference::workspace_len(shape, &config)?)?;
    let tensors = AttnTensors::contiguous(shape, &dq, &dk, &dv, &mut out, None);
    sparse_attn::cuda::minference_attention(&run.stream, shape, &opts, &config, tensors, &mut workspace)?;
    let got = run.stream.clone_dtoh(&out)?;
    let inputs = RefInputs::new(*shape, q, k, v)?;
    let vs = estimate_vertical_slash(&inputs, &config, 1.0 / (shape.head_dim() as f64).sqrt())?;
    Ok(max_error(&got, &vertical_slash_attention(&inputs, &opts, &vs)?.out))
}

fn seer(run: &Run, shape: &AttnShape, q: &[bf16], k: &[bf16], v: &[bf16]) -> Res<f64> {
    let opts = AttnOptions::causal();
    let (d, hidden) = (shape.head_dim(), 32);
    let (wq, wk) = (tensor(shape.heads_q() * d * hidden, 7, 0.2), tensor(shape.heads_kv() * 3 * d * hidden, 8, 0.2));
    let select = BlockSelectConfig { budget: BlockBudget::TopK(3), kind: ScoreKind::Logits, causal: true, force_sink: true, force_diagonal: true };
    let gate = GateDims { has_wq: true, k_heads: shape.heads_kv(), hidden, rope_theta: Some(10000.0) };
    let config = SeerConfig { scoring: Scoring::Gate(gate), per_kv_group: true, select };
    let (dq, dk, dv, dwq, dwk) = (run.upload(q)?, run.upload(k)?, run.upload(v)?, run.upload(&wq)?, run.upload(&wk)?);
    let mut out = run.stream.alloc_zeros::<bf16>(shape.q_len())?;
    let dtype = sparse_attn::DType::BF16;
    let mut workspace = run.stream.alloc_zeros::<f32>(sparse_attn::plan::seer::workspace_len(shape, dtype, &opts, &config)?)?;
    let tensors = AttnTensors::contiguous(shape, &dq, &dk, &dv, &mut out, None);
    let weights = GateWeights { wq: Some(&dwq), wk: &dwk };
    sparse_attn::cuda::seer_attention(&run.stream, shape, &opts, &config, tensors, Some(weights), &mut workspace)?;
    let got = run.stream.clone_dtoh(&out)?;
    let inputs = RefInputs::new(*shape, q, k, v)?;
    let wide = |w: &[bf16]| w.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let host_gate = GateHost { wq: Some(wide(&wq)), wk: wide(&wk), k_heads: shape.heads_kv(), hidden, rope_theta: Some(10000.0) };
    let blocks = estimate_blocks(&inputs, BlockScoring::Gate(&host_gate), true, &select, 1.0 / (hidden as f64).sqrt())?;
    Ok(max_error(&got, &block_sparse_attention(&inputs, &opts, &blocks)?.out))
}

fn dsa(run: &Run, shape: &AttnShape, q: &[bf16], k: &[bf16], v: &[bf16]) -> Res<f64> {
    let opts = AttnOptions::causal();
    let top_k = 64;
    // One index set per kv head: 4 indexer heads of 64 dims per group.
    let dims = IndexerDims { batch: shape.batch(), seq_q: shape.seq_q(), seq_k: shape.seq_k(), groups: shape.heads_kv(), heads: 4, head_dim: 64 };
    let rows = shape.batch() * shape.seq_q();
    let (iq, ik) = (tensor(rows * dims.groups * dims.heads * 64, 11, 1.0), tensor(shape.batch() * shape.seq_k() * dims.groups * 64, 12, 1.0));
    let w: Vec<f32> = (0..rows * dims.groups * dims.heads).map(|i| 0.5 + (i % 7) as f32 / 7.0).collect();
    let (diq, dik, dw) = (run.upload(&iq)?, run.upload(&ik)?, run.stream.clone_htod(&w)?);
    let mut workspace = run.stream.alloc_zeros::<f32>(sparse_attn::plan::indexer::workspace_len(&dims, 64)?)?;
    let mut indices = run.stream.alloc_zeros::<i32>(rows * dims.groups * top_k)?;
    let tensors = IndexerTensors { q: &diq, k: &dik, w: &dw, workspace: &mut workspace, indices: &mut indices };
    sparse_attn::cuda::indexer_topk::<bf16, f32, CudaSlice<i32>, _, _, _, _>(&run.stream, &dims, IndexerLayoutTensors::Contiguous, top_k, true, tensors)?;
    let (dq, dk, dv) = (run.upload(q)?, run.upload(k)?, run.upload(v)?);
    let mut out = run.stream.alloc_zeros::<bf16>(shape.q_len())?;
    let source = Source::TopK(TopkIndex { dims: TopkDims::new(shape.batch(), shape.seq_q(), shape.heads_kv(), top_k)?, indices });
    sparse_attn::cuda::attention(&run.stream, shape, &opts, AttnTensors::contiguous(shape, &dq, &dk, &dv, &mut out, None), &source)?;
    let got = run.stream.clone_dtoh(&out)?;
    let host = indexer_topk_host(&iq, &ik, &w, &dims, HostLayout::Contiguous, top_k, true)?;
    let tokens = TopkTokens::new(shape.batch(), shape.seq_q(), shape.heads_kv(), top_k, host)?;
    let inputs = RefInputs::new(*shape, q, k, v)?;
    Ok(max_error(&got, &topk_attention(&inputs, &opts, &tokens)?.out))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<bool> {
    let choice: DeviceChoice = std::env::var("SPARSE_ATTN_DEVICE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "auto".into()).parse()?;
    let selected = ptx_sim_driver::select(choice)?;
    let on_sim = selected == Selected::Sim;
    let ctx = CudaContext::new(0)?;
    println!("device: {selected}: {}", ctx.name()?);
    // A small problem on the simulator; a larger one on a GPU (the f64 CPU reference bounds it).
    let shape = if on_sim { AttnShape::new(1, 300, 300, 8, 2, 64)? } else { AttnShape::new(1, 2048, 2048, 8, 2, 128)? };
    println!("shape: batch {}, seq {}, heads {}/{}, head_dim {}, bf16, causal", shape.batch(), shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim());
    let (q, k, v) = (tensor(shape.q_len(), 1, 1.0), tensor(shape.kv_len(), 2, 1.0), tensor(shape.kv_len(), 3, 1.0));
    let run = Run { stream: ctx.default_stream(), on_sim };
    if on_sim {
        ptx_sim_driver::counters(true);
    }
    let mut ok = true;
    ok &= run.report("MInference", minference(&run, &shape, &q, &k, &v)?);
    ok &= run.report("SeerAttention", seer(&run, &shape, &q, &k, &v)?);
    ok &= run.report("DSA", dsa(&run, &shape, &q, &k, &v)?);
    Ok(ok)
}
