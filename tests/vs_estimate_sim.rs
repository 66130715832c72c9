//! Vertical-slash estimation on the device (kernels/vs_estimate.cu, the PTX build/main.rs
//! embedded), run from the crate's own plan on the PTX simulator (memcheck always on),
//! against the host estimator (src/pattern/vs_estimate.rs, the reference):
//! - the index tensors equal the host's exactly wherever the host's scores leave a clear
//!   boundary (relative gap above 1e-3 between the last kept and the first dropped score),
//!   and on every row the kept set's score is within 1e-4 of the host's optimum: random
//!   shapes with seq not a multiple of 64, batch > 1, GQA 4:1 and 1:1, per query head and
//!   per kv group, seq_q != seq_k both ways, budgets above seq_k (clamped), f16 and bf16,
//!   every head_dim, padded and varlen (with the host's padding of short sequences);
//! - device estimate -> device conversion -> the vertical-slash attention kernel equals host
//!   estimate -> CPU vertical-slash reference;
//! - two runs are bit-identical, racecheck is clean, NaN and inf inputs give in-range sets;
//! - bad arguments are refused by name.
//!
//! Skips with the reason when the crate was built without a CUDA compiler.

mod attention_cases;
mod common;

use attention_cases::out_tolerance;
use common::Rng;
use ptx_sim::LaunchOptions;
use sparse_attn::pattern::estimate_varlen::estimate_vertical_slash_varlen;
use sparse_attn::pattern::vs_estimate::{estimate_vertical_slash_indices, estimate_vertical_slash_scores};
use sparse_attn::pattern::{VerticalSlash, VsEstimateConfig};
use sparse_attn::plan::vs_estimate::{workspace_len, VsEstimateBuffers};
use sparse_attn::plan::DeviceBuffer;
use sparse_attn::reference::{vertical_slash_attention, RefInputs, VarlenInputs};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_vs_estimate::SimVsEstimate;
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, Error, Source, Varlen};

fn backend() -> Option<SimBackend> {
    attention_cases::sim_backend_or_skip()
}

/// Scores a near-tie at the boundary may reorder: relative gap at most this.
const NEAR_TIE: f64 = 1e-3;
/// The kept set's score may fall short of the host's optimum by this much, relatively (f32
/// against f64 sums).
const SCORE_TOLERANCE: f64 = 1e-4;

/// How one index row compared.
#[derive(Default)]
struct Tally {
    rows: usize,
    exact_clear: usize,
}

/// One index row (`n` candidates with the host's unforced `scores`, `forced` of them
/// forced): the device row must equal the host row whenever the host's boundary is clear,
/// and otherwise keep a set of the same size, in order, whose score is within
/// SCORE_TOLERANCE of the host's. Entries at or past `n` are the padding, which must match.
#[allow(clippy::too_many_arguments)]
fn check_row(label: &str, scores: &[f64], n: usize, forced: usize, host: &[i32], dev: &[i32], descending: bool, tally: &mut Tally) {
    tally.rows += 1;
    let key = |j: usize| if j < forced { f64::INFINITY } else if scores[j].is_nan() { f64::NEG_INFINITY } else { scores[j] };
    let own = host.iter().filter(|&&x| (x as usize) < n).count();
    let clear = own == n || {
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
        let (a, b) = (key(order[own - 1]), key(order[own]));
        a == f64::INFINITY || (a - b) > NEAR_TIE * a.abs()
    };
    if clear {
        assert_eq!(dev, host, "{label}: the boundary is clear, so the sets must be equal");
        tally.exact_clear += 1;
        return;
    }
    // Same length, strictly ordered, the same padding, in-range own entries.
    assert_eq!(dev.len(), host.len(), "{label}");
    for w in dev.windows(2) {
        assert!(if descending { w[0] > w[1] } else { w[0] < w[1] }, "{label}: order {dev:?}");
    }
    let pad = |r: &[i32]| r.iter().copied().filter(|&x| x as usize >= n).collect::<Vec<_>>();
    assert_eq!(pad(dev), pad(host), "{label}: padding");
    assert!(dev.iter().all(|&x| x >= 0), "{label}: negative index");
    let kept = |r: &[i32]| -> (usize, f64) {
        let own: Vec<usize> = r.iter().map(|&x| x as usize).filter(|&x| x < n).collect();
        (own.iter().filter(|&&x| x < forced).count(), own.iter().filter(|&&x| x >= forced).map(|&x| scores[x]).sum())
    };
    let ((fd, sd), (fh, sh)) = (kept(dev), kept(host));
    assert_eq!(fd, fh, "{label}: forced entries kept");
    assert!(sd >= sh * (1.0 - SCORE_TOLERANCE), "{label}: kept score {sd} below the host's {sh}");
}

