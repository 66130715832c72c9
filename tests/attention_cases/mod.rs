//! The prefill-attention test matrix shared by every backend (tests/gpu_attention.rs on a
//! GPU, tests/attention_sim.rs on the PTX simulator): the cases, their inputs, the CPU
//! reference they are held to, and the tolerances.
//!
//! Expected values come from `reference::masked_attention` on the descriptor's own
//! `element_mask`, in f64 on the exact f16/bf16 inputs the kernel reads, never from the
//! code under test.
#![allow(dead_code)]

use std::sync::Arc;

use sparse_attn::pattern::{AShape, BlockSparse, Dense, TopkTokens, VerticalSlash};
use sparse_attn::reference::{masked_attention, RefInputs, RefOutput, VarlenOutput};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, ElementMask, SparsePattern};

/// Seeded per case, so a failure names a reproducible case.
pub use crate::common::Rng;

/// One launch to check: a problem and the descriptor whose source the kernel runs with.
#[derive(Clone)]
pub struct Case {
    pub shape: AttnShape,
    pub causal: bool,
    pub dtype: DType,
    /// The case's family in labels and filters: `dense`, `block_sparse`, `a_shape`,
    /// `vertical_slash` or `topk`.
    pub name: &'static str,
    /// Gives the launch its source and the reference its element mask.
    pub pattern: Arc<dyn SparsePattern + Send + Sync>,
    pub seed: u64,
}

impl Case {
    pub fn new(shape: AttnShape, causal: bool, dtype: DType, seed: u64, name: &'static str, pattern: impl SparsePattern + Send + Sync + 'static) -> Self {
        Self { shape, causal, dtype, name, pattern: Arc::new(pattern), seed }
    }

    pub fn dense(shape: AttnShape, causal: bool, dtype: DType, seed: u64) -> Self {
        Self::new(shape, causal, dtype, seed, "dense", Dense)
    }

    pub fn opts(&self) -> AttnOptions {
        AttnOptions { causal: self.causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() }
    }

    pub fn label(&self) -> String {
        let s = self.shape;
        format!(
            "{} {} b{} sq{} sk{} hq{} hkv{} d{} causal={} seed={}",
            self.name,
            self.dtype.name(),
            s.batch(),
            s.seq_q(),
            s.seq_k(),
            s.heads_q(),
            s.heads_kv(),
            s.head_dim(),
            self.causal,
            self.seed
        )
    }

    /// The exact element set the kernel must attend.
    pub fn element_mask(&self) -> ElementMask {
        self.pattern.element_mask(&self.shape, self.causal).unwrap()
    }
}

/// Max abs output error allowed, per dtype, on unit-variance inputs. The output is a convex
/// combination of V rows, |o| < 4 in practice, and the kernel rounds twice: P to the input
/// type before P·V (relative 2^-9 for bf16, 2^-12 for f16, per term, largely averaging
/// out over the keys) and the output itself (half an ulp: 2^-9 relative for bf16, about
/// 4e-3 at |o| = 2; 2^-12 for f16). The f32 accumulation error is orders smaller. So bf16
/// sits a little under 1e-2 in the worst row and f16 well under 5e-3.
pub fn out_tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 1e-2,
        DType::F16 => 5e-3,
    }
}

/// The bound for one output element whose exact value is `want`: [`out_tolerance`], or one
/// ulp of `want` in the dtype where that is larger. The absolute bound above assumes
/// |o| < 2; from |o| = 2 on, a bf16 ulp is 2^-6 (1.6e-2): the f32 result, already moved by
/// P's rounding (about 2^-9 |o|, under half an ulp), is then rounded to the nearest bf16, so
/// the stored value can sit one ulp from the exact one (seen: 2.28125 for 2.2928, whose
/// nearest bf16 is 2.296875).
pub fn out_tolerance_at(dtype: DType, want: f64) -> f64 {
    let mantissa_bits = match dtype {
        DType::BF16 => 7,
        DType::F16 => 10,
    };
    let ulp = if want == 0.0 { 0.0 } else { 2f64.powi(want.abs().log2().floor() as i32 - mantissa_bits) };
    out_tolerance(dtype).max(ulp)
}

