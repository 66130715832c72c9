//! Block selection on the device (kernels/block_select.cu) on the PTX simulator, against the
//! host rules of `pattern::block_select` and the host estimator `estimate_block_topk`:
//! pooled and gate scores, top-k and threshold selection, contiguous and varlen, GQA 4:1
//! and 1:1, causal, seq_q != seq_k, lengths off the 64 grid. Integer outputs must be equal
//! on rows whose scores have no near-ties (relative gap > 1e-3); on every row the kept
//! set's score is within 1e-4 relative of the host's. End to end, the device selection
//! drives the block-sparse attention kernel to the CPU reference of the host selection.
//! Bit-identical reruns, racecheck, NaN / inf inputs and bad arguments too. Skips with the
//! reason when the crate was built without a CUDA compiler.

mod attention_cases;
mod common;

use attention_cases::{check, problem, Case};
use common::Rng;
use half::bf16;
use ptx_sim::LaunchOptions;
use sparse_attn::pattern::block_select::{
    block_scores_host, block_scores_host_varlen, estimate_blocks, select_blocks_host, varlen_seqlens, BlockBudget, BlockScoring,
    BlockSelectConfig, GateHost, ScoreDims, ScoreKind,
};
use sparse_attn::pattern::{estimate_block_topk, estimate_block_topk_varlen, BlockSparse, BlockTopkConfig};
use sparse_attn::plan::block_select::{plan_scores, plan_select, workspace_len, GateDims, ScoreBuffers, ScoreProblem, Scoring};
use sparse_attn::plan::DeviceBuffer;
use sparse_attn::reference::{RefInputs, VarlenInputs};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_block_select::SimBlockInputs;
use sparse_attn::{AttnShape, DType, Error, SparsePattern, Varlen};

fn backend() -> Option<SimBackend> {
    if let Err(e) = sparse_attn::ptx::module_for("block_select", 80) {
        println!("skipped: {e}");
        return None;
    }
    Some(SimBackend::new(80))
}

fn problem_for(shape: AttnShape, per_kv_group: bool, causal: bool, gate: Option<GateDims>) -> ScoreProblem {
    let scale = match gate {
        Some(g) => 1.0 / (g.hidden as f32).sqrt(),
        None => 1.0 / (shape.head_dim() as f32).sqrt(),
    };
    let scoring = gate.map_or(Scoring::Pooled, Scoring::Gate);
    ScoreProblem { shape, dtype: DType::BF16, per_kv_group, causal, scale, scoring }
}

fn inputs<'a>(q: &'a [bf16], k: &'a [bf16]) -> SimBlockInputs<'a, bf16> {
    SimBlockInputs { q, k, varlen: None, wq: None, wk: None }
}

/// The kept ids of every row, as lists.
fn rows(bs: &BlockSparse) -> Vec<Vec<i32>> {
    let mut out = Vec::new();
    for b in 0..bs.batch() {
        for h in 0..bs.heads() {
            for m in 0..bs.row_blocks() {
                out.push(bs.blocks(b, h, m).unwrap().to_vec());
            }
        }
    }
    out
}