/// The host estimate, the device estimate, and every row compared (padded batch).
fn compare_padded<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, label: &str, shape: &AttnShape, config: &VsEstimateConfig, q: &[T], k: &[T], tally: &mut Tally) -> SimVsEstimate {
    let scale = 1.0 / (shape.head_dim() as f32).sqrt();
    let inputs = RefInputs::new(*shape, q, k, k).unwrap();
    let want = estimate_vertical_slash_indices(&inputs, config, scale as f64).unwrap();
    let scores = estimate_vertical_slash_scores(&inputs, config, scale as f64).unwrap();
    let got = sim.vs_estimate(shape, config, scale, q, k).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!((got.nnz_v, got.nnz_s), (want.nnz_v, want.nnz_s), "{label}");
    let n = shape.seq_k();
    for (t, (vertical, slash)) in scores.iter().enumerate() {
        let (v, s) = (t * want.nnz_v..(t + 1) * want.nnz_v, t * want.nnz_s..(t + 1) * want.nnz_s);
        let at = format!("{label} head {t}");
        check_row(&format!("{at} verticals"), vertical, n, config.forced_first_columns, &want.vertical_indexes[v.clone()], &got.vertical_indexes[v], false, tally);
        check_row(&format!("{at} slashes"), slash, n, config.forced_last_diagonals, &want.slash_indexes[s.clone()], &got.slash_indexes[s], true, tally);
    }
    got
}

fn random_config(rng: &mut Rng, seq_k: usize, per_kv_group: bool) -> VsEstimateConfig {
    // Budgets up to past seq_k (clamped), forcing from none to past the budget.
    VsEstimateConfig {
        last_q: [64, 16, 100][rng.below(3)],
        vertical_size: rng.range(1, seq_k + 20),
        slash_size: rng.range(1, seq_k + 20),
        forced_first_columns: [0, 3, 30][rng.below(3)],
        forced_last_diagonals: [0, 5, 100][rng.below(3)],
        per_kv_group,
    }
}

/// Unit-variance inputs scaled by `gain`: a larger gain sharpens the softmax, which spreads
/// the sums (fewer near-ties).
fn tensor<T: AttnDtype>(rng: &mut Rng, n: usize, gain: f64) -> Vec<T> {
    (0..n).map(|_| T::from_f32((gain * rng.normal()) as f32)).collect()
}

fn random_padded<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, cases: usize, seed: u64, head_dims: &[usize]) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for case in 0..cases {
        let (hkv, group) = (rng.range(1, 2), if case % 2 == 0 { 4 } else { 1 });
        let d = head_dims[case % head_dims.len()];
        let seq_q = rng.range(1, 230);
        let seq_k = if case % 3 == 0 { seq_q } else { rng.range(1, 260) };
        let shape = AttnShape::new(rng.range(1, 2), seq_q, seq_k, hkv * group, hkv, d).unwrap();
        let config = random_config(&mut rng, seq_k, case % 4 >= 2);
        let q = tensor::<T>(&mut rng, shape.q_len(), 1.5);
        let k = tensor::<T>(&mut rng, shape.kv_len(), 1.5);
        let label = format!("case {case} {:?} {shape:?} {config:?}", T::DTYPE);
        compare_padded(sim, &label, &shape, &config, &q, &k, &mut tally);
    }
    tally
}

