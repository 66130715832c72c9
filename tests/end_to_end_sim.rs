//! The end-to-end entry points on the PTX simulator (memcheck always on): one call goes
//! from Q, K, V to sparse attention, building its index on the device, with every scratch
//! tensor in one workspace that starts full of garbage (`SimBackend::minference_attention`
//! and `seer_attention` run exactly the launches `sparse_attn::cuda::minference_attention`
//! and `seer_attention` enqueue).
//!
//! Each run is held to the host path: host estimator -> host conversion -> CPU sparse
//! reference. The device's index must equal the host's exactly; inputs whose estimate has a
//! near-tie at its boundary may legitimately differ in one pick (the estimators' own tests
//! bound that case), so a case retries new inputs, a few times at most.
//!
//! Skips with the reason when the crate was built without a CUDA compiler.

mod attention_cases;
mod common;

use attention_cases::compare_varlen;
use common::Rng;
use sparse_attn::pattern::block_select::{
    block_scores_host_varlen, estimate_blocks, select_blocks_host, varlen_seqlens, BlockBudget, BlockScoring, BlockSelectConfig, GateHost, ScoreDims, ScoreKind,
};
use sparse_attn::pattern::vs_convert::{convert, convert_varlen};
use sparse_attn::pattern::BlockSparse;
use sparse_attn::plan::block_select::{GateDims, Scoring};
use sparse_attn::plan::seer::SeerConfig;
use sparse_attn::pattern::{estimate_vertical_slash, estimate_vertical_slash_varlen, VsEstimateConfig};
use sparse_attn::plan::minference::{plan, workspace_len, MinferenceBuffers};
use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::reference::{block_sparse_attention, varlen_block_sparse_attention, vertical_slash_attention, RefInputs, VarlenInputs, VarlenOutput};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_pipeline::{SimGate, SimPipeline};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, Error, Source, Varlen};

/// Inputs that retry before a case gives up on finding one without near-ties.
const ATTEMPTS: usize = 6;

fn backend() -> Option<SimBackend> {
    attention_cases::sim_backend_or_skip()
}

fn tensor<T: AttnDtype>(rng: &mut Rng, n: usize, gain: f64) -> Vec<T> {
    (0..n).map(|_| T::from_f32((gain * rng.normal()) as f32)).collect()
}

fn widen<T: AttnDtype>(x: &[T]) -> Vec<f32> {
    x.iter().map(|v| v.to_f64() as f32).collect()
}

/// MInference on a padded batch: equal to the host estimate -> conversion -> CPU reference.
fn minference_padded<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, seed: u64, shape: AttnShape, config: VsEstimateConfig) {
    let opts = AttnOptions::causal();
    let scale = 1.0 / (shape.head_dim() as f64).sqrt();
    let mut rng = Rng::new(seed);
    for attempt in 0..ATTEMPTS {
        let (q, k, v) = (tensor::<T>(&mut rng, shape.q_len(), 1.5), tensor::<T>(&mut rng, shape.kv_len(), 1.5), tensor::<T>(&mut rng, shape.kv_len(), 1.0));
        let got = sim.minference_attention(&shape, &opts, &config, HostTensors { q: &q, k: &k, v: &v, sinks: None }).unwrap();
        let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
        let host_vs = estimate_vertical_slash(&inputs, &config, scale).unwrap();
        let host_index = convert(&host_vs, &shape).unwrap();
        if got.source != Source::VerticalSlash(host_index) {
            println!("{shape:?} attempt {attempt}: the device picked differently (a near-tie); new inputs");
            continue;
        }
        let want = vertical_slash_attention(&inputs, &opts, &host_vs).unwrap();
        let at = format!("minference {:?} {shape:?} {config:?}", T::DTYPE);
        compare_varlen(&at, T::DTYPE, &VarlenOutput { out: want.out, lse: want.lse }, &widen(&got.out), &got.lse);
        assert!(got.index_warp_instructions() > 0 && got.steps.len() == 6, "{at}: six launches, the last the attention");
        return;
    }
    panic!("{shape:?}: no inputs without a near-tie in {ATTEMPTS} attempts");
}

#[test]
fn minference_equals_host_estimate_and_cpu_reference() {
    let Some(sim) = backend() else { return };
    let config = |per_kv_group| VsEstimateConfig { last_q: 64, vertical_size: 30, slash_size: 20, forced_first_columns: 4, forced_last_diagonals: 6, per_kv_group };
    // GQA 4:1 per query head and per kv group, 1:1, seq_q != seq_k, seq not a multiple of 64.
    minference_padded::<half::bf16>(&sim, 1, AttnShape::new(2, 150, 190, 8, 2, 64).unwrap(), config(false));
    minference_padded::<half::bf16>(&sim, 2, AttnShape::new(1, 130, 130, 4, 1, 128).unwrap(), config(true));
    minference_padded::<half::f16>(&sim, 3, AttnShape::new(2, 100, 140, 2, 2, 64).unwrap(), config(false));
}

