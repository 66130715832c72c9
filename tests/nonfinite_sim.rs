//! Non-finite inputs and extreme softmax scales on the PTX simulator, for every kernel:
//! what README.md ("Non-finite inputs and the softmax scale") documents, checked row by
//! row against the CPU reference, which follows the same rules for the keys a row attends.
//!
//! The problem: batch 2, 200 queries, 100 keys, causal (bottom-right, so rows 0..99 see no
//! key at all and row block 1 holds both rows that see no key and rows that do), GQA 2:1.
//! Batch 0, kv head 0 gets one poisoned row of V or K, or poisoned query rows; every K and
//! V row past seq_k (a 64-row gap the layout leaves after each batch's keys) holds the
//! poison too, and must never be read.
//!
//! Without a CUDA compiler the crate carries no PTX and these tests skip with the reason,
//! unless SPARSE_ATTN_REQUIRE_KERNELS=1 makes that a failure.

mod attention_cases;
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use attention_cases::{out_tolerance, problem, Case, LSE_TOLERANCE};
use ptx_sim::LaunchOptions;
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::pattern::{AShape, BlockSparse, TopkTokens, VerticalSlash, BLOCK_M, BLOCK_N};
use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::reference::{masked_attention, RefInputs, RefOutput};
use sparse_attn::sim::SimBackend;
use sparse_attn::source::Source;
use sparse_attn::{kernel_scale_range, plan, AttnDtype, AttnOptions, AttnShape, Bshd, DType, SparsePattern};

/// Key rows the K/V layout leaves after each batch's seq_k keys.
const GAP: usize = 64;

/// What is poisoned, in batch 0 and kv head 0 (query head 0 for `Q`), with `value`.
#[derive(Clone, Copy, Debug)]
enum Poison {
    /// Every element of V row `key`.
    V { key: usize, value: f32 },
    /// Every element of K row `key`.
    K { key: usize, value: f32 },
    /// Every element of query rows 70 (sees no key), 150 and 195 of query head 0.
    Q { value: f32 },
}

const Q_ROWS: [usize; 3] = [70, 150, 195];

impl Poison {
    fn value(self) -> f32 {
        match self {
            Poison::V { value, .. } | Poison::K { value, .. } | Poison::Q { value } => value,
        }
    }
}

/// The keys row block `m` of (batch `b`, query head `h`) loads, as `loaded(b, h, m)`.
type LoadedKeys = Box<dyn Fn(usize, usize, usize) -> BTreeSet<usize>>;

/// A pattern on the problem, and the keys each row block of each (batch, query head) loads
/// into its tiles: every row of the block runs every tile, seeing only its own keys in it.
/// `None` for top-k, which loads only the keys a row lists and sees.
struct Scenario {
    name: &'static str,
    shape: AttnShape,
    dtype: DType,
    pattern: Arc<dyn SparsePattern + Send + Sync>,
    loaded: Option<LoadedKeys>,
}

/// Keys below this are visible to at least one row of row block `m`; tiles starting at or
/// past it are never run.
fn block_limit(shape: &AttnShape, m: usize) -> usize {
    let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q()) - 1;
    shape.visible_keys(last_row, true)
}

/// The keys of the `width`-key tiles starting at `starts` that the prefill kernel runs for
/// row block `m` (starting below the block's limit; cut at seq_k).
fn tile_keys(shape: &AttnShape, m: usize, width: usize, starts: impl Iterator<Item = usize>) -> BTreeSet<usize> {
    let limit = block_limit(shape, m);
    starts.filter(|&s| s < limit).flat_map(|s| s..(s + width).min(shape.seq_k())).collect()
}

fn block_sparse_loaded(shape: AttnShape, bs: BlockSparse) -> LoadedKeys {
    Box::new(move |b, h, m| {
        let blocks = bs.blocks(b, bs.mask_head(&shape, h), m).unwrap();
        tile_keys(&shape, m, BLOCK_N, blocks.iter().map(|&n| n as usize * BLOCK_N))
    })
}