/// True when two real scores of the row's first `cand` are within 1e-3 relative.
fn near_tie(row: &[f64]) -> bool {
    let mut v: Vec<f64> = row.iter().copied().filter(|s| s.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.windows(2).any(|w| (w[1] - w[0]).abs() <= 1e-3 * w[0].abs().max(w[1].abs()).max(1e-6))
}

/// In threshold mode, true when a running weight sum of the host order lands within 1e-3
/// of the target (the f32 device sum may fall on the other side).
fn near_threshold(row: &[f64], kept: usize, config: &BlockSelectConfig) -> bool {
    let BlockBudget::Threshold(p) = config.budget else { return false };
    let mut s: Vec<f64> = row.iter().copied().filter(|s| s.is_finite()).collect();
    s.sort_by(|a, b| b.total_cmp(a));
    let max = s.first().copied().unwrap_or(0.0);
    let w: Vec<f64> = match config.kind {
        ScoreKind::Logits => s.iter().map(|x| (x - max).exp()).collect(),
        ScoreKind::Mass => s.iter().map(|x| x.max(0.0)).collect(),
    };
    let total: f64 = w.iter().sum();
    let mut cum = 0.0;
    // Forced blocks change the order; any prefix sum near the target is suspect.
    w.iter().any(|x| {
        cum += x;
        (cum - p * total).abs() <= 1e-3 * total
    }) || kept == 0
}

/// Sum of the host scores of a kept set (top-k), or its weight share (threshold).
fn kept_score(row: &[f64], kept: &[i32]) -> f64 {
    kept.iter().map(|&n| row[n as usize]).filter(|s| s.is_finite()).sum()
}

/// Device and host selections agree: exactly on rows without near-ties, and by kept score
/// within 1e-4 relative elsewhere. Returns how many rows were compared exactly.
fn compare(label: &str, device: &BlockSparse, host: &BlockSparse, scores: &[f64], config: &BlockSelectConfig) -> usize {
    let (d, h) = (rows(device), rows(host));
    assert_eq!(d.len(), h.len(), "{label}: row count");
    let nb = scores.len() / d.len();
    let mut exact = 0;
    for (r, (dr, hr)) in d.iter().zip(&h).enumerate() {
        let row = &scores[r * nb..(r + 1) * nb];
        assert!(dr.windows(2).all(|w| w[0] < w[1]), "{label}: row {r} not ascending: {dr:?}");
        assert!(dr.iter().all(|&n| n >= 0 && (n as usize) < nb), "{label}: row {r} out of range: {dr:?}");
        if !near_tie(row) && !near_threshold(row, hr.len(), config) {
            assert_eq!(dr, hr, "{label}: row {r}, scores {row:?}");
            exact += 1;
        } else if let BlockBudget::TopK(_) = config.budget {
            assert_eq!(dr.len(), hr.len(), "{label}: row {r} count");
            let (a, b) = (kept_score(row, dr), kept_score(row, hr));
            assert!((a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0), "{label}: row {r}: kept score {a} vs host {b}");
        } else if let BlockBudget::Threshold(p) = config.budget {
            // Near the target the device's f32 sums may take one block more or fewer, but its
            // set's weight still reaches the target within 1e-4 of the row's total.
            let max = row.iter().copied().filter(|s| s.is_finite()).fold(f64::NEG_INFINITY, f64::max);
            let w = |n: &i32| {
                let s = row[*n as usize];
                match config.kind {
                    ScoreKind::Logits if s.is_finite() => (s - max).exp(),
                    ScoreKind::Logits => 0.0,
                    ScoreKind::Mass => s.max(0.0),
                }
            };
            let total: f64 = (0..nb as i32).map(|n| w(&n)).filter(|x| x.is_finite()).sum();
            let got: f64 = dr.iter().map(w).sum();
            assert!(got >= p * total - 1e-4 * total, "{label}: row {r}: kept weight {got} of {total}, threshold {p}");
            assert!(dr.len() <= hr.len() + 1, "{label}: row {r}: {} blocks, host {}", dr.len(), hr.len());
        }
    }
    exact
}

fn random_config(rng: &mut Rng, key_blocks: usize, causal: bool) -> BlockSelectConfig {
    let budget = if rng.chance(0.5) { BlockBudget::TopK(rng.range(1, key_blocks)) } else { BlockBudget::Threshold([0.3, 0.5, 0.9, 1.0][rng.below(4)]) };
    BlockSelectConfig { budget, kind: ScoreKind::Logits, causal, force_sink: rng.chance(0.5), force_diagonal: rng.chance(0.5) }
}

/// Random shapes: pooled scores on the device equal the host's, and the selections equal
/// both `estimate_blocks` and, in top-k mode, `estimate_block_topk`.
#[test]
fn pooled_selection_equals_host_estimators() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(21);
    let mut exact = 0;
    for case in 0..14 {
        let shape = common::random_shape(&mut rng, 400);
        let shape = if case == 0 { AttnShape::new(2, 300, 300, 8, 2, 64).unwrap() } else { shape };
        let q: Vec<bf16> = rng.tensor(shape.q_len());
        let k: Vec<bf16> = rng.tensor(shape.kv_len());
        let v: Vec<bf16> = rng.tensor(shape.kv_len());
        let ref_in = RefInputs::new(shape, &q, &k, &v).unwrap();
        let causal = rng.chance(0.6);
        let per_kv_group = rng.chance(0.5);
        let prob = problem_for(shape, per_kv_group, causal, None);
        let config = random_config(&mut rng, shape.seq_k().div_ceil(64), causal);
        let label = format!("case {case} {shape:?} group {per_kv_group} {config:?}");
        let est = sim.block_estimate(&prob, &config, &inputs(&q, &k), &LaunchOptions::default()).unwrap();
        let scores = block_scores_host(&ref_in, BlockScoring::Pooled, per_kv_group, causal, prob.scale as f64).unwrap();
        // Device scores: f32 pooling and dot products against f64.
        for (i, (&d, &h)) in est.scores.iter().zip(&scores).enumerate() {
            if h.is_finite() {
                assert!((d as f64 - h).abs() <= 1e-4 * h.abs().max(1.0), "{label}: score {i}: {d} vs {h}");
            } else {
                assert_eq!(d, f32::NEG_INFINITY, "{label}: score {i} is not a candidate");
            }
        }
        let host = estimate_blocks(&ref_in, BlockScoring::Pooled, per_kv_group, &config, prob.scale as f64).unwrap();
        exact += compare(&label, &est.blocks, &host, &scores, &config);
        est.blocks.validate(&shape).unwrap();
        if let BlockBudget::TopK(top_k) = config.budget {
            let cfg = BlockTopkConfig { top_k, causal, force_sink: config.force_sink, force_diagonal: config.force_diagonal, per_kv_group };
            let old = estimate_block_topk(&ref_in, &cfg, prob.scale as f64).unwrap();
            compare(&label, &est.blocks, &old, &scores, &config);
        }
    }
    assert!(exact > 100, "only {exact} rows were free of near-ties");
}