/// LSE is computed from f32 scores (no input rounding beyond what the reference sees too)
/// and ex2/lg2.approx (relative error about 2^-22): 1e-3 leaves orders of margin while a
/// wrong scale, a missed key or a wrong max would move it by far more.
pub const LSE_TOLERANCE: f64 = 1e-3;

/// Inputs of one case in the storage type, and the reference result.
pub struct Problem<T> {
    pub q: Vec<T>,
    pub k: Vec<T>,
    pub v: Vec<T>,
    pub expected: RefOutput,
    pub mask: ElementMask,
}

pub fn problem<T: AttnDtype>(case: &Case) -> Problem<T> {
    let mut rng = Rng::new(case.seed);
    let s = case.shape;
    let mut tensor = |n: usize| (0..n).map(|_| T::from_f32(rng.normal() as f32)).collect::<Vec<T>>();
    let (q, k, v) = (tensor(s.q_len()), tensor(s.kv_len()), tensor(s.kv_len()));
    let inputs = RefInputs::new(s, &q, &k, &v).unwrap();
    let mask = case.element_mask();
    let expected = masked_attention(&inputs, &case.opts(), &mask).unwrap();
    Problem { q, k, v, expected, mask }
}

/// Compares a backend's output (widened to f32, contiguous BSHD) and LSE with the
/// reference; the message names the case and the worst element.
pub fn check(case: &Case, expected: &RefOutput, out: &[f32], lse: &[f32]) {
    let label = case.label();
    assert_eq!(out.len(), expected.out.len(), "{label}: output length");
    assert_eq!(lse.len(), expected.lse.len(), "{label}: lse length");
    // The worst element relative to its own bound (out_tolerance_at).
    let (mut worst, mut at) = (0.0f64, 0usize);
    for (i, (&o, &e)) in out.iter().zip(&expected.out).enumerate() {
        assert!(o.is_finite(), "{label}: output element {i} is {o}");
        let err = (o as f64 - e).abs() / out_tolerance_at(case.dtype, e);
        if err > worst {
            (worst, at) = (err, i);
        }
    }
    let tol = out_tolerance_at(case.dtype, expected.out[at]);
    let err = (out[at] as f64 - expected.out[at]).abs();
    assert!(worst <= 1.0, "{label}: output error {err:.3e} at element {at} (got {}, want {}) exceeds {tol:e}", out[at], expected.out[at]);
    for (i, (&l, &e)) in lse.iter().zip(&expected.lse).enumerate() {
        assert!(!l.is_nan(), "{label}: lse {i} is NaN");
        if e == f64::NEG_INFINITY {
            assert_eq!(l, f32::NEG_INFINITY, "{label}: lse {i} of a row that sees no key");
        } else {
            assert!((l as f64 - e).abs() <= LSE_TOLERANCE, "{label}: lse {i} = {l}, want {e}");
        }
    }
}

/// A random block mask `[B, H, MB, NB]` at `density`, as a descriptor.
pub fn random_block_sparse(rng: &mut Rng, shape: &AttnShape, heads: usize, density: f64) -> BlockSparse {
    let (mb, nb) = (shape.seq_q().div_ceil(64), shape.seq_k().div_ceil(64));
    let mask: Vec<bool> = (0..shape.batch() * heads * mb * nb).map(|_| rng.unit() < density).collect();
    BlockSparse::from_block_mask(shape.batch(), heads, mb, nb, &mask).unwrap()
}

/// `n` distinct values in `0..bound`, ascending.
fn distinct(rng: &mut Rng, n: usize, bound: usize) -> Vec<i32> {
    let mut set = std::collections::BTreeSet::new();
    while set.len() < n.min(bound) {
        set.insert(rng.below(bound) as i32);
    }
    set.into_iter().collect()
}