fn scenarios() -> Vec<Scenario> {
    let shape = AttnShape::new(2, 200, 100, 2, 1, 64).unwrap();
    let wide = AttnShape::new(2, 200, 100, 2, 1, 128).unwrap();
    let dense = |shape: AttnShape, dtype| Scenario {
        name: "dense",
        shape,
        dtype,
        pattern: Arc::new(sparse_attn::pattern::Dense),
        // The dense kernel's own key tile (128 keys at head_dim 64, as FlashAttention-2).
        loaded: Some(Box::new(move |_, _, m| {
            let width = sparse_attn::plan::prefill::key_tile(&sparse_attn::Source::<&[i32]>::Dense, shape.head_dim());
            tile_keys(&shape, m, width, (0..shape.seq_k()).step_by(width))
        })),
    };
    // Row block 2 lists only key block 1, which none of its rows 128..163 sees: rows with
    // no key in a block that runs the tile holding key 70.
    let lists: Vec<i32> = [[0, -1], [0, 1], [1, -1], [0, 1]].concat().repeat(2);
    let bs = BlockSparse::new(2, 1, 4, 2, [1, 2, 1, 2].repeat(2), lists).unwrap();
    let a_shape = AShape::new(1, 1).unwrap();
    let a_blocks = a_shape.to_block_sparse(&shape).unwrap();
    // One slash 60 keys off the diagonal: row block 1 gets no tile from it, so its keys
    // (10 among them) and key 70 in row block 2 come as gathered columns.
    let vs = VerticalSlash::new(2, 1, 3, 1, [5, 10, 70].repeat(2), vec![60; 2]).unwrap();
    let index = convert(&vs, &shape).unwrap();
    // Top-k rows list both poisoned keys (hidden from rows below 110 and 170) and two more.
    let k = 6;
    let mut indices = Vec::new();
    for _ in 0..2 {
        for i in 0..shape.seq_q() {
            let mut row: Vec<i32> = Vec::new();
            for key in [10, 70, (i * 7) % 100, (i * 13 + 5) % 100] {
                if !row.contains(&(key as i32)) {
                    row.push(key as i32);
                }
            }
            row.resize(k, -1);
            indices.extend(row);
        }
    }
    let topk = TopkTokens::new(2, shape.seq_q(), 1, k, indices).unwrap();
    vec![
        dense(shape, DType::BF16),
        dense(wide, DType::F16),
        Scenario { name: "block_sparse", shape, dtype: DType::BF16, pattern: Arc::new(bs.clone()), loaded: Some(block_sparse_loaded(shape, bs)) },
        Scenario { name: "a_shape", shape, dtype: DType::BF16, pattern: Arc::new(a_shape), loaded: Some(block_sparse_loaded(shape, a_blocks)) },
        Scenario {
            name: "vertical_slash",
            shape,
            dtype: DType::F16,
            pattern: Arc::new(vs),
            loaded: Some(Box::new(move |b, _, m| {
                let (tiles, columns) = index.row_block(b, 0, m).unwrap();
                let mut keys = tile_keys(&shape, m, BLOCK_N, tiles.iter().map(|&o| o as usize));
                keys.extend(columns.iter().map(|&c| c as usize));
                keys
            })),
        },
        Scenario { name: "topk", shape, dtype: DType::BF16, pattern: Arc::new(topk), loaded: None },
    ]
}

/// Uploads a K or V tensor `[batch, seq_k, heads_kv, d]` into a layout with GAP rows after
/// each batch's keys, filled with `gap`.
fn upload_kv<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, shape: &AttnShape, data: &[T], gap: T) -> (DeviceBuffer, Bshd) {
    let (hk, d) = (shape.heads_kv(), shape.head_dim());
    let layout = Bshd { batch: (shape.seq_k() + GAP) * hk * d, seq: hk * d, head: d };
    let mut buf = vec![gap; layout.batch * shape.batch()];
    let dense = shape.kv_layout();
    for b in 0..shape.batch() {
        for j in 0..shape.seq_k() {
            for h in 0..hk {
                let (src, dst) = (dense.offset(b, j, h), layout.offset(b, j, h));
                buf[dst..dst + d].copy_from_slice(&data[src..src + d]);
            }
        }
    }
    (sim.upload(&buf).unwrap(), layout)
}

/// Row counts per outcome, summed over a pattern's launches.
#[derive(Default, Debug)]
struct Tally {
    /// Rows that see no key, in a row block whose tiles hold the poisoned V row.
    empty_beside_poison: usize,
    /// Rows that see no key, elsewhere.
    empty: usize,
    /// Rows that attend a poisoned element.
    poisoned: usize,
    /// Rows that do not see the poisoned V row but run its tile (NaN, as FlashAttention-2).
    tile_neighbours: usize,
    /// Rows equal to the reference.
    matching: usize,
}