/// A varlen batch: every sequence selected on its own lengths, empty sequences and row
/// blocks past a sequence's end keep nothing.
#[test]
fn varlen_selection_equals_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(5);
    let (lq, lk) = ([70usize, 0, 1, 200], [70usize, 5, 130, 260]);
    let cu = |l: &[usize]| std::iter::once(0).chain(l.iter().scan(0, |a, &x| { *a += x; Some(*a as i32) })).collect::<Vec<i32>>();
    let varlen = Varlen::new(cu(&lq), cu(&lk)).unwrap();
    let shape = AttnShape::new(4, 200, 260, 4, 1, 64).unwrap();
    let q: Vec<bf16> = rng.tensor(varlen.total_q() * 4 * 64);
    let k: Vec<bf16> = rng.tensor(varlen.total_k() * 64);
    let v = k.clone();
    let vin = VarlenInputs::new(shape, varlen.clone(), &q, &k, &v).unwrap();
    for (per_kv_group, budget) in [(true, BlockBudget::TopK(2)), (false, BlockBudget::Threshold(0.8))] {
        let config = BlockSelectConfig { budget, kind: ScoreKind::Logits, causal: true, force_sink: true, force_diagonal: false };
        let prob = problem_for(shape, per_kv_group, true, None);
        let est = sim
            .block_estimate(&prob, &config, &SimBlockInputs { varlen: Some(&varlen), ..inputs(&q, &k) }, &LaunchOptions::default())
            .unwrap();
        let scores = block_scores_host_varlen(&vin, BlockScoring::Pooled, per_kv_group, true, prob.scale as f64).unwrap();
        let host = select_blocks_host(&scores, &prob.score_dims(), Some(&varlen_seqlens(&vin)), &config).unwrap();
        let exact = compare(&format!("varlen {budget:?}"), &est.blocks, &host, &scores, &config);
        assert!(exact > 0);
        if let BlockBudget::TopK(top_k) = budget {
            let cfg = BlockTopkConfig { top_k, causal: true, force_sink: true, force_diagonal: false, per_kv_group };
            let old = estimate_block_topk_varlen(&vin, &cfg, prob.scale as f64).unwrap();
            compare("varlen against estimate_block_topk_varlen", &est.blocks, &old, &scores, &config);
        }
        // Sequence 1 has no queries: its rows are empty.
        assert!(rows(&est.blocks)[prob.score_dims().heads * 4..][..prob.score_dims().heads * 4].iter().all(Vec::is_empty));
    }
}

