//! Shared helpers for integration tests: a seeded PRNG (no external crate) and random
//! problem generators.
#![allow(dead_code)]

use sparse_attn::reference::RefInputs;
use sparse_attn::{AttnDtype, AttnShape};

/// SplitMix64: small, fast, and good enough for test data. Seeded, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// `n` unit-variance values rounded to the storage type.
    pub fn tensor<T: AttnDtype>(&mut self, n: usize) -> Vec<T> {
        (0..n).map(|_| T::from_f32(self.normal() as f32)).collect()
    }
}

/// Random unit-variance q, k, v for `shape`, already widened for the reference.
pub fn random_inputs(rng: &mut Rng, shape: AttnShape) -> RefInputs {
    let q = rng.tensor::<half::bf16>(shape.q_len());
    let k = rng.tensor::<half::bf16>(shape.kv_len());
    let v = rng.tensor::<half::bf16>(shape.kv_len());
    RefInputs::new(shape, &q, &k, &v).expect("generated tensors have the shape's lengths")
}

/// A random shape whose sequence lengths are usually not multiples of 64, with GQA 1:1 or 4:1.
pub fn random_shape(rng: &mut Rng, max_seq: usize) -> AttnShape {
    let heads_kv = rng.range(1, 2);
    let group = if rng.chance(0.5) { 4 } else { 1 };
    let seq_q = rng.range(1, max_seq);
    let seq_k = if rng.chance(0.5) { seq_q } else { rng.range(1, max_seq) };
    let head_dim = if rng.chance(0.5) { 64 } else { 32 };
    AttnShape::new(rng.range(1, 2), seq_q, seq_k, heads_kv * group, heads_kv, head_dim).expect("valid random shape")
}

/// `n` distinct values in `0..bound`, ascending; half the picks land near 0 (sink columns
/// and near-diagonal slashes, which make the converter's windows touch, merge and grow).
pub fn distinct(rng: &mut Rng, n: usize, bound: usize) -> Vec<i32> {
    let mut set = std::collections::BTreeSet::new();
    while set.len() < n {
        let v = if rng.chance(0.5) { rng.below(bound) } else { rng.below(bound.min(3 * 64)) };
        set.insert(v as i32);
    }
    set.into_iter().collect()
}

/// A valid random vertical-slash descriptor for `shape` with `heads` descriptor heads and up
/// to `max_nnz` verticals and slashes per head; with `with_slash_zero`, every head has the
/// main diagonal (and so at least one slash).
pub fn random_vertical_slash(
    rng: &mut Rng,
    shape: &AttnShape,
    heads: usize,
    max_nnz: usize,
    with_slash_zero: bool,
) -> sparse_attn::pattern::VerticalSlash {
    let nnz_v = rng.range(0, shape.seq_k().min(max_nnz));
    let nnz_s = rng.range(usize::from(with_slash_zero), shape.seq_k().min(max_nnz));
    let (mut verticals, mut slashes) = (Vec::new(), Vec::new());
    for _ in 0..shape.batch() * heads {
        verticals.extend(distinct(rng, nnz_v, shape.seq_k()));
        let mut s = if with_slash_zero {
            let mut s: Vec<i32> = distinct(rng, nnz_s - 1, shape.seq_k() - 1).iter().map(|d| d + 1).collect();
            s.push(0);
            s
        } else {
            distinct(rng, nnz_s, shape.seq_k())
        };
        s.sort_unstable_by(|a, b| b.cmp(a));
        slashes.extend(s);
    }
    sparse_attn::pattern::VerticalSlash::new(shape.batch(), heads, nnz_v, nnz_s, verticals, slashes)
        .expect("valid random descriptor")
}

/// Whether `ctx` runs on the simulated driver (a smaller test matrix is enough there).
pub fn on_simulated_driver(ctx: &cudarc::driver::CudaContext) -> bool {
    ctx.name().is_ok_and(|n| n == "ptx-sim (simulated)")
}

/// The first device's context for the GPU tests, or `None` after printing why they skip.
///
/// `SPARSE_ATTN_DEVICE` chooses the driver (read here, by the tests, never by the library):
/// `cuda` a real GPU or a failure, `sim` the simulated driver (ptx-sim-driver), `auto` a
/// real GPU when one is usable and the simulator otherwise. Unset, a real GPU is used when
/// there is one and the tests skip otherwise.
pub fn gpu_or_skip() -> Option<std::sync::Arc<cudarc::driver::CudaContext>> {
    let choice = std::env::var("SPARSE_ATTN_DEVICE").ok().filter(|v| !v.is_empty());
    if let Some(choice) = choice {
        let parsed: ptx_sim_driver::DeviceChoice = choice.parse().unwrap_or_else(|e| panic!("SPARSE_ATTN_DEVICE: {e}"));
        let selected = ptx_sim_driver::select(parsed).unwrap_or_else(|e| panic!("SPARSE_ATTN_DEVICE={choice}: {e}"));
        println!("device: {selected}");
        return Some(cudarc::driver::CudaContext::new(0).unwrap_or_else(|e| panic!("SPARSE_ATTN_DEVICE={choice}: no context: {e}")));
    }
    match sparse_attn::cuda::gpu_context(0) {
        Ok(ctx) => Some(ctx),
        Err(reason) => {
            println!("skipped: no GPU: {reason}");
            None
        }
    }
}