fn run<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, sc: &Scenario, poison: Poison, tally: &mut Tally) {
    let s = sc.shape;
    let label = format!("{} {} d{} {poison:?}", sc.name, sc.dtype.name(), s.head_dim());
    let case = Case { pattern: sc.pattern.clone(), ..Case::dense(s, true, sc.dtype, 17) };
    let mut p = problem::<T>(&case);
    let d = s.head_dim();
    let bad = T::from_f32(poison.value());
    match poison {
        Poison::V { key, .. } => p.v[s.kv_layout().offset(0, key, 0)..][..d].fill(bad),
        Poison::K { key, .. } => p.k[s.kv_layout().offset(0, key, 0)..][..d].fill(bad),
        Poison::Q { .. } => {
            for i in Q_ROWS {
                p.q[s.q_layout().offset(0, i, 0)..][..d].fill(bad);
            }
        }
    }
    let inputs = RefInputs::new(s, &p.q, &p.k, &p.v).unwrap();
    let expected: RefOutput = masked_attention(&inputs, &case.opts(), &p.mask).unwrap();

    let (k, k_layout) = upload_kv(sim, &s, &p.k, bad);
    let (v, v_layout) = upload_kv(sim, &s, &p.v, bad);
    let layouts = AttnLayouts { q: s.q_layout(), k: k_layout, v: v_layout, out: s.q_layout() };
    let bufs = AttnBuffers {
        q: sim.upload(&p.q).unwrap(),
        k,
        v,
        out: sim.alloc::<T>(s.q_len()).unwrap(),
        lse: Some(sim.alloc::<f32>(s.lse_len()).unwrap()),
        sinks: None,
        layouts,
    };
    let source = sc.pattern.source(&s).unwrap().try_map(|_, data| sim.upload(&data)).unwrap();
    let plan = plan::attention(&s, T::DTYPE, &case.opts(), &bufs, &source).unwrap();
    sim.launch(&plan, &LaunchOptions::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
    let out: Vec<f32> = sim.download::<T>(bufs.out).unwrap().iter().map(|x| x.to_f32()).collect();
    let lse: Vec<f32> = sim.download(bufs.lse.unwrap()).unwrap();

    let tol = out_tolerance(sc.dtype);
    for b in 0..s.batch() {
        for h in 0..s.heads_q() {
            for i in 0..s.seq_q() {
                let at = format!("{label}: b{b} h{h} row {i}");
                let off = s.q_layout().offset(b, i, h);
                let (got, want) = (&out[off..off + d], &expected.out[off..off + d]);
                let li = (b * s.heads_q() + h) * s.seq_q() + i;
                let (got_lse, want_lse) = (lse[li], expected.lse[li]);
                let keys: Vec<usize> = p.mask.row_keys(b, h, i).collect();
                let same_kv = b == 0 && s.kv_head(h) == 0;
                let lse_matches = || (got_lse as f64 - want_lse).abs() <= LSE_TOLERANCE;
                let out_matches = || got.iter().zip(want).all(|(&g, &w)| (g as f64 - w).abs() <= tol);
                if keys.is_empty() {
                    // Exactly 0 and -inf whatever the tiles held, in the kernel and the reference.
                    assert!(got.iter().all(|&x| x == 0.0) && got_lse == f32::NEG_INFINITY, "{at}: sees no key, got {got:?} lse {got_lse}");
                    assert!(want.iter().all(|&x| x == 0.0) && want_lse == f64::NEG_INFINITY, "{at}: reference");
                    let beside = match (poison, &sc.loaded) {
                        (Poison::V { key, .. }, Some(loaded)) => same_kv && loaded(b, h, i / BLOCK_M).contains(&key),
                        _ => false,
                    };
                    if beside {
                        tally.empty_beside_poison += 1;
                    } else {
                        tally.empty += 1;
                    }
                    continue;
                }
                match poison {
                    Poison::V { key, .. } if same_kv && keys.contains(&key) => {
                        // The row attends a NaN or inf value: non-finite output, in both;
                        // the LSE does not involve V.
                        assert!(got.iter().all(|x| !x.is_finite()), "{at}: attends the poisoned V row, got {got:?}");
                        assert!(want.iter().all(|x| !x.is_finite()), "{at}: reference");
                        assert!(lse_matches(), "{at}: lse {got_lse}, want {want_lse}");
                        tally.poisoned += 1;
                    }
                    Poison::V { key, .. } if same_kv && sc.loaded.as_ref().is_some_and(|l| l(b, h, i / BLOCK_M).contains(&key)) => {
                        // A masked key in one of the row's tiles: P = 0 times NaN or inf is
                        // NaN in P.V, as in FlashAttention-2. The reference never reads it.
                        assert!(got.iter().all(|x| x.is_nan()), "{at}: runs the poisoned tile without seeing the key, got {got:?}");
                        assert!(lse_matches(), "{at}: lse {got_lse}, want {want_lse}");
                        assert!(want.iter().all(|x| x.is_finite()), "{at}: reference");
                        tally.tile_neighbours += 1;
                    }
                    Poison::K { key, .. } if same_kv && keys.contains(&key) => {
                        // A NaN score (an inf in k against q's mixed signs is NaN too).
                        assert!(got.iter().all(|x| x.is_nan()) && got_lse.is_nan(), "{at}: attends the poisoned K row, got {got:?} lse {got_lse}");
                        assert!(want.iter().all(|x| x.is_nan()) && want_lse.is_nan(), "{at}: reference");
                        tally.poisoned += 1;
                    }
                    Poison::Q { .. } if b == 0 && h == 0 && Q_ROWS.contains(&i) => {
                        assert!(got.iter().all(|x| x.is_nan()) && got_lse.is_nan(), "{at}: a poisoned query row, got {got:?} lse {got_lse}");
                        assert!(want.iter().all(|x| x.is_nan()) && want_lse.is_nan(), "{at}: reference");
                        tally.poisoned += 1;
                    }
                    // Everything else, masked K rows included: the reference's numbers.
                    _ => {
                        assert!(out_matches() && lse_matches(), "{at}: got {got:?} lse {got_lse}, want {want:?} lse {want_lse}");
                        tally.matching += 1;
                    }
                }
            }
        }
    }
}

#[test]
fn non_finite_inputs_do_what_the_readme_says() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let poisons = [
        Poison::V { key: 10, value: f32::NAN },
        Poison::V { key: 10, value: f32::INFINITY },
        Poison::V { key: 70, value: f32::NAN },
        Poison::V { key: 70, value: f32::NEG_INFINITY },
        Poison::K { key: 10, value: f32::NAN },
        Poison::K { key: 70, value: f32::INFINITY },
        Poison::Q { value: f32::NAN },
    ];
    for sc in scenarios() {
        let mut tally = Tally::default();
        for &poison in &poisons {
            match sc.dtype {
                DType::BF16 => run::<half::bf16>(&sim, &sc, poison, &mut tally),
                DType::F16 => run::<half::f16>(&sim, &sc, poison, &mut tally),
            }
        }
        println!("{} d{}: {tally:?}", sc.name, sc.shape.head_dim());
        // Every outcome the README describes occurred.
        assert!(tally.empty > 0 && tally.poisoned > 0 && tally.matching > 0, "{}: {tally:?}", sc.name);
        if sc.loaded.is_some() {
            assert!(tally.empty_beside_poison > 0 && tally.tile_neighbours > 0, "{}: {tally:?}", sc.name);
        }
    }
}