fn assert_mostly_exact(tally: &Tally) {
    println!("{} of {} index rows compared exactly (clear boundary)", tally.exact_clear, tally.rows);
    // Near-ties are the exception at these gains: most rows are compared exactly.
    assert!(tally.exact_clear * 10 >= tally.rows * 7, "only {} of {} rows had a clear boundary", tally.exact_clear, tally.rows);
}

#[test]
fn equals_the_host_estimator_on_random_padded_shapes_bf16() {
    let Some(sim) = backend() else { return };
    let tally = random_padded::<half::bf16>(&sim, 40, 1, &[64, 128, 96, 256]);
    assert_mostly_exact(&tally);
}

#[test]
fn equals_the_host_estimator_on_random_padded_shapes_f16() {
    let Some(sim) = backend() else { return };
    let tally = random_padded::<half::f16>(&sim, 20, 2, &[128, 64]);
    assert_mostly_exact(&tally);
}

/// Random sequence lengths (some empty, some shorter than the budgets) packed by varlen.
fn random_varlen(rng: &mut Rng, batch: usize, max_q: usize, max_k: usize) -> Varlen {
    let (mut cq, mut ck) = (vec![0i32], vec![0i32]);
    for b in 0..batch {
        let lq = if b == 1 { 0 } else { rng.range(1, max_q) };
        let lk = if b == 2 { rng.range(1, 8) } else { rng.range(1, max_k) };
        cq.push(cq[b] + lq as i32);
        ck.push(ck[b] + lk as i32);
    }
    Varlen::new(cq, ck).unwrap()
}

#[test]
fn varlen_equals_the_host_estimator_per_sequence() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(3);
    let mut tally = Tally::default();
    for case in 0..12 {
        let (hkv, group, d) = (1 + case % 3 / 2, if case % 2 == 0 { 4 } else { 1 }, [64, 128, 96][case % 3]);
        let varlen = random_varlen(&mut rng, 4, 150, 200);
        let max = |f: &dyn Fn(usize) -> usize| (0..4).map(f).max().unwrap().max(1);
        let (max_q, max_k) = (max(&|b| varlen.seqlens(b).0), max(&|b| varlen.seqlens(b).1));
        let shape = AttnShape::new(4, max_q, max_k, hkv * group, hkv, d).unwrap();
        let config = random_config(&mut rng, max_k, case % 4 >= 2);
        let q = tensor::<half::bf16>(&mut rng, varlen.total_q() * shape.heads_q() * d, 1.5);
        let k = tensor::<half::bf16>(&mut rng, varlen.total_k() * hkv * d, 1.5);
        let scale = 1.0 / (d as f32).sqrt();
        let inputs = VarlenInputs::new(shape, varlen.clone(), &q, &k, &k).unwrap();
        let want = estimate_vertical_slash_varlen(&inputs, &config, scale as f64).unwrap();
        let got = sim.vs_estimate_varlen(&shape, &varlen, &config, scale, &q, &k).unwrap();
        let (nv, ns) = (got.nnz_v, got.nnz_s);
        for b in 0..4 {
            let (lq, lk) = varlen.seqlens(b);
            // The sequence alone, padded, for the host's scores.
            let (q0, k0) = (varlen.cu_seqlens_q()[b] as usize, varlen.cu_seqlens_k()[b] as usize);
            let hq = shape.heads_q();
            let n = if lq > 0 && lk > 0 { lk } else { 0 };
            let scores = if n > 0 {
                let one = AttnShape::new(1, lq, lk, hq, hkv, d).unwrap();
                let ks = &k[k0 * hkv * d..(k0 + lk) * hkv * d];
                let seq = RefInputs::new(one, &q[q0 * hq * d..(q0 + lq) * hq * d], ks, ks).unwrap();
                estimate_vertical_slash_scores(&seq, &config, scale as f64).unwrap()
            } else {
                vec![(Vec::new(), Vec::new()); hq]
            };
            for (h, (vertical, slash)) in scores.iter().enumerate() {
                let t = b * hq + h;
                let label = format!("varlen case {case} sequence {b} head {h} {config:?}");
                let (v, s) = (t * nv..(t + 1) * nv, t * ns..(t + 1) * ns);
                check_row(&label, vertical, n, config.forced_first_columns, &want.vertical_indexes()[v.clone()], &got.vertical_indexes[v], false, &mut tally);
                check_row(&label, slash, n, config.forced_last_diagonals, &want.slash_indexes()[s.clone()], &got.slash_indexes[s], true, &mut tally);
            }
        }
    }
    assert_mostly_exact(&tally);
}