/// Random gate weights of a SeerAttention checkpoint's shapes (bf16), with RoPE: device
/// scores match the host gate, selections match on rows without near-ties.
#[test]
fn gate_scores_and_selection_equal_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(9);
    // (shape, hidden, with wq, k_heads = heads_q, per_kv_group)
    let cases = [
        (AttnShape::new(2, 200, 200, 4, 1, 64).unwrap(), 32, true, false, true),
        (AttnShape::new(1, 130, 300, 2, 2, 32).unwrap(), 32, false, true, false),
        (AttnShape::new(1, 257, 257, 8, 2, 64).unwrap(), 64, true, true, true),
    ];
    for (n, &(shape, hidden, has_wq, k_per_q, per_kv_group)) in cases.iter().enumerate() {
        let d = shape.head_dim();
        let k_heads = if k_per_q { shape.heads_q() } else { shape.heads_kv() };
        let q: Vec<bf16> = rng.tensor(shape.q_len());
        let k: Vec<bf16> = rng.tensor(shape.kv_len());
        let wq: Vec<bf16> = rng.tensor(shape.heads_q() * d * hidden);
        let wk: Vec<bf16> = rng.tensor(k_heads * 3 * d * hidden);
        let wide = |w: &[bf16]| w.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
        let gate = GateHost { wq: has_wq.then(|| wide(&wq)), wk: wide(&wk), k_heads, hidden, rope_theta: Some(10000.0) };
        let dims = GateDims { has_wq, k_heads, hidden, rope_theta: Some(10000.0) };
        let prob = problem_for(shape, per_kv_group, true, Some(dims));
        let config = BlockSelectConfig { budget: BlockBudget::TopK(3), kind: ScoreKind::Logits, causal: true, force_sink: n == 0, force_diagonal: true };
        let sim_in = SimBlockInputs { wq: has_wq.then_some(&wq[..]), wk: Some(&wk[..]), ..inputs(&q, &k) };
        let est = sim.block_estimate(&prob, &config, &sim_in, &LaunchOptions::default()).unwrap();
        let ref_in = RefInputs::new(shape, &q, &k, &k).unwrap();
        let scores = block_scores_host(&ref_in, BlockScoring::Gate(&gate), per_kv_group, true, prob.scale as f64).unwrap();
        let label = format!("gate case {n}");
        for (i, (&dv, &h)) in est.scores.iter().zip(&scores).enumerate() {
            if h.is_finite() {
                assert!((dv as f64 - h).abs() <= 1e-3 * h.abs().max(1.0), "{label}: score {i}: {dv} vs {h}");
            }
        }
        let host = estimate_blocks(&ref_in, BlockScoring::Gate(&gate), per_kv_group, &config, prob.scale as f64).unwrap();
        assert!(compare(&label, &est.blocks, &host, &scores, &config) > 0);
    }
}

/// The selection kernel alone on given f32 scores with exact ties, NaN and infinities (top
/// k: the order is the f32 order, so the host is exact), and on integer masses (threshold
/// sums exact in f32).
#[test]
fn selection_kernel_equals_host_on_given_scores() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(3);
    const FEW: [f32; 7] = [-1.0, 0.0, 0.5, 2.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    for (seq_q, seq_k) in [(100, 100), (64, 1000), (300, 130), (1, 4100)] {
        let dims = ScoreDims { batch: 2, heads: 2, seq_q, seq_k };
        let nb = dims.key_blocks();
        let len = dims.len().unwrap();
        for trial in 0..4 {
            let causal = trial % 2 == 0;
            let (scores, config): (Vec<f32>, BlockSelectConfig) = if trial < 2 {
                let s = (0..len).map(|_| if rng.chance(0.5) { FEW[rng.below(FEW.len())] } else { rng.normal() as f32 }).collect();
                (s, BlockSelectConfig { budget: BlockBudget::TopK(rng.range(1, nb)), kind: ScoreKind::Logits, causal, force_sink: trial == 0, force_diagonal: true })
            } else {
                let s = (0..len).map(|_| rng.below(5) as f32).collect();
                (s, BlockSelectConfig { budget: BlockBudget::Threshold(0.5), kind: ScoreKind::Mass, causal, force_sink: true, force_diagonal: trial == 2 })
            };
            let got = sim.block_select(&dims, &config, &scores, None, &LaunchOptions::default()).unwrap();
            let wide: Vec<f64> = scores.iter().map(|&x| x as f64).collect();
            let want = select_blocks_host(&wide, &dims, None, &config).unwrap();
            assert_eq!(got, want, "{dims:?} {config:?}");
        }
    }
}