#[test]
fn a_row_whose_every_score_is_minus_infinity_reads_as_one_with_no_key() {
    // q = (inf, 0, ...) against keys whose first element is negative: every score is -inf,
    // and V row 0 is NaN. The reference used to compute exp(-inf - -inf) = NaN; it now
    // agrees with the kernels (and FlashAttention-2's output): weight 0 for every key, so
    // the row reads as one with no key, output 0 and LSE -inf.
    let shape = AttnShape::new(1, 1, 3, 1, 1, 64).unwrap();
    let mut rng = common::Rng::new(5);
    let mut q = vec![0.0f32; 64];
    q[0] = f32::INFINITY;
    let mut k: Vec<f32> = (0..3 * 64).map(|_| rng.normal() as f32).collect();
    let mut v: Vec<f32> = (0..3 * 64).map(|_| rng.normal() as f32).collect();
    for j in 0..3 {
        k[j * 64] = -1.0 - j as f32;
    }
    v[..64].fill(f32::NAN);
    let cast = |x: &[f32]| x.iter().map(|&x| half::bf16::from_f32(x)).collect::<Vec<_>>();
    let (q, k, v) = (cast(&q), cast(&k), cast(&v));
    let opts = AttnOptions { return_lse: true, ..AttnOptions::default() };
    let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
    let r = sparse_attn::reference::dense_attention(&inputs, &opts).unwrap();
    assert_eq!((r.out, r.lse), (vec![0.0; 64], vec![f64::NEG_INFINITY]));
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let (out, lse) = launch_dense(&sim, &shape, &opts, &q, &k, &v);
    assert!(out.iter().all(|&x| x == 0.0) && lse == [f32::NEG_INFINITY], "{out:?} {lse:?}");
}

