//! Block selection on a real GPU through cudarc (`cuda::block_estimate`, `cuda::block_select`):
//! pooled, gate and XAttention scoring against the host estimator on rows without
//! near-ties, bit-identical reruns, and the longest selection row (64 KiB of shared memory,
//! the opt-in path). Skips with the reason when no GPU is usable; tests/block_select_sim.rs
//! runs the same kernels on the simulator.

mod common;

use common::Rng;
use cudarc::driver::CudaSlice;
use half::bf16;
use sparse_attn::cuda::{block_estimate, block_select, BlockScoreTensors, VarlenTensors};
use sparse_attn::pattern::block_select::{
    block_scores_host, estimate_blocks, select_blocks_host, BlockBudget, BlockScoring, BlockSelectConfig, GateHost, ScoreDims, ScoreKind,
};
use sparse_attn::pattern::BlockSparse;
use sparse_attn::plan::block_select::{workspace_len, GateDims, ScoreProblem, Scoring};
use sparse_attn::reference::RefInputs;
use sparse_attn::{AttnShape, DType};

/// True when two real scores of a row are within 1e-3 relative.
fn near_tie(row: &[f64]) -> bool {
    let mut v: Vec<f64> = row.iter().copied().filter(|s| s.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.windows(2).any(|w| (w[1] - w[0]).abs() <= 1e-3 * w[0].abs().max(w[1].abs()).max(1e-6))
}

#[test]
fn gpu_estimates_equal_host() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(61);
    let shape = AttnShape::new(2, 1000, 1500, 8, 2, 128).unwrap();
    let q: Vec<bf16> = rng.tensor(shape.q_len());
    let k: Vec<bf16> = rng.tensor(shape.kv_len());
    let wq: Vec<bf16> = rng.tensor(8 * 128 * 64);
    let wk: Vec<bf16> = rng.tensor(2 * 384 * 64);
    let wide = |w: &[bf16]| w.iter().map(|x| x.to_f64()).collect::<Vec<f64>>();
    let gate = GateHost { wq: Some(wide(&wq)), wk: wide(&wk), k_heads: 2, hidden: 64, rope_theta: Some(5e5) };
    let ref_in = RefInputs::new(shape, &q, &k, &k).unwrap();
    let (q_d, k_d) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap());
    let (wq_d, wk_d) = (stream.clone_htod(&wq).unwrap(), stream.clone_htod(&wk).unwrap());
    let cases = [
        (Scoring::Pooled, BlockScoring::Pooled, 1.0 / 128f32.sqrt(), ScoreKind::Logits),
        (Scoring::Gate(GateDims { has_wq: true, k_heads: 2, hidden: 64, rope_theta: Some(5e5) }), BlockScoring::Gate(&gate), 0.125, ScoreKind::Logits),
        (Scoring::Xattn { stride: 8 }, BlockScoring::Xattn { stride: 8 }, 1.0 / 128f32.sqrt(), ScoreKind::Mass),
    ];
    for (scoring, host_scoring, scale, kind) in cases {
        let problem = ScoreProblem { shape, dtype: DType::BF16, per_kv_group: true, causal: true, scale, scoring };
        let config = BlockSelectConfig { budget: BlockBudget::TopK(6), kind, causal: true, force_sink: true, force_diagonal: true };
        let gate_w = matches!(scoring, Scoring::Gate(_));
        let tensors = BlockScoreTensors::<bf16, CudaSlice<i32>> {
            q: &q_d,
            k: &k_d,
            q_layout: shape.q_layout(),
            k_layout: shape.kv_layout(),
            varlen: None::<VarlenTensors<'_, CudaSlice<i32>>>,
            wq: if gate_w { Some(&wq_d) } else { None },
            wk: if gate_w { Some(&wk_d) } else { None },
        };
        let dims = problem.score_dims();
        let rows = dims.len().unwrap() / dims.key_blocks();
        let max_blocks = config.max_blocks(dims.key_blocks());
        let mut runs = Vec::new();
        for _ in 0..2 {
            let mut ws: CudaSlice<f32> = stream.alloc_zeros(workspace_len(&problem).unwrap()).unwrap();
            let mut count: CudaSlice<i32> = stream.alloc_zeros(rows).unwrap();
            let mut index: CudaSlice<i32> = stream.alloc_zeros(rows * max_blocks).unwrap();
            block_estimate(&stream, &problem, &config, &tensors, &mut ws, &mut count, &mut index).unwrap();
            let count: Vec<i32> = stream.clone_dtoh(&count).unwrap();
            let index: Vec<i32> = stream.clone_dtoh(&index).unwrap();
            runs.push(BlockSparse::new(dims.batch, dims.heads, dims.row_blocks(), max_blocks, count, index).unwrap());
        }
        assert_eq!(runs[0], runs[1], "{scoring:?}: reruns differ");
        let scores = block_scores_host(&ref_in, host_scoring, true, true, scale as f64).unwrap();
        let host = estimate_blocks(&ref_in, host_scoring, true, &config, scale as f64).unwrap();
        let nb = dims.key_blocks();
        let mut exact = 0;
        for b in 0..dims.batch {
            for h in 0..dims.heads {
                for m in 0..dims.row_blocks() {
                    let r = (b * dims.heads + h) * dims.row_blocks() + m;
                    if !near_tie(&scores[r * nb..(r + 1) * nb]) {
                        assert_eq!(runs[0].blocks(b, h, m).unwrap(), host.blocks(b, h, m).unwrap(), "{scoring:?} row {r}");
                        exact += 1;
                    }
                }
            }
        }
        println!("{scoring:?}: {exact} of {rows} rows compared exactly");
    }
}

#[test]
fn gpu_longest_selection_row() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(67);
    let dims = ScoreDims { batch: 1, heads: 2, seq_q: 100, seq_k: 1 << 19 };
    let scores: Vec<f32> = (0..dims.len().unwrap()).map(|_| rng.below(1000) as f32 / 64.0).collect();
    let wide: Vec<f64> = scores.iter().map(|&x| x as f64).collect();
    let scores_d = stream.clone_htod(&scores).unwrap();
    for (budget, kind) in [(BlockBudget::TopK(2048), ScoreKind::Logits), (BlockBudget::Threshold(0.5), ScoreKind::Mass)] {
        let config = BlockSelectConfig { budget, kind, causal: true, force_sink: true, force_diagonal: true };
        let rows = dims.len().unwrap() / dims.key_blocks();
        let max_blocks = config.max_blocks(dims.key_blocks());
        let mut count: CudaSlice<i32> = stream.alloc_zeros(rows).unwrap();
        let mut index: CudaSlice<i32> = stream.alloc_zeros(rows * max_blocks).unwrap();
        block_select::<CudaSlice<i32>>(&stream, &dims, &config, &scores_d, None, &mut count, &mut index).unwrap();
        let count: Vec<i32> = stream.clone_dtoh(&count).unwrap();
        let index: Vec<i32> = stream.clone_dtoh(&index).unwrap();
        let got = BlockSparse::new(1, 2, dims.row_blocks(), max_blocks, count, index).unwrap();
        assert_eq!(got, select_blocks_host(&wide, &dims, None, &config).unwrap(), "{budget:?}");
    }
}