/// Device estimate -> block-sparse attention kernel equals host estimate -> CPU reference.
#[test]
fn end_to_end_device_selection_drives_attention() {
    let Some(sim) = backend() else { return };
    for (seed, shape, per_kv_group) in [(41, AttnShape::new(1, 200, 200, 4, 1, 64).unwrap(), true), (42, AttnShape::new(2, 100, 150, 2, 2, 64).unwrap(), false)] {
        // The same q, k, v that attention_cases::problem generates from the seed.
        let mut rng = Rng::new(seed);
        let mut tensor = |n: usize| (0..n).map(|_| bf16::from_f32(rng.normal() as f32)).collect::<Vec<bf16>>();
        let (q, k, v) = (tensor(shape.q_len()), tensor(shape.kv_len()), tensor(shape.kv_len()));
        let ref_in = RefInputs::new(shape, &q, &k, &v).unwrap();
        let config = BlockSelectConfig { budget: BlockBudget::TopK(2), kind: ScoreKind::Logits, causal: true, force_sink: false, force_diagonal: true };
        let prob = problem_for(shape, per_kv_group, true, None);
        let host = estimate_blocks(&ref_in, BlockScoring::Pooled, per_kv_group, &config, prob.scale as f64).unwrap();
        let device = sim.block_estimate(&prob, &config, &inputs(&q, &k), &LaunchOptions::default()).unwrap().blocks;
        assert_eq!(device, host, "seed {seed}: the inputs have no near-ties");
        let case = Case::new(shape, true, DType::BF16, seed, "block_sparse", host);
        let p = problem::<bf16>(&case);
        assert_eq!((&p.q, &p.k), (&q, &k));
        let source = device.source(&shape).unwrap();
        let out = sim.attention(&shape, &case.opts(), HostTensors { q: &p.q, k: &p.k, v: &p.v, sinks: None }, &source).unwrap();
        let wide: Vec<f32> = out.out.iter().map(|x| x.to_f32()).collect();
        check(&case, &p.expected, &wide, &out.lse);
    }
}

/// Reruns are bit-identical, and racecheck finds nothing in any of the four kernels.
#[test]
fn deterministic_and_racecheck_clean() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(17);
    let shape = AttnShape::new(1, 130, 200, 4, 1, 64).unwrap();
    let q: Vec<bf16> = rng.tensor(shape.q_len());
    let k: Vec<bf16> = rng.tensor(shape.kv_len());
    let wq: Vec<bf16> = rng.tensor(4 * 64 * 32);
    let wk: Vec<bf16> = rng.tensor(3 * 64 * 32);
    let prob = problem_for(shape, true, true, Some(GateDims { has_wq: true, k_heads: 1, hidden: 32, rope_theta: Some(1e4) }));
    let config = BlockSelectConfig { budget: BlockBudget::Threshold(0.7), kind: ScoreKind::Logits, causal: true, force_sink: true, force_diagonal: true };
    let sim_in = SimBlockInputs { wq: Some(&wq[..]), wk: Some(&wk[..]), ..inputs(&q, &k) };
    let race = LaunchOptions { racecheck: true, ..Default::default() };
    let a = sim.block_estimate(&prob, &config, &sim_in, &race).unwrap();
    let b = sim.block_estimate(&prob, &config, &sim_in, &LaunchOptions { threads: 1, ..Default::default() }).unwrap();
    assert_eq!(a.blocks, b.blocks);
    assert_eq!(a.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    let plain = problem_for(shape, false, false, None);
    let top = BlockSelectConfig { budget: BlockBudget::TopK(2), causal: false, ..config };
    named(sim.block_estimate(&plain, &config, &inputs(&q, &k), &race), "causal");
    sim.block_estimate(&plain, &top, &inputs(&q, &k), &race).unwrap();
    let xattn = ScoreProblem { scoring: Scoring::Xattn { stride: 8 }, ..plain };
    let mass = BlockSelectConfig { kind: ScoreKind::Mass, causal: false, ..config };
    let a = sim.block_estimate(&xattn, &mass, &inputs(&q, &k), &race).unwrap();
    let b = sim.block_estimate(&xattn, &mass, &inputs(&q, &k), &LaunchOptions { threads: 1, ..Default::default() }).unwrap();
    assert_eq!((a.blocks, a.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>()), (b.blocks, b.scores.iter().map(|x| x.to_bits()).collect::<Vec<_>>()));
}