/// A random vertical-slash descriptor: about `density * seq_k` verticals and slashes per
/// head (at least one of each), slash 0 present on even heads only, so both the usual
/// and the "no diagonal" conversions occur.
pub fn random_vertical_slash(rng: &mut Rng, shape: &AttnShape, heads: usize, density: f64) -> VerticalSlash {
    let k = shape.seq_k();
    let nnz_v = ((k as f64 * density) as usize).clamp(1, k);
    let nnz_s = ((k as f64 * density / 2.0) as usize).clamp(1, k);
    let (mut verticals, mut slashes) = (Vec::new(), Vec::new());
    for bh in 0..shape.batch() * heads {
        verticals.extend(distinct(rng, nnz_v, k));
        let mut s = distinct(rng, nnz_s, k);
        if bh % 2 == 0 {
            s[0] = 0; // ascending and distinct, so the smallest can become 0 without a repeat
        }
        s.sort_unstable_by(|a, b| b.cmp(a));
        slashes.extend(s);
    }
    VerticalSlash::new(shape.batch(), heads, nnz_v, nnz_s, verticals, slashes).unwrap()
}

/// Random top-k indices: each row lists about `density * seq_k` distinct keys (at least
/// one) in random order, then pads with -1; under causal masking some listed keys lie past
/// the row's diagonal, which the kernel must skip like -1.
pub fn random_topk(rng: &mut Rng, shape: &AttnShape, density: f64) -> TopkTokens {
    let k = ((shape.seq_k() as f64 * density) as usize).clamp(1, shape.seq_k()) + 3;
    let mut indices = Vec::with_capacity(shape.batch() * shape.seq_q() * shape.heads_kv() * k);
    for _ in 0..shape.batch() * shape.seq_q() * shape.heads_kv() {
        let mut row = distinct(rng, k - 3, shape.seq_k());
        for slot in (1..row.len()).rev() {
            row.swap(slot, rng.below(slot + 1));
        }
        row.resize(k, -1);
        indices.extend(row);
    }
    TopkTokens::new(shape.batch(), shape.seq_q(), shape.heads_kv(), k, indices).unwrap()
}

/// (seq_q, seq_k) pairs: tiny, one short of and one past a tile, several tiles, and
/// seq_q != seq_k both ways (bottom-right causal then leaves whole rows or tiles empty).
pub const SEQS: &[(usize, usize)] = &[(1, 1), (63, 63), (65, 65), (257, 257), (63, 200), (130, 65), (1, 257)];

/// Top-k cases whose GQA group exceeds one warp's 16 rows (two and three head chunks,
/// the last one partial).
pub fn wide_group_topk_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, (heads_q, heads_kv)) in [(32, 1), (40, 2)].into_iter().enumerate() {
        for dtype in [DType::BF16, DType::F16] {
            let seed = 9000 + i as u64 * 2 + (dtype == DType::F16) as u64;
            let shape = AttnShape::new(1, 70, 90, heads_q, heads_kv, 64).unwrap();
            let mut rng = Rng::new(seed);
            cases.push(Case::new(shape, i == 0, dtype, seed, "topk", random_topk(&mut rng, &shape, 0.3)));
        }
    }
    cases
}

