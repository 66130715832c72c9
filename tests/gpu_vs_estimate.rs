//! Vertical-slash estimation on a real GPU, through cudarc, against the host estimator:
//! every index row whose host scores leave a clear boundary (relative gap above 1e-3) must
//! be equal. Skips with the reason when no GPU is usable (the usual case here);
//! tests/vs_estimate_sim.rs runs the same kernels on the simulator in full.

mod common;

use common::Rng;
use sparse_attn::cuda::{vs_estimate, VarlenTensors, VsEstimateInputs};
use sparse_attn::pattern::estimate_varlen::estimate_vertical_slash_varlen;
use sparse_attn::pattern::vs_estimate::{estimate_vertical_slash_indices, estimate_vertical_slash_scores};
use sparse_attn::pattern::VsEstimateConfig;
use sparse_attn::plan::vs_estimate::{workspace_len, VsEstimateDims};
use sparse_attn::reference::{RefInputs, VarlenInputs};
use sparse_attn::{AttnShape, Bshd, Varlen};

type T = half::bf16;

/// Whether the top `own` of `scores` (forced first, ties to the lower index) are clearly
/// above the rest.
fn clear(scores: &[f64], forced: usize, own: usize) -> bool {
    let key = |j: usize| if j < forced { f64::INFINITY } else { scores[j] };
    if own >= scores.len() {
        return true;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let (a, b) = (key(order[own - 1]), key(order[own]));
    a == f64::INFINITY || a - b > 1e-3 * a
}

fn tensor(rng: &mut Rng, n: usize) -> Vec<T> {
    (0..n).map(|_| T::from_f32((1.5 * rng.normal()) as f32)).collect()
}

#[test]
fn gpu_estimate_equals_host_estimate() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(31);
    for per_kv_group in [false, true] {
        let shape = AttnShape::new(2, 300, 333, 8, 2, 128).unwrap();
        let config = VsEstimateConfig { last_q: 64, vertical_size: 50, slash_size: 40, forced_first_columns: 4, forced_last_diagonals: 8, per_kv_group };
        let (q, k) = (tensor(&mut rng, shape.q_len()), tensor(&mut rng, shape.kv_len()));
        let dims = VsEstimateDims::new(&shape, &config).unwrap();
        let (dq, dk) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap());
        let mut workspace = stream.alloc_zeros::<f32>(workspace_len(&shape, &config).unwrap()).unwrap();
        let mut vertical = stream.alloc_zeros::<i32>(2 * 8 * dims.nnz_v).unwrap();
        let mut slash = stream.alloc_zeros::<i32>(2 * 8 * dims.nnz_s).unwrap();
        let inputs = VsEstimateInputs::<T, cudarc::driver::CudaSlice<i32>> { q: &dq, k: &dk, q_layout: shape.q_layout(), k_layout: shape.kv_layout(), varlen: None };
        vs_estimate(&stream, &shape, &config, 0.125, inputs, &mut workspace, &mut vertical, &mut slash).unwrap();
        let (got_v, got_s) = (stream.clone_dtoh(&vertical).unwrap(), stream.clone_dtoh(&slash).unwrap());
        let host = RefInputs::new(shape, &q, &k, &k).unwrap();
        let want = estimate_vertical_slash_indices(&host, &config, 0.125).unwrap();
        let scores = estimate_vertical_slash_scores(&host, &config, 0.125).unwrap();
        for (t, (v, s)) in scores.iter().enumerate() {
            let (rv, rs) = (t * dims.nnz_v..(t + 1) * dims.nnz_v, t * dims.nnz_s..(t + 1) * dims.nnz_s);
            if clear(v, 4, dims.nnz_v) {
                assert_eq!(got_v[rv.clone()], want.vertical_indexes[rv], "head {t} verticals");
            }
            if clear(s, 8, dims.nnz_s) {
                assert_eq!(got_s[rs.clone()], want.slash_indexes[rs], "head {t} slashes");
            }
        }
    }
}

#[test]
fn gpu_varlen_estimate_pads_like_the_host() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(32);
    // An empty sequence, one with fewer keys than the budgets, and two ordinary ones.
    let varlen = Varlen::new(vec![0, 100, 100, 130, 330], vec![0, 120, 180, 190, 400]).unwrap();
    let shape = AttnShape::new(4, 200, 210, 4, 1, 64).unwrap();
    // Budgets no larger than the forced ranges: no near-ties, only the per-sequence layout
    // and the padding rule.
    let config = VsEstimateConfig { last_q: 64, vertical_size: 20, slash_size: 16, forced_first_columns: 20, forced_last_diagonals: 16, per_kv_group: false };
    let (q, k) = (tensor(&mut rng, varlen.total_q() * 4 * 64), tensor(&mut rng, varlen.total_k() * 64));
    let dims = VsEstimateDims::new(&shape, &config).unwrap();
    let (dq, dk) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap());
    let (cu_q, cu_k) = (stream.clone_htod(varlen.cu_seqlens_q()).unwrap(), stream.clone_htod(varlen.cu_seqlens_k()).unwrap());
    let mut workspace = stream.alloc_zeros::<f32>(workspace_len(&shape, &config).unwrap()).unwrap();
    let mut vertical = stream.alloc_zeros::<i32>(4 * 4 * dims.nnz_v).unwrap();
    let mut slash = stream.alloc_zeros::<i32>(4 * 4 * dims.nnz_s).unwrap();
    let lens = VarlenTensors { cu_seqlens_q: &cu_q, cu_seqlens_k: &cu_k, total_q: varlen.total_q(), total_k: varlen.total_k(), host: Some(&varlen) };
    let inputs = VsEstimateInputs {
        q: &dq,
        k: &dk,
        q_layout: Bshd::contiguous(varlen.total_q(), 4, 64),
        k_layout: Bshd::contiguous(varlen.total_k(), 1, 64),
        varlen: Some(lens),
    };
    vs_estimate(&stream, &shape, &config, 0.125, inputs, &mut workspace, &mut vertical, &mut slash).unwrap();
    let host = VarlenInputs::new(shape, varlen.clone(), &q, &k, &k).unwrap();
    let want = estimate_vertical_slash_varlen(&host, &config, 0.125).unwrap();
    assert_eq!(stream.clone_dtoh(&vertical).unwrap(), want.vertical_indexes());
    assert_eq!(stream.clone_dtoh(&slash).unwrap(), want.slash_indexes());
}
