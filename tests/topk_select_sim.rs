//! Token top-k selection (kernels/topk_select.cu, the PTX build/main.rs embedded), launched
//! from the crate's own plan on the PTX simulator (memcheck always on), equals the host
//! reference `select_topk_host` exactly: random rows of awkward lengths, causal and not,
//! seq_q != seq_k, many exact ties, NaN and infinities, f32 and bf16 scores. The output drives `TopkTokens`;
//! bad arguments are refused by name; racecheck is clean. Skips with the reason when the
//! crate was built without a CUDA compiler.

mod common;

use common::Rng;
use ptx_sim::LaunchOptions;
use sparse_attn::pattern::topk_select::{order_key, select_topk_host, Score, ScoreDtype, SelectDims};
use sparse_attn::pattern::TopkTokens;
use sparse_attn::plan::DeviceBuffer;
use sparse_attn::sim::SimBackend;
use sparse_attn::{AttnShape, Error, SparsePattern};

fn backend() -> Option<SimBackend> {
    if let Err(e) = sparse_attn::ptx::module_for("topk_select", 80) {
        println!("skipped: {e}");
        return None;
    }
    Some(SimBackend::new(80))
}

/// Scores of one of three kinds: distinct normals, a handful of values (so exact ties
/// everywhere), or normals sprinkled with NaN, +-inf and signed zeros.
fn scores(rng: &mut Rng, n: usize, kind: usize) -> Vec<f32> {
    const FEW: [f32; 6] = [-1.0, 0.0, 0.5, 2.0, f32::INFINITY, f32::NEG_INFINITY];
    const SPECIAL: [f32; 6] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MIN_POSITIVE / 4.0];
    (0..n)
        .map(|_| match kind {
            0 => rng.normal() as f32,
            1 if rng.chance(0.05) => f32::NAN,
            1 => FEW[rng.below(FEW.len())],
            _ if rng.chance(0.2) => SPECIAL[rng.below(SPECIAL.len())],
            _ => rng.normal() as f32,
        })
        .collect()
}

/// The kernel and the host reference on one problem of f32 scores; returns the indices.
fn check(sim: &SimBackend, rng: &mut Rng, dims: SelectDims, k: usize, causal: bool, kind: usize) -> Vec<i32> {
    let rows = dims.batch * dims.seq_q * dims.heads;
    let s = scores(rng, rows * dims.seq_k, kind);
    check_scores(sim, &s, dims, k, causal, kind)
}

/// The kernel and the host reference on the scores `s`; returns the indices.
fn check_scores<T: Score + ptx_sim::Element>(sim: &SimBackend, s: &[T], dims: SelectDims, k: usize, causal: bool, kind: usize) -> Vec<i32> {
    let want = select_topk_host(s, &dims, k, causal).unwrap();
    let got = sim.topk_select(s, &dims, k, causal).unwrap();
    assert_eq!(got, want, "{dims:?} k {k} causal {causal} kind {kind} dtype {:?}", T::DTYPE);
    // The output is a valid top-k index tensor for attention over the same keys.
    let shape = AttnShape::new(dims.batch, dims.seq_q, dims.seq_k, dims.heads, dims.heads, 64).unwrap();
    let tokens = TopkTokens::new(dims.batch, dims.seq_q, dims.heads, k, got.clone()).unwrap();
    tokens.validate(&shape).unwrap();
    got
}

#[test]
fn kernel_equals_host_reference() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(7);
    // (batch, seq_q, heads, seq_k, k): short rows with several rows each, long ones alone
    // or in pairs.
    let cases = [
        (2, 3, 2, 1, 1),
        (1, 5, 3, 63, 1),
        (2, 4, 1, 63, 7),
        (1, 3, 2, 63, 63),
        (2, 2, 2, 1000, 7),
        (1, 3, 1, 1000, 64),
        (1, 2, 1, 4097, 64),
        (1, 1, 2, 4097, 2048),
        (1, 2, 1, 70000, 2048),
        (1, 1, 1, 1 << 20, 2048),
    ];
    for (n, &(batch, seq_q, heads, seq_k, k)) in cases.iter().enumerate() {
        let dims = SelectDims { batch, seq_q, heads, seq_k };
        for kind in 0..3 {
            // Long rows once each, alternating the mask; the rest both ways.
            let masks: &[bool] = if seq_k >= 4097 { if (n + kind) % 2 == 0 { &[true] } else { &[false] } } else { &[false, true] };
            for &causal in masks {
                // One 2^20-key row, with ties, NaN and infinities: the long-row limit.
                if seq_k > 70000 && kind != 1 {
                    continue;
                }
                check(&sim, &mut rng, dims, k, causal, kind);
            }
        }
    }
}