#[test]
fn minference_varlen_estimates_each_sequence_on_its_own_lengths() {
    let Some(sim) = backend() else { return };
    let config = VsEstimateConfig { last_q: 32, vertical_size: 24, slash_size: 16, forced_first_columns: 2, forced_last_diagonals: 4, per_kv_group: false };
    let opts = AttnOptions::causal();
    let varlen = Varlen::new(vec![0, 90, 90, 220], vec![0, 120, 125, 260]).unwrap();
    let shape = AttnShape::new(3, 130, 135, 4, 2, 64).unwrap();
    let mut rng = Rng::new(4);
    for attempt in 0..ATTEMPTS {
        let q = tensor::<half::bf16>(&mut rng, varlen.total_q() * 4 * 64, 1.5);
        let k = tensor::<half::bf16>(&mut rng, varlen.total_k() * 2 * 64, 1.5);
        let v = tensor::<half::bf16>(&mut rng, varlen.total_k() * 2 * 64, 1.0);
        let got = sim.minference_attention_varlen(&shape, &varlen, &opts, &config, HostTensors { q: &q, k: &k, v: &v, sinks: None }).unwrap();
        let inputs = VarlenInputs::new(shape, varlen.clone(), &q, &k, &v).unwrap();
        let host_vs = estimate_vertical_slash_varlen(&inputs, &config, 0.125).unwrap();
        let host_index = convert_varlen(&host_vs, &shape, &varlen).unwrap();
        if got.source != Source::VerticalSlash(host_index.clone()) {
            println!("attempt {attempt}: a near-tie; new inputs");
            continue;
        }
        let want = sparse_attn::reference::varlen_vertical_slash_attention(&inputs, &opts, &host_index).unwrap();
        compare_varlen("minference varlen", DType::BF16, &want, &widen(&got.out), &got.lse);
        return;
    }
    panic!("no inputs without a near-tie in {ATTEMPTS} attempts");
}

#[test]
fn minference_refuses_bad_arguments_by_name() {
    let shape = AttnShape::new(1, 100, 100, 2, 1, 64).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 10, slash_size: 10, forced_first_columns: 1, forced_last_diagonals: 1, per_kv_group: false };
    let buf = |addr: u64, len: usize| DeviceBuffer { addr, len };
    let attn = AttnBuffers {
        q: buf(1 << 20, shape.q_len()),
        k: buf(2 << 20, shape.kv_len()),
        v: buf(3 << 20, shape.kv_len()),
        out: buf(4 << 20, shape.q_len()),
        lse: None,
        sinks: None,
        layouts: AttnLayouts::contiguous(&shape),
    };
    let words = workspace_len(&shape, &config).unwrap();
    let run = |opts: AttnOptions, config: &VsEstimateConfig, workspace: DeviceBuffer| plan(&shape, DType::BF16, &opts, config, &MinferenceBuffers { attn, varlen: None, workspace });
    let ws = buf(8 << 20, words);
    assert!(run(AttnOptions::causal(), &config, ws).is_ok());
    assert!(matches!(run(AttnOptions::default(), &config, ws), Err(Error::InvalidParameter { name: "causal", .. })));
    assert!(matches!(run(AttnOptions::causal(), &config, buf(8 << 20, words - 1)), Err(Error::BufferTooSmall { tensor: "workspace", .. })));
    assert!(matches!(run(AttnOptions::causal(), &config, buf((8 << 20) + 4, words)), Err(Error::InvalidParameter { name: "workspace", .. })));
    for (name, bad) in [("last_q", VsEstimateConfig { last_q: 0, ..config }), ("vertical_size", VsEstimateConfig { vertical_size: 0, ..config }), ("slash_size", VsEstimateConfig { slash_size: 0, ..config })] {
        assert!(matches!(run(AttnOptions::causal(), &bad, ws), Err(Error::InvalidParameter { name: n, .. }) if n == name), "{name}");
        assert!(matches!(workspace_len(&shape, &bad), Err(Error::InvalidParameter { name: n, .. }) if n == name), "{name}");
    }
}

/// The kept blocks of every row of the device's index (count, then the ids it counts),
/// against a host descriptor's.
fn same_blocks<T>(got: &SimPipeline<T>, want: &BlockSparse) -> bool {
    let Source::BlockSparse(index) = &got.source else { panic!("a block-sparse step built another index") };
    let (dev_max, host_max) = (index.dims.max_blocks(), want.max_blocks());
    let rows = want.block_count().len();
    index.block_count.len() == rows
        && (0..rows).all(|r| {
            let n = want.block_count()[r];
            index.block_count[r] == n && index.block_index[r * dev_max..][..n as usize] == want.block_index()[r * host_max..][..n as usize]
        })
}