/// Runs dense attention on the simulator over contiguous tensors.
fn launch_dense<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, shape: &AttnShape, opts: &AttnOptions, q: &[T], k: &[T], v: &[T]) -> (Vec<f32>, Vec<f32>) {
    let bufs = AttnBuffers {
        q: sim.upload(q).unwrap(),
        k: sim.upload(k).unwrap(),
        v: sim.upload(v).unwrap(),
        out: sim.alloc::<T>(shape.q_len()).unwrap(),
        lse: opts.return_lse.then(|| sim.alloc::<f32>(shape.lse_len()).unwrap()),
        sinks: None,
        layouts: AttnLayouts::contiguous(shape),
    };
    let plan = plan::attention(shape, T::DTYPE, opts, &bufs, &Source::Dense).unwrap();
    sim.launch(&plan, &LaunchOptions::default()).unwrap();
    let out: Vec<T> = sim.download(bufs.out).unwrap();
    (out.iter().map(|x| x.to_f32()).collect(), bufs.lse.map(|l| sim.download(l).unwrap()).unwrap_or_default())
}

#[test]
fn the_extreme_accepted_scales_run() {
    // The smallest accepted scale keeps scale * log2(e) normal, so masked scores stay -inf
    // instead of -inf * 0 = NaN: the result is the reference's (a near-uniform softmax).
    // The largest one, on bf16 inputs small enough that the logits stay inside the range the
    // exp2 form computes (README, "Non-finite inputs and the softmax scale"), overflows
    // nothing: finite output and the reference's LSE (above 1e6 here).
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 70, 70, 1, 1, 128).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let (min, _) = kernel_scale_range(dtype, 128);
        let case = Case::dense(shape, true, dtype, 21);
        let opts = AttnOptions { softmax_scale: Some(min), ..case.opts() };
        let (out, lse, expected) = match dtype {
            DType::F16 => with_reference::<half::f16>(&sim, &case, &opts, 1.0),
            DType::BF16 => with_reference::<half::bf16>(&sim, &case, &opts, 1.0),
        };
        let err = out.iter().zip(&expected.out).map(|(&a, b)| (a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(err <= out_tolerance(dtype), "{dtype:?} scale {min:e}: max error {err}");
        assert!(lse.iter().zip(&expected.lse).all(|(&a, b)| (a as f64 - b).abs() <= LSE_TOLERANCE), "{dtype:?} scale {min:e}: LSE");
    }
    let (_, max) = kernel_scale_range(DType::BF16, 128);
    let case = Case::dense(shape, true, DType::BF16, 22);
    let opts = AttnOptions { softmax_scale: Some(max), ..case.opts() };
    let (out, lse, expected) = with_reference::<half::bf16>(&sim, &case, &opts, 1e-10);
    assert!(out.iter().all(|x| x.is_finite()), "scale {max:e}: non-finite output");
    for (&got, &want) in lse.iter().zip(&expected.lse) {
        assert!(want.abs() > 1e6 && ((got as f64 - want) / want).abs() < 1e-5, "scale {max:e}: LSE {got}, want {want}");
    }
}

/// Runs `case` (dense) with q and k multiplied by `qk_factor`, and its reference.
fn with_reference<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, case: &Case, opts: &AttnOptions, qk_factor: f32) -> (Vec<f32>, Vec<f32>, RefOutput) {
    let p = problem::<T>(case);
    let scaled = |x: &[T]| x.iter().map(|v| T::from_f32(v.to_f32() * qk_factor)).collect::<Vec<T>>();
    let (q, k) = (scaled(&p.q), scaled(&p.k));
    let inputs = RefInputs::new(case.shape, &q, &k, &p.v).unwrap();
    let expected = sparse_attn::reference::dense_attention(&inputs, opts).unwrap();
    let (out, lse) = launch_dense(sim, &case.shape, opts, &q, &k, &p.v);
    (out, lse, expected)
}