#[test]
fn per_kv_group_writes_one_set_to_every_head_of_the_group() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(4);
    let shape = AttnShape::new(2, 150, 170, 8, 2, 64).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 40, slash_size: 30, forced_first_columns: 4, forced_last_diagonals: 4, per_kv_group: true };
    let q = tensor::<half::bf16>(&mut rng, shape.q_len(), 1.5);
    let k = tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.5);
    let mut tally = Tally::default();
    let got = compare_padded(&sim, "per kv group", &shape, &config, &q, &k, &mut tally);
    for t in 0..2 * 8 {
        let first = t / 4 * 4;
        assert_eq!(got.vertical_indexes[t * 40..(t + 1) * 40], got.vertical_indexes[first * 40..(first + 1) * 40]);
        assert_eq!(got.slash_indexes[t * 30..(t + 1) * 30], got.slash_indexes[first * 30..(first + 1) * 30]);
    }
}

#[test]
fn device_estimate_convert_attend_equals_host_estimate_and_cpu_reference() {
    let Some(sim) = backend() else { return };
    let shape = AttnShape::new(2, 190, 230, 4, 1, 64).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 24, slash_size: 12, forced_first_columns: 2, forced_last_diagonals: 3, per_kv_group: false };
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    // compare_padded and the attention use the default scale, 1 / sqrt(64).
    let scale = 0.125;
    // A seed whose estimate has a clear boundary everywhere, so both paths pick the same set.
    let mut rng = Rng::new(5);
    for attempt in 0..8 {
        let q = tensor::<half::bf16>(&mut rng, shape.q_len(), 1.5);
        let k = tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.5);
        let v = tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.0);
        let mut tally = Tally::default();
        let got = compare_padded(&sim, "end to end", &shape, &config, &q, &k, &mut tally);
        if tally.exact_clear < tally.rows {
            println!("attempt {attempt}: a near-tie, next inputs");
            continue;
        }
        // Device: estimate -> conversion kernel -> vertical-slash attention kernel.
        let vs = VerticalSlash::new(2, 4, got.nnz_v, got.nnz_s, got.vertical_indexes, got.slash_indexes).unwrap();
        let index = sim.vs_convert(&vs, &shape).unwrap();
        let out = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &Source::VerticalSlash(index)).unwrap();
        // Host: estimate -> CPU vertical-slash reference.
        let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
        let host_vs = sparse_attn::pattern::estimate_vertical_slash(&inputs, &config, scale).unwrap();
        let want = vertical_slash_attention(&inputs, &opts, &host_vs).unwrap();
        let tol = out_tolerance(DType::BF16);
        for (i, (o, e)) in out.out.iter().zip(&want.out).enumerate() {
            assert!((o.to_f64() - e).abs() <= tol, "element {i}: {o} vs {e}");
        }
        return;
    }
    panic!("no inputs without near-ties in 8 attempts");
}