/// One padded seer_attention case: the device's blocks equal the host's (else new inputs,
/// for a near-tie) and the output the CPU block-sparse reference over them.
fn seer_padded(sim: &SimBackend, seed: u64, shape: AttnShape, config: SeerConfig, gate: Option<(GateHost, Vec<half::bf16>, Vec<half::bf16>)>) {
    let opts = AttnOptions { causal: config.select.causal, ..AttnOptions::default() };
    let mut rng = Rng::new(seed);
    for attempt in 0..ATTEMPTS {
        let (q, k, v) = (tensor::<half::bf16>(&mut rng, shape.q_len(), 1.5), tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.5), tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.0));
        let sim_gate = gate.as_ref().map(|(host, wq, wk)| SimGate { wq: host.wq.as_ref().map(|_| &wq[..]), wk });
        let got = sim.seer_attention(&shape, None, &opts, &config, HostTensors { q: &q, k: &k, v: &v, sinks: None }, sim_gate).unwrap();
        let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
        let (scoring, scale) = match (&config.scoring, &gate) {
            (Scoring::Gate(g), Some((host, _, _))) => (BlockScoring::Gate(host), 1.0 / (g.hidden as f64).sqrt()),
            (Scoring::Xattn { stride }, _) => (BlockScoring::Xattn { stride: *stride }, 1.0 / (shape.head_dim() as f64).sqrt()),
            _ => (BlockScoring::Pooled, 1.0 / (shape.head_dim() as f64).sqrt()),
        };
        let host = estimate_blocks(&inputs, scoring, config.per_kv_group, &config.select, scale).unwrap();
        if !same_blocks(&got, &host) {
            println!("{shape:?} attempt {attempt}: the device picked differently (a near-tie); new inputs");
            continue;
        }
        let want = block_sparse_attention(&inputs, &opts, &host).unwrap();
        let at = format!("seer {shape:?} {config:?}");
        compare_varlen(&at, DType::BF16, &VarlenOutput { out: want.out, lse: want.lse }, &widen(&got.out), &got.lse);
        return;
    }
    panic!("{shape:?}: no inputs without a near-tie in {ATTEMPTS} attempts");
}

fn select(budget: BlockBudget, kind: ScoreKind, causal: bool) -> BlockSelectConfig {
    BlockSelectConfig { budget, kind, causal, force_sink: true, force_diagonal: true }
}

#[test]
fn seer_attention_pooled_and_xattention_equal_host_selection_and_cpu_reference() {
    let Some(sim) = backend() else { return };
    // Pooled top-k per kv group (GQA 4:1), seq_q != seq_k, not multiples of 64.
    let pooled = SeerConfig { scoring: Scoring::Pooled, per_kv_group: true, select: select(BlockBudget::TopK(2), ScoreKind::Logits, true) };
    seer_padded(&sim, 11, AttnShape::new(2, 150, 230, 8, 2, 64).unwrap(), pooled, None);
    // Pooled, threshold budget, per query head, not causal.
    let budget = SeerConfig { scoring: Scoring::Pooled, per_kv_group: false, select: select(BlockBudget::Threshold(0.6), ScoreKind::Logits, false) };
    seer_padded(&sim, 12, AttnShape::new(1, 140, 200, 2, 2, 128).unwrap(), budget, None);
    // XAttention (stride 8) with its mass threshold.
    let xattn = SeerConfig { scoring: Scoring::Xattn { stride: 8 }, per_kv_group: false, select: select(BlockBudget::Threshold(0.9), ScoreKind::Mass, true) };
    seer_padded(&sim, 13, AttnShape::new(1, 130, 130, 2, 1, 64).unwrap(), xattn, None);
}

#[test]
fn seer_attention_with_a_checkpoint_gate_equals_the_host_gate_and_cpu_reference() {
    let Some(sim) = backend() else { return };
    let shape = AttnShape::new(1, 200, 200, 4, 2, 64).unwrap();
    let (hidden, k_heads) = (32, 2);
    let mut rng = Rng::new(21);
    let wq: Vec<half::bf16> = tensor(&mut rng, shape.heads_q() * 64 * hidden, 0.3);
    let wk: Vec<half::bf16> = tensor(&mut rng, k_heads * 3 * 64 * hidden, 0.3);
    let wide = |w: &[half::bf16]| w.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let host = GateHost { wq: Some(wide(&wq)), wk: wide(&wk), k_heads, hidden, rope_theta: Some(10000.0) };
    let dims = GateDims { has_wq: true, k_heads, hidden, rope_theta: Some(10000.0) };
    let config = SeerConfig { scoring: Scoring::Gate(dims), per_kv_group: false, select: select(BlockBudget::TopK(2), ScoreKind::Logits, true) };
    seer_padded(&sim, 22, shape, config, Some((host, wq, wk)));
}