/// NaN and inf in Q and K: the selection is still valid (ids ascending, in range, counts
/// within the budget) and the host rule on the device's own scores.
#[test]
fn nan_and_inf_inputs_give_a_valid_selection() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(23);
    let shape = AttnShape::new(1, 200, 260, 2, 1, 64).unwrap();
    let mut q: Vec<bf16> = rng.tensor(shape.q_len());
    let mut k: Vec<bf16> = rng.tensor(shape.kv_len());
    for (i, x) in q.iter_mut().enumerate().filter(|(i, _)| i % 97 == 0) {
        *x = bf16::from_f32([f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3]);
    }
    for (i, x) in k.iter_mut().enumerate().filter(|(i, _)| i % 389 == 0) {
        *x = bf16::from_f32([f32::NAN, f32::INFINITY][i % 2]);
    }
    for budget in [BlockBudget::TopK(3), BlockBudget::Threshold(0.9)] {
        let config = BlockSelectConfig { budget, kind: ScoreKind::Logits, causal: true, force_sink: false, force_diagonal: false };
        let prob = problem_for(shape, false, true, None);
        let est = sim.block_estimate(&prob, &config, &inputs(&q, &k), &LaunchOptions::default()).unwrap();
        est.blocks.validate(&shape).unwrap();
        assert!(est.scores.iter().any(|s| s.is_nan()), "the inputs make NaN scores");
        let wide: Vec<f64> = est.scores.iter().map(|&x| x as f64).collect();
        let want = select_blocks_host(&wide, &prob.score_dims(), None, &config).unwrap();
        if let BlockBudget::TopK(_) = budget {
            assert_eq!(est.blocks, want);
        }
        for r in rows(&est.blocks) {
            assert!(r.windows(2).all(|w| w[0] < w[1]) && r.iter().all(|&n| (0..5).contains(&n)), "{r:?}");
        }
    }
}

fn named<T>(r: Result<T, Error>, name: &str) {
    let e = r.err().expect("must be refused");
    assert!(e.to_string().contains(name), "{e} does not name {name}");
}

/// Bad arguments are refused by name.
#[test]
fn bad_arguments_are_refused_by_name() {
    let shape = AttnShape::new(1, 100, 200, 4, 2, 64).unwrap();
    let dims = ScoreDims { batch: 1, heads: 2, seq_q: 100, seq_k: 200 };
    let buf = |len: usize| DeviceBuffer { addr: 1 << 20, len };
    let cfg = |budget| BlockSelectConfig { budget, kind: ScoreKind::Logits, causal: true, force_sink: false, force_diagonal: false };
    let sel = |c: BlockSelectConfig| plan_select(&dims, &c, buf(16), None, buf(4), buf(16));
    named(sel(cfg(BlockBudget::TopK(0))), "top_k");
    named(sel(cfg(BlockBudget::TopK(5))), "top_k");
    for p in [0.0, -0.5, 1.5, f64::NAN] {
        named(sel(cfg(BlockBudget::Threshold(p))), "threshold");
    }
    named(plan_select(&dims, &cfg(BlockBudget::TopK(2)), buf(15), None, buf(4), buf(16)), "scores");
    named(plan_select(&dims, &cfg(BlockBudget::TopK(2)), buf(16), None, buf(3), buf(16)), "block_count");
    named(plan_select(&dims, &cfg(BlockBudget::TopK(2)), buf(16), None, buf(4), buf(7)), "block_index");

    let gate = GateDims { has_wq: true, k_heads: 2, hidden: 32, rope_theta: Some(1e4) };
    let prob = problem_for(shape, true, true, Some(gate));
    let ws = workspace_len(&prob).unwrap();
    let bufs = |wq: usize, wk: usize, ws: usize| ScoreBuffers {
        q: buf(shape.q_len()),
        k: buf(shape.kv_len()),
        q_layout: shape.q_layout(),
        k_layout: shape.kv_layout(),
        varlen: None,
        wq: Some(buf(wq)),
        wk: Some(buf(wk)),
        workspace: buf(ws),
    };
    plan_scores(&prob, &bufs(4 * 64 * 32, 2 * 192 * 32, ws)).unwrap();
    named(plan_scores(&prob, &bufs(4 * 64 * 32 - 1, 2 * 192 * 32, ws)), "gate.wq");
    named(plan_scores(&prob, &bufs(4 * 64 * 32, 2 * 192 * 32 - 1, ws)), "gate.wk");
    named(plan_scores(&prob, &bufs(4 * 64 * 32, 2 * 192 * 32, ws - 1)), "workspace");
    named(plan_scores(&prob, &ScoreBuffers { q: buf(shape.q_len() - 1), ..bufs(4 * 64 * 32, 2 * 192 * 32, ws) }), "q");
    named(plan_scores(&prob, &ScoreBuffers { wq: None, ..bufs(4 * 64 * 32, 2 * 192 * 32, ws) }), "gate.wq");
    let with = |g: GateDims| ScoreProblem { scoring: Scoring::Gate(g), ..prob }.layout().map(|_| ());
    named(with(GateDims { k_heads: 3, ..gate }), "gate.wk");
    named(with(GateDims { hidden: 0, ..gate }), "gate.hidden");
    named(with(GateDims { hidden: 33, ..gate }), "gate.hidden");
    named(with(GateDims { hidden: 32, has_wq: false, ..gate }), "gate.wq");
    named(with(GateDims { rope_theta: Some(f32::NAN), ..gate }), "gate.rope_theta");
    let wide = AttnShape::new(1, 100, 200, 4, 2, 512);
    if let Ok(wide) = wide {
        named(problem_for(wide, true, true, None).layout().map(|_| ()), "head_dim");
    }
    named(ScoreProblem { scale: 0.0, ..prob }.layout().map(|_| ()), "scale");
    for stride in [0, 3, 128] {
        named(ScoreProblem { scoring: Scoring::Xattn { stride }, ..prob }.layout().map(|_| ()), "stride");
    }
    let xattn = ScoreProblem { scoring: Scoring::Xattn { stride: 8 }, ..prob };
    named(plan_scores(&xattn, &bufs(4 * 64 * 32, 2 * 192 * 32, ws)), "gate");
    // Host references refuse the same budgets.
    let scores = vec![0.0; 16];
    named(select_blocks_host(&scores, &dims, None, &cfg(BlockBudget::TopK(0))), "top_k");
    named(select_blocks_host(&scores, &dims, None, &cfg(BlockBudget::Threshold(2.0))), "threshold");
}