/// Every combination of pattern x dtype x head_dim x causal x GQA ratio (1 and 4) x
/// shape, with block densities cycling through 0.1, 0.5 and 0.9. Vertical-slash is
/// causal-only. `every` thins the list (keeps case i when i % every == 0) for slow
/// backends; 1 keeps all. Head dims 64 and 128 come first, with the seeds they have always
/// had; head dims added later follow with seeds of their own, so adding one never changes
/// an existing case.
pub fn matrix(every: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut seed = 1u64;
    let later: Vec<usize> = sparse_attn::params::HEAD_DIMS.iter().copied().filter(|d| ![64, 128].contains(d)).collect();
    for head_dims in [vec![64, 128], later] {
        for pattern in 0..5 {
            for dtype in [DType::BF16, DType::F16] {
                for &head_dim in &head_dims {
                    for causal in [false, true] {
                        for (heads_q, heads_kv) in [(2, 2), (4, 1)] {
                            for (i, &(seq_q, seq_k)) in SEQS.iter().enumerate() {
                                if pattern == 3 && !causal {
                                    continue;
                                }
                                seed += 1;
                                cases.push(matrix_case(pattern, dtype, causal, seed, AttnShape::new(1 + (i % 2), seq_q, seq_k, heads_q, heads_kv, head_dim).unwrap()));
                            }
                        }
                    }
                }
            }
        }
    }
    cases.into_iter().enumerate().filter(|(i, _)| i % every.max(1) == 0).map(|(_, c)| c).collect()
}

/// One case of the matrix: pattern 0..5 = dense, block-sparse, A-shape, vertical-slash,
/// top-k.
fn matrix_case(pattern: usize, dtype: DType, causal: bool, seed: u64, shape: AttnShape) -> Case {
    let mut rng = Rng::new(seed ^ 0xA5A5);
    let density = [0.1, 0.5, 0.9][(seed % 3) as usize];
    // Descriptor heads: per query head or per GQA group, alternating.
    let heads = if seed.is_multiple_of(2) { shape.heads_q() } else { shape.heads_kv() };
    let new = |name, pattern| Case { name, pattern, ..Case::dense(shape, causal, dtype, seed) };
    match pattern {
        0 => Case::dense(shape, causal, dtype, seed),
        1 => new("block_sparse", Arc::new(random_block_sparse(&mut rng, &shape, heads, density))),
        2 => new("a_shape", Arc::new(AShape::new(seed as usize % 2, 1 + seed as usize % 2).unwrap())),
        3 => new("vertical_slash", Arc::new(random_vertical_slash(&mut rng, &shape, heads, density / 4.0))),
        _ => new("topk", Arc::new(random_topk(&mut rng, &shape, density / 3.0))),
    }
}

/// The simulator backend, or `None` (with the reason printed) when the crate was built
/// without a CUDA compiler; with `SPARSE_ATTN_REQUIRE_KERNELS=1` that is a failure instead.
#[cfg(feature = "sim")]
pub fn sim_backend_or_skip() -> Option<sparse_attn::sim::SimBackend> {
    if sparse_attn::ptx::resource_report().is_none() {
        assert!(std::env::var("SPARSE_ATTN_REQUIRE_KERNELS").map_or(true, |v| v != "1"), "SPARSE_ATTN_REQUIRE_KERNELS=1 but no kernels");
        eprintln!("skipped: the crate was built without a CUDA compiler, so there is no PTX to simulate");
        return None;
    }
    Some(sparse_attn::sim::SimBackend::new(80))
}

/// Holds a varlen run (output widened to f32, LSE) to the reference within the matrix's
/// tolerances; a row that sees no key must have an LSE of -inf.
pub fn compare_varlen(at: &str, dtype: DType, want: &VarlenOutput, out: &[f32], lse: &[f32]) {
    assert_eq!(out.len(), want.out.len(), "{at}: output length");
    assert_eq!(lse.len(), want.lse.len(), "{at}: lse length");
    for (i, (&o, &e)) in out.iter().zip(&want.out).enumerate() {
        assert!((o as f64 - e).abs() <= out_tolerance_at(dtype, e), "{at}: output {i} = {o}, want {e}");
    }
    for (i, (&l, &e)) in lse.iter().zip(&want.lse).enumerate() {
        if e == f64::NEG_INFINITY {
            assert_eq!(l, f32::NEG_INFINITY, "{at}: lse {i} of a row that sees no key");
        } else {
            assert!((l as f64 - e).abs() <= LSE_TOLERANCE, "{at}: lse {i} = {l}, want {e}");
        }
    }
}