#[test]
fn bit_identical_across_runs_and_racecheck_clean() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(6);
    let shape = AttnShape::new(1, 100, 140, 4, 1, 128).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 20, slash_size: 20, forced_first_columns: 1, forced_last_diagonals: 1, per_kv_group: true };
    let q = tensor::<half::f16>(&mut rng, shape.q_len(), 1.0);
    let k = tensor::<half::f16>(&mut rng, shape.kv_len(), 1.0);
    let one = |opts: &LaunchOptions| sim.vs_estimate_with(&shape, None, &config, 0.125, &q, &k, opts).unwrap();
    let a = one(&LaunchOptions::default());
    let b = one(&LaunchOptions { threads: 1, ..LaunchOptions::default() });
    let c = one(&LaunchOptions { racecheck: true, ..LaunchOptions::default() });
    for other in [&b, &c] {
        assert_eq!((&a.vertical_indexes, &a.slash_indexes), (&other.vertical_indexes, &other.slash_indexes));
    }
    // Varlen, per query head, with an empty sequence and one shorter than the budgets.
    let varlen = Varlen::new(vec![0, 70, 70, 100], vec![0, 90, 130, 136]).unwrap();
    let shape = AttnShape::new(3, 70, 90, 4, 1, 64).unwrap();
    let config = VsEstimateConfig { per_kv_group: false, ..config };
    let q = tensor::<half::bf16>(&mut rng, varlen.total_q() * 4 * 64, 1.0);
    let k = tensor::<half::bf16>(&mut rng, varlen.total_k() * 64, 1.0);
    let one = |opts: &LaunchOptions| sim.vs_estimate_with(&shape, Some(&varlen), &config, 0.125, &q, &k, opts).unwrap();
    let (a, c) = (one(&LaunchOptions::default()), one(&LaunchOptions { racecheck: true, threads: 1, ..LaunchOptions::default() }));
    assert_eq!((&a.vertical_indexes, &a.slash_indexes), (&c.vertical_indexes, &c.slash_indexes));
}

/// Every row of `got` is a strictly ordered set of `nnz` in-range entries.
fn assert_in_range(got: &SimVsEstimate, seq_k: usize) {
    for (row, desc, nnz) in [(&got.vertical_indexes, false, got.nnz_v), (&got.slash_indexes, true, got.nnz_s)] {
        for r in row.chunks(nnz) {
            assert!(r.iter().all(|&x| x >= 0 && (x as usize) < seq_k), "{r:?}");
            assert!(r.windows(2).all(|w| if desc { w[0] > w[1] } else { w[0] < w[1] }), "{r:?}");
        }
    }
}