/// XAttention scoring (strides 8 and 4; contiguous GQA and a varlen batch): device masses
/// equal the host's, and the threshold selection on them (forced sink and diagonal, as
/// XAttention keeps them) equals the host's on rows without near-ties.
#[test]
fn xattn_scores_and_selection_equal_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(31);
    let config = |causal| BlockSelectConfig { budget: BlockBudget::Threshold(0.9), kind: ScoreKind::Mass, causal, force_sink: true, force_diagonal: true };
    let check_scores = |label: &str, got: &[f32], want: &[f64]| {
        for (i, (&d, &h)) in got.iter().zip(want).enumerate() {
            if h.is_finite() {
                assert!((d as f64 - h).abs() <= 1e-4 * h.abs().max(1.0), "{label}: score {i}: {d} vs {h}");
            } else {
                assert_eq!(d, f32::NEG_INFINITY, "{label}: score {i}");
            }
        }
    };
    let mut exact = 0;
    for (n, (shape, stride, per_kv_group, causal)) in [
        (AttnShape::new(2, 200, 200, 4, 1, 64).unwrap(), 8, true, true),
        (AttnShape::new(1, 130, 300, 2, 2, 32).unwrap(), 4, false, true),
        (AttnShape::new(1, 77, 150, 2, 1, 64).unwrap(), 8, false, false),
    ]
    .into_iter()
    .enumerate()
    {
        let q: Vec<bf16> = rng.tensor(shape.q_len());
        let k: Vec<bf16> = rng.tensor(shape.kv_len());
        let ref_in = RefInputs::new(shape, &q, &k, &k).unwrap();
        let prob = ScoreProblem { scoring: Scoring::Xattn { stride }, ..problem_for(shape, per_kv_group, causal, None) };
        let est = sim.block_estimate(&prob, &config(causal), &inputs(&q, &k), &LaunchOptions::default()).unwrap();
        let scoring = BlockScoring::Xattn { stride };
        let scores = block_scores_host(&ref_in, scoring, per_kv_group, causal, prob.scale as f64).unwrap();
        let label = format!("xattn case {n}");
        check_scores(&label, &est.scores, &scores);
        let host = estimate_blocks(&ref_in, scoring, per_kv_group, &config(causal), prob.scale as f64).unwrap();
        exact += compare(&label, &est.blocks, &host, &scores, &config(causal));
    }
    // Varlen.
    let (lq, lk) = ([100usize, 0, 70], [100usize, 9, 200]);
    let cu = |l: &[usize]| std::iter::once(0).chain(l.iter().scan(0, |a, &x| { *a += x; Some(*a as i32) })).collect::<Vec<i32>>();
    let varlen = Varlen::new(cu(&lq), cu(&lk)).unwrap();
    let shape = AttnShape::new(3, 100, 200, 2, 1, 64).unwrap();
    let q: Vec<bf16> = rng.tensor(varlen.total_q() * 2 * 64);
    let k: Vec<bf16> = rng.tensor(varlen.total_k() * 64);
    let vin = VarlenInputs::new(shape, varlen.clone(), &q, &k, &k).unwrap();
    let prob = ScoreProblem { scoring: Scoring::Xattn { stride: 8 }, ..problem_for(shape, true, true, None) };
    let est = sim.block_estimate(&prob, &config(true), &SimBlockInputs { varlen: Some(&varlen), ..inputs(&q, &k) }, &LaunchOptions::default()).unwrap();
    let scores = block_scores_host_varlen(&vin, BlockScoring::Xattn { stride: 8 }, true, true, prob.scale as f64).unwrap();
    check_scores("xattn varlen", &est.scores, &scores);
    let host = select_blocks_host(&scores, &prob.score_dims(), Some(&varlen_seqlens(&vin)), &config(true)).unwrap();
    exact += compare("xattn varlen", &est.blocks, &host, &scores, &config(true));
    assert!(exact > 5, "{exact} rows compared exactly");
}

