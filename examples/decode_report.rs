//! Work counters of split-KV decode on the PTX simulator, against the prefill kernel run on
//! the same decode problem (what an engine without a decode kernel would launch). These are
//! simulator counts (mma instructions, CTAs, waves), not GPU times.
//!
//! ```sh
//! cargo run --release --features sim --example decode_report
//! # the bench shapes (batch 1 / 8 / 32, 32K / 128K keys, GQA 32:8 and 64:8, kept 100 / 10 / 3 %);
//! # hours on the simulator:
//! SPARSE_ATTN_DECODE_SWEEP=1 cargo run --release --features sim --example decode_report
//! ```
//!
//! The default run is the yardstick problem: batch 1, 32K keys, 32 query heads / 4 kv heads,
//! head_dim 128, one new token, bf16, planned for 132 SMs.

use sparse_attn::plan::decode::{DecodeOptions, DecodeSource};
use sparse_attn::plan::decode_splits::wave_efficiency;
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_decode::DecodeCache;
use sparse_attn::{AttnOptions, AttnShape, Source};

type T = half::bf16;
const SMS: usize = 132;

fn tensor(n: usize, seed: u32) -> Vec<T> {
    (0..n).map(|i| T::from_f32((((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 17) as f32 / 16.0 - 0.5)).collect()
}

/// Block-sparse decode keeping `kept` of each sequence's 64-token blocks (every
/// `1 / kept`-th), as one row per (batch, kv head).
fn blocks(batch: usize, heads_kv: usize, seq_k: usize, kept: f64) -> DecodeSource<Vec<i32>> {
    let n = seq_k / 64;
    let ids: Vec<i32> = (0..n).filter(|i| (*i as f64 * kept).floor() != ((*i + 1) as f64 * kept).floor()).map(|i| i as i32).collect();
    let (mut count, mut index) = (Vec::new(), Vec::new());
    for _ in 0..batch * heads_kv {
        count.push(ids.len() as i32);
        let mut row = ids.clone();
        row.resize(n, -1);
        index.extend(row);
    }
    DecodeSource::BlockSparse { block_size: 64, max_blocks: n, block_count: count, block_index: index }
}

/// The decode step's wave efficiency and its mma over the prefill kernel's (when run).
struct Figures {
    wave_efficiency: f64,
    mma_ratio: Option<f64>,
}

fn report(sim: &SimBackend, batch: usize, seq_k: usize, heads: (usize, usize), kept: f64, with_prefill: bool) -> sparse_attn::Result<Figures> {
    let (hq, hkv, d) = (heads.0, heads.1, 128);
    let shape = AttnShape::new(batch, 1, seq_k, hq, hkv, d)?;
    let q = tensor(batch * hq * d, 1);
    let (k, v) = (tensor(batch * seq_k * hkv * d, 2), tensor(batch * seq_k * hkv * d, 3));
    let seqlens = vec![seq_k as i32; batch];
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count: SMS };
    let source = if kept >= 1.0 { DecodeSource::Dense } else { blocks(batch, hkv, seq_k, kept) };
    let cache = DecodeCache::Contiguous { k: &k, v: &v, seqlens_k: &seqlens };
    let dec = sim.decode(&shape, &opts, &q, None, cache, &source)?;
    let ctas = dec.splits * batch * hkv;
    println!(
        "decode {:>12} batch {batch:>2} keys {:>6} heads {hq}/{hkv}: {:>3} splits, {:>5} CTAs, wave efficiency {:.2} ({SMS} SMs x 2), mma {:>10} (+ merge {} warp-instructions)",
        source.name(),
        seq_k,
        dec.splits,
        ctas,
        wave_efficiency(ctas, SMS),
        dec.counters.mma,
        dec.merge_counters.warp_instructions
    );
    let mut figures = Figures { wave_efficiency: wave_efficiency(ctas, SMS), mma_ratio: None };
    if with_prefill {
        let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
        let pre = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &Source::<Vec<i32>>::Dense)?;
        let ratio = dec.counters.mma as f64 / pre.counters.mma.max(1) as f64;
        println!("prefill kernel on the same problem: mma {:>10}; decode / prefill = 1/{:.1}", pre.counters.mma, 1.0 / ratio);
        figures.mma_ratio = Some(ratio);
    }
    Ok(figures)
}

fn main() -> sparse_attn::Result<()> {
    if let Err(e) = sparse_attn::ptx::module_for("decode", 80) {
        println!("skipped: {e}");
        return Ok(());
    }
    let sim = SimBackend::new(80);
    println!("simulator work counts (no GPU timing)");
    // The yardstick: at most 1/16 of the prefill kernel's mma, and at least 85% of the last
    // wave's CTA slots filled (the decode issue's targets); a miss fails the run.
    let f = report(&sim, 1, 32 * 1024, (32, 4), 1.0, true)?;
    let ratio = f.mma_ratio.unwrap_or(1.0);
    if ratio > 1.0 / 16.0 || f.wave_efficiency < 0.85 {
        eprintln!("missed: decode / prefill mma {ratio:.4} (at most 0.0625), wave efficiency {:.2} (at least 0.85)", f.wave_efficiency);
        std::process::exit(1);
    }
    if std::env::var("SPARSE_ATTN_DECODE_SWEEP").is_ok_and(|v| v == "1") {
        for batch in [1, 8, 32] {
            for seq_k in [32 * 1024, 128 * 1024] {
                for heads in [(32, 8), (64, 8)] {
                    for kept in [1.0, 0.1, 0.03] {
                        report(&sim, batch, seq_k, heads, kept, kept >= 1.0)?;
                    }
                }
            }
        }
    }
    Ok(())
}