#[test]
fn nan_and_inf_inputs_give_defined_in_range_sets() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(7);
    let shape = AttnShape::new(1, 90, 120, 2, 1, 64).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 20, slash_size: 10, forced_first_columns: 2, forced_last_diagonals: 2, per_kv_group: false };
    let mut q = tensor::<half::bf16>(&mut rng, shape.q_len(), 1.0);
    let mut k = tensor::<half::bf16>(&mut rng, shape.kv_len(), 1.0);
    // A NaN key poisons every probe row that sees it: all their probabilities become NaN.
    k[50 * 64 + 3] = half::bf16::NAN;
    let got = sim.vs_estimate(&shape, &config, 0.125, &q, &k).unwrap();
    assert_in_range(&got, 120);
    // NaN sums rank last and ties go to the lower index: every column and distance is NaN
    // (each probe row sees key 50), so the forced ones and then the lowest are kept.
    let want_v: Vec<i32> = (0..20).collect();
    assert_eq!(got.vertical_indexes[..20], want_v[..]);
    let want_s: Vec<i32> = (0..10).rev().collect();
    assert_eq!(got.slash_indexes[..10], want_s[..]);
    // The host agrees on this defined set.
    let inputs = RefInputs::new(shape, &q, &k, &k).unwrap();
    let host = estimate_vertical_slash_indices(&inputs, &config, 0.125).unwrap();
    assert_eq!((&got.vertical_indexes, &got.slash_indexes), (&host.vertical_indexes, &host.slash_indexes));
    // Infinities in q (inf - inf = NaN in the softmax) stay in range too.
    q[(89 * 2) * 64] = half::bf16::INFINITY;
    q[(80 * 2 + 1) * 64 + 5] = half::bf16::NEG_INFINITY;
    k[50 * 64 + 3] = half::bf16::from_f32(0.5);
    let got = sim.vs_estimate(&shape, &config, 0.125, &q, &k).unwrap();
    assert_in_range(&got, 120);
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let Some(sim) = backend() else { return };
    let shape = AttnShape::new(1, 64, 64, 2, 1, 64).unwrap();
    let q = vec![half::bf16::ZERO; shape.q_len()];
    let k = vec![half::bf16::ZERO; shape.kv_len()];
    let good = VsEstimateConfig { last_q: 64, vertical_size: 8, slash_size: 8, forced_first_columns: 1, forced_last_diagonals: 1, per_kv_group: false };
    let name = |r: sparse_attn::Result<SimVsEstimate>| match r {
        Err(Error::InvalidParameter { name, .. }) => name.to_string(),
        Err(Error::BufferTooSmall { tensor, .. }) => tensor.to_string(),
        Err(Error::UnsupportedHeadDim { .. }) => "head_dim".into(),
        Err(Error::InvalidSoftmaxScale { .. }) => "softmax_scale".into(),
        Err(e) => format!("{e}"),
        Ok(_) => "accepted".into(),
    };
    for (field, config) in [
        ("last_q", VsEstimateConfig { last_q: 0, ..good }),
        ("vertical_size", VsEstimateConfig { vertical_size: 0, ..good }),
        ("slash_size", VsEstimateConfig { slash_size: 0, ..good }),
    ] {
        assert_eq!(name(sim.vs_estimate(&shape, &config, 0.125, &q, &k)), field);
    }
    // A budget above seq_k is clamped to it, as the host estimator does.
    let big = sim.vs_estimate(&shape, &VsEstimateConfig { vertical_size: 1000, slash_size: 1000, ..good }, 0.125, &q, &k).unwrap();
    assert_eq!((big.nnz_v, big.nnz_s), (64, 64));
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert_eq!(name(sim.vs_estimate(&shape, &good, scale, &q, &k)), "softmax_scale");
    }
    let odd = AttnShape::new(1, 64, 64, 2, 1, 80).unwrap();
    let (q80, k80) = (vec![half::bf16::ZERO; odd.q_len()], vec![half::bf16::ZERO; odd.kv_len()]);
    assert_eq!(name(sim.vs_estimate(&odd, &good, 0.125, &q80, &k80)), "head_dim");
    assert!(matches!(sim.vs_estimate(&shape, &good, 0.125, &q[1..], &k), Err(Error::InvalidStrides { tensor: "q", .. }) | Err(Error::BufferTooSmall { tensor: "q", .. })));

    // Buffers through the plan: a short workspace or output, overlapping outputs.
    let up = |n: usize| sim.alloc::<f32>(n).unwrap();
    let ws = workspace_len(&shape, &good).unwrap();
    let bufs = |workspace: DeviceBuffer, vertical: DeviceBuffer, slash: DeviceBuffer| VsEstimateBuffers {
        q: sim.upload(&q).unwrap(),
        k: sim.upload(&k).unwrap(),
        q_layout: shape.q_layout(),
        k_layout: shape.kv_layout(),
        varlen: None,
        workspace,
        vertical_indexes: vertical,
        slash_indexes: slash,
    };
    let plan = |b: &VsEstimateBuffers| sparse_attn::plan::vs_estimate::plan(&shape, DType::BF16, &good, 0.125, b);
    let err_name = |r: sparse_attn::Result<sparse_attn::plan::vs_estimate::VsEstimatePlan>| match r {
        Err(Error::InvalidParameter { name, .. }) => name.to_string(),
        Err(Error::BufferTooSmall { tensor, .. }) => tensor.to_string(),
        Err(e) => format!("{e}"),
        Ok(_) => "accepted".into(),
    };
    assert_eq!(err_name(plan(&bufs(up(ws), up(16), up(16)))), "accepted");
    assert_eq!(err_name(plan(&bufs(up(ws - 1), up(16), up(16)))), "workspace");
    assert_eq!(err_name(plan(&bufs(up(ws), up(15), up(16)))), "vertical_indexes");
    assert_eq!(err_name(plan(&bufs(up(ws), up(16), up(15)))), "slash_indexes");
    let w = up(ws + 1);
    assert_eq!(err_name(plan(&bufs(DeviceBuffer { addr: w.addr + 4, len: ws }, up(16), up(16)))), "workspace");
    let shared = up(16);
    assert_eq!(err_name(plan(&bufs(up(ws), shared, shared))), "slash_indexes");
}