/// The longest row the selection takes (8192 key blocks, seq_k 512K: 64 KiB of sort keys,
/// above the 48 KiB default) in both modes, with ties, against the host.
#[test]
fn longest_selection_row() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(47);
    let dims = ScoreDims { batch: 1, heads: 1, seq_q: 1, seq_k: 1 << 19 };
    let config = BlockSelectConfig { budget: BlockBudget::TopK(8), kind: ScoreKind::Logits, causal: true, force_sink: false, force_diagonal: false };
    let too_long = ScoreDims { seq_k: (1 << 19) + 1, ..dims };
    named(sim.block_select(&too_long, &config, &vec![0.0; too_long.len().unwrap()], None, &LaunchOptions::default()), "seq_k");
    let scores: Vec<f32> = (0..dims.len().unwrap()).map(|_| rng.below(1000) as f32 / 64.0).collect();
    let wide: Vec<f64> = scores.iter().map(|&x| x as f64).collect();
    for (budget, kind) in [(BlockBudget::TopK(2048), ScoreKind::Logits), (BlockBudget::Threshold(0.5), ScoreKind::Mass)] {
        let config = BlockSelectConfig { budget, kind, causal: true, force_sink: true, force_diagonal: true };
        let got = sim.block_select(&dims, &config, &scores, None, &LaunchOptions::default()).unwrap();
        assert_eq!(got, select_blocks_host(&wide, &dims, None, &config).unwrap(), "{budget:?}");
    }
}

/// The host threshold rule keeps a smallest non-empty set (with the forced blocks) whose
/// weight reaches the target: brute force over every subset of short rows.
#[test]
fn host_threshold_rule_is_minimal() {
    let mut rng = Rng::new(53);
    for trial in 0..300 {
        let n = rng.range(1, 9);
        let row: Vec<f64> = (0..n).map(|_| rng.normal() * 2.0).collect();
        let p = [0.2, 0.5, 0.8, 0.95, 1.0][trial % 5];
        let kind = if trial % 2 == 0 { ScoreKind::Logits } else { ScoreKind::Mass };
        let diagonal = Some(n - 1);
        let config = BlockSelectConfig { budget: BlockBudget::Threshold(p), kind, causal: true, force_sink: trial % 3 == 0, force_diagonal: trial % 4 == 0 };
        let kept = sparse_attn::pattern::block_select::select_row(&row, n, diagonal, &config);
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = row.iter().map(|&s| if kind == ScoreKind::Mass { s.max(0.0) } else { (s - max).exp() }).collect();
        let total: f64 = w.iter().sum();
        let forced = |i: usize| (config.force_sink && i == 0) || (config.force_diagonal && i == n - 1);
        let best = (0u32..1 << n)
            // At least one block: a row whose weights are all 0 still keeps its best.
            .filter(|&set| set != 0 && (0..n).all(|i| !forced(i) || set & (1 << i) != 0))
            .filter(|set| (0..n).filter(|i| set & (1 << i) != 0).map(|i| w[i]).sum::<f64>() >= p * total * (1.0 - 1e-12))
            .map(|set| set.count_ones() as usize)
            .min()
            .unwrap();
        assert_eq!(kept.len(), best, "row {row:?} p {p} {kind:?} kept {kept:?}");
    }
}
