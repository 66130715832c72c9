//! What block selection costs next to the attention it plans, on the PTX simulator
//! (warp-instructions and global bytes the simulator counted; not GPU timings): pooled,
//! SeerAttention-gate and XAttention scoring plus top-k selection, against the dense causal
//! prefill kernel at the same shape.
//!
//! `cargo run --profile test --features sim --example block_select_report [seq]` (default
//! seq 2048; batch 1, 8 query heads, 2 kv heads, head_dim 128, bf16).

use half::bf16;
use ptx_sim::{Counters, LaunchOptions};
use sparse_attn::pattern::block_select::{BlockBudget, BlockSelectConfig, ScoreKind};
use sparse_attn::plan::block_select::{GateDims, ScoreProblem, Scoring};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_block_select::SimBlockInputs;
use sparse_attn::source::Source;
use sparse_attn::{AttnOptions, AttnShape, DType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seq: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let shape = AttnShape::new(1, seq, seq, 8, 2, 128)?;
    let sim = SimBackend::new(80);
    let mut state = 1u64;
    let mut tensor = |n: usize| {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                bf16::from_f32(((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
            })
            .collect::<Vec<bf16>>()
    };
    let (q, k, v) = (tensor(shape.q_len()), tensor(shape.kv_len()), tensor(shape.kv_len()));
    let (wq, wk) = (tensor(8 * 128 * 128), tensor(2 * 384 * 128));
    let dense = sim.attention(&shape, &AttnOptions { causal: true, ..Default::default() }, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &Source::<&[i32]>::Dense)?;
    let d = dense.counters;
    println!("shape {shape:?}; dense causal prefill: {} warp-instructions, {} global bytes", d.warp_instructions, d.global_load_bytes + d.global_store_bytes);
    let gate = GateDims { has_wq: true, k_heads: 2, hidden: 128, rope_theta: Some(1e4) };
    for (name, scoring, kind) in [
        ("pooled", Scoring::Pooled, ScoreKind::Logits),
        ("gate", Scoring::Gate(gate), ScoreKind::Logits),
        ("xattn stride 8", Scoring::Xattn { stride: 8 }, ScoreKind::Mass),
    ] {
        let problem = ScoreProblem { shape, dtype: DType::BF16, per_kv_group: true, causal: true, scale: 1.0 / 128f32.sqrt(), scoring };
        let config = BlockSelectConfig { budget: BlockBudget::TopK(8), kind, causal: true, force_sink: true, force_diagonal: true };
        let gated = matches!(scoring, Scoring::Gate(_));
        let inputs = SimBlockInputs { q: &q, k: &k, varlen: None, wq: gated.then_some(&wq[..]), wk: gated.then_some(&wk[..]) };
        let est = sim.block_estimate(&problem, &config, &inputs, &LaunchOptions::default())?;
        let mut total = Counters::default();
        for c in &est.counters {
            total.add(c);
        }
        let per: Vec<u64> = est.counters.iter().map(|c| c.warp_instructions).collect();
        println!(
            "{name:>15}: {} warp-instructions ({:.2}% of dense; per launch {per:?}), {} global bytes",
            total.warp_instructions,
            100.0 * total.warp_instructions as f64 / d.warp_instructions as f64,
            total.global_load_bytes + total.global_store_bytes
        );
    }
    Ok(())
}