#[test]
fn bf16_kernel_equals_host_reference() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(13);
    // bf16 rounding turns near values into exact ties on top of the generators' own.
    for (n, &(batch, seq_q, heads, seq_k, k)) in [(2, 3, 2, 63, 7), (1, 3, 1, 1000, 64), (1, 1, 2, 4097, 2048), (1, 1, 1, 70000, 64)].iter().enumerate() {
        let dims = SelectDims { batch, seq_q, heads, seq_k };
        for kind in 0..3 {
            let s: Vec<half::bf16> = scores(&mut rng, batch * seq_q * heads * seq_k, kind).into_iter().map(half::bf16::from_f32).collect();
            check_scores(&sim, &s, dims, k, (n + kind) % 2 == 1, kind);
        }
    }
    // A bf16 NaN ranks below -inf, as in f32.
    let row = [f32::NAN, f32::NEG_INFINITY, -1.0, f32::NAN].map(half::bf16::from_f32);
    let dims = SelectDims { batch: 1, seq_q: 1, heads: 1, seq_k: 4 };
    assert_eq!(sim.topk_select(&row, &dims, 2, false).unwrap(), vec![1, 2]);
    assert_eq!(select_topk_host(&row, &dims, 2, false).unwrap(), vec![1, 2]);
}

#[test]
fn causal_rows_pad_with_minus_one_and_respect_the_limit() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(11);
    // seq_q > seq_k: the first rows see no key or a few; seq_q < seq_k: every row sees many.
    for (seq_q, seq_k, k) in [(40, 20, 7), (10, 50, 45)] {
        let dims = SelectDims { batch: 2, seq_q, heads: 2, seq_k };
        let got = check(&sim, &mut rng, dims, k, true, 2);
        for (row, slots) in got.chunks_exact(k).enumerate() {
            let i = (row / dims.heads) % seq_q;
            let candidates = dims.candidates(i, true);
            let selected: Vec<i32> = slots.iter().copied().filter(|&j| j >= 0).collect();
            assert_eq!(selected.len(), candidates.min(k), "row {row}");
            assert!(slots[selected.len()..].iter().all(|&j| j == -1), "row {row}: padding at the end");
            assert!(selected.windows(2).all(|w| w[0] < w[1]), "row {row}: ascending");
            assert!(selected.iter().all(|&j| (j as usize) < candidates), "row {row}: past the causal limit");
        }
    }
}