#[test]
fn seer_attention_varlen_selects_each_sequence_on_its_own_lengths() {
    let Some(sim) = backend() else { return };
    let config = SeerConfig { scoring: Scoring::Pooled, per_kv_group: true, select: select(BlockBudget::TopK(2), ScoreKind::Logits, true) };
    let opts = AttnOptions::causal();
    let varlen = Varlen::new(vec![0, 150, 150, 230], vec![0, 200, 210, 300]).unwrap();
    let shape = AttnShape::new(3, 150, 210, 4, 1, 64).unwrap();
    let mut rng = Rng::new(31);
    for attempt in 0..ATTEMPTS {
        let q = tensor::<half::bf16>(&mut rng, varlen.total_q() * 4 * 64, 1.5);
        let k = tensor::<half::bf16>(&mut rng, varlen.total_k() * 64, 1.5);
        let v = tensor::<half::bf16>(&mut rng, varlen.total_k() * 64, 1.0);
        let got = sim.seer_attention(&shape, Some(&varlen), &opts, &config, HostTensors { q: &q, k: &k, v: &v, sinks: None }, None).unwrap();
        let inputs = VarlenInputs::new(shape, varlen.clone(), &q, &k, &v).unwrap();
        let scores = block_scores_host_varlen(&inputs, BlockScoring::Pooled, true, true, 0.125).unwrap();
        let dims = ScoreDims { batch: 3, heads: 1, seq_q: 150, seq_k: 210 };
        let host = select_blocks_host(&scores, &dims, Some(&varlen_seqlens(&inputs)), &config.select).unwrap();
        if !same_blocks(&got, &host) {
            println!("attempt {attempt}: a near-tie; new inputs");
            continue;
        }
        let want = varlen_block_sparse_attention(&inputs, &opts, &host).unwrap();
        compare_varlen("seer varlen", DType::BF16, &want, &widen(&got.out), &got.lse);
        return;
    }
    panic!("no inputs without a near-tie in {ATTEMPTS} attempts");
}

#[test]
fn seer_attention_refuses_bad_arguments_by_name() {
    let Some(sim) = backend() else { return };
    let shape = AttnShape::new(1, 100, 100, 2, 1, 64).unwrap();
    let x = vec![half::bf16::ONE; shape.q_len()];
    let t = HostTensors { q: &x, k: &x[..shape.kv_len()], v: &x[..shape.kv_len()], sinks: None };
    let run = |config: SeerConfig, opts: AttnOptions, gate: Option<SimGate<'_, half::bf16>>| sim.seer_attention(&shape, None, &opts, &config, t, gate).map(|_| ());
    let ok = SeerConfig { scoring: Scoring::Pooled, per_kv_group: false, select: select(BlockBudget::TopK(1), ScoreKind::Logits, true) };
    run(ok, AttnOptions::causal(), None).unwrap();
    let named = |r: sparse_attn::Result<()>, name: &str| matches!(r, Err(Error::InvalidParameter { name: n, .. }) if n == name);
    assert!(named(run(ok, AttnOptions::default(), None), "causal"), "mask mismatch");
    assert!(named(run(SeerConfig { select: select(BlockBudget::TopK(0), ScoreKind::Logits, true), ..ok }, AttnOptions::causal(), None), "top_k"));
    assert!(named(run(SeerConfig { select: select(BlockBudget::TopK(3), ScoreKind::Logits, true), ..ok }, AttnOptions::causal(), None), "top_k"), "above the key blocks");
    for p in [0.0, 1.5, f64::NAN] {
        assert!(named(run(SeerConfig { select: select(BlockBudget::Threshold(p), ScoreKind::Logits, true), ..ok }, AttnOptions::causal(), None), "threshold"), "{p}");
    }
    let gate = SeerConfig { scoring: Scoring::Gate(GateDims { has_wq: true, k_heads: 1, hidden: 16, rope_theta: None }), ..ok };
    let short = vec![half::bf16::ONE; 10];
    let err = run(gate, AttnOptions::causal(), Some(SimGate { wq: Some(&short), wk: &short }));
    assert!(matches!(err, Err(Error::BufferTooSmall { tensor: "gate.wq", .. }) | Err(Error::InvalidParameter { name: "gate.wq", .. })), "{err:?}");
}