#[test]
fn order_ties_and_nan() {
    let Some(sim) = backend() else { return };
    // NaN below -inf below every number; -0.0 below +0.0; ties to the lower key.
    assert!(order_key(f32::NAN) < order_key(f32::NEG_INFINITY));
    assert!(order_key(f32::NEG_INFINITY) < order_key(f32::MIN));
    assert!(order_key(-0.0) < order_key(0.0));
    let dims = SelectDims { batch: 1, seq_q: 1, heads: 1, seq_k: 8 };
    let row = [f32::NAN, 1.0, f32::NEG_INFINITY, 1.0, f32::NAN, 1.0, -5.0, f32::NAN];
    for (k, want) in [(1, vec![1]), (2, vec![1, 3]), (4, vec![1, 3, 5, 6]), (5, vec![1, 2, 3, 5, 6]), (6, vec![0, 1, 2, 3, 5, 6])] {
        assert_eq!(select_topk_host(&row, &dims, k, false).unwrap(), want, "host, k {k}");
        assert_eq!(sim.topk_select(&row, &dims, k, false).unwrap(), want, "kernel, k {k}");
    }
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let dims = SelectDims { batch: 1, seq_q: 2, heads: 1, seq_k: 10 };
    let buf = |len: usize| DeviceBuffer { addr: 1 << 20, len };
    let plan = |dims: &SelectDims, k: usize, s: usize, o: usize| sparse_attn::plan::topk_select::plan(dims, k, false, ScoreDtype::F32, buf(s), buf(o));
    assert!(plan(&dims, 3, 20, 6).is_ok());
    assert!(matches!(plan(&dims, 0, 20, 6), Err(Error::ZeroDimension { dim: "k" })));
    assert!(matches!(plan(&dims, 11, 20, 22), Err(Error::InvalidParameter { name: "k", .. })));
    assert!(matches!(plan(&dims, 3, 19, 6), Err(Error::BufferTooSmall { tensor: "scores", needed: 20, len: 19 })));
    assert!(matches!(plan(&dims, 3, 20, 5), Err(Error::BufferTooSmall { tensor: "indices", needed: 6, len: 5 })));
    for (name, bad) in [
        ("batch", SelectDims { batch: 0, ..dims }),
        ("seq_q", SelectDims { seq_q: 0, ..dims }),
        ("heads", SelectDims { heads: 0, ..dims }),
        ("seq_k", SelectDims { seq_k: 0, ..dims }),
    ] {
        assert!(matches!(plan(&bad, 1, 20, 6), Err(Error::ZeroDimension { dim }) if dim == name), "{name}");
    }
    // More rows than one launch's grid holds: each dimension fits i32, their product does not.
    let huge = SelectDims { batch: 1 << 20, seq_q: 1 << 12, heads: 1, seq_k: 1 };
    assert!(matches!(plan(&huge, 1, usize::MAX, usize::MAX), Err(Error::DimensionTooLarge { dim: "rows", .. })));
    // Rows above 65535 go on grid.x.
    let many = SelectDims { batch: 3, seq_q: 40_000, heads: 1, seq_k: 1 };
    assert_eq!(plan(&many, 1, 120_000, 120_000).unwrap().grid(), [120_000, 1, 1]);
    // A misaligned address, and the host entry's length check.
    let at = |addr: u64, dtype| sparse_attn::plan::topk_select::plan(&dims, 3, false, dtype, DeviceBuffer { addr, len: 20 }, buf(6));
    assert!(matches!(at((1 << 20) + 2, ScoreDtype::F32), Err(Error::InvalidParameter { name: "scores", .. })));
    assert!(at((1 << 20) + 2, ScoreDtype::BF16).is_ok(), "bf16 needs 2-byte alignment only");
    assert!(matches!(at((1 << 20) + 1, ScoreDtype::BF16), Err(Error::InvalidParameter { name: "scores", .. })));
    assert!(matches!(at(0, ScoreDtype::BF16), Err(Error::InvalidParameter { name: "scores", .. })));
    let short = sparse_attn::plan::topk_select::plan(&dims, 3, false, ScoreDtype::BF16, DeviceBuffer { addr: 1 << 20, len: 19 }, buf(6));
    assert!(matches!(short, Err(Error::BufferTooSmall { tensor: "scores", needed: 20, len: 19 })));
    assert!(matches!(select_topk_host(&[0.0f32; 19], &dims, 3, false), Err(Error::WrongLength { tensor: "scores", .. })));
    if let Some(sim) = backend() {
        assert!(matches!(sim.topk_select(&[0.0f32; 21], &dims, 3, false), Err(Error::WrongLength { tensor: "scores", .. })));
        assert!(matches!(sim.topk_select(&[0.0f32; 20], &dims, 11, false), Err(Error::InvalidParameter { name: "k", .. })));
    }
}

#[test]
fn racecheck_is_clean() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(5);
    let dims = SelectDims { batch: 1, seq_q: 2, heads: 2, seq_k: 700 };
    let s = scores(&mut rng, 4 * 700, 1);
    let indices = sim.alloc::<i32>(4 * 64).unwrap();
    let plan = sparse_attn::plan::topk_select::plan(&dims, 64, true, ScoreDtype::F32, sim.upload(&s).unwrap(), indices).unwrap();
    sim.launch(&plan, &LaunchOptions { racecheck: true, ..Default::default() }).unwrap();
    assert_eq!(sim.download::<i32>(indices).unwrap(), select_topk_host(&s, &dims, 64, true).unwrap());
}
