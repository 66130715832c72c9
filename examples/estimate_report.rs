//! What vertical-slash estimation costs next to the attention it prepares, in the
//! simulator's warp-instructions (not GPU times): the four estimation launches plus the
//! index conversion, against the dense causal prefill kernel, at seq 32K (batch 1, one
//! head, head_dim 128, bf16, MInference's default budget of 1000 verticals and 6096
//! slashes). Exits non-zero when the ratio is above 5%.
//!
//! ```sh
//! cargo run --profile test --features sim --example estimate_report
//! ```
//!
//! The estimation and the conversion run at 32K. The dense kernel at 32K would take hours
//! on the simulator, so it is measured exactly at three smaller lengths and extrapolated by
//! a model, printed as such: each dense CTA walks its key tiles in one loop, so a launch's
//! warp-instructions are `a * tiles + b * ctas` (tiles summed over the CTAs); `a` and `b`
//! come from the runs at 4K and 8K keys, and a third at 6K checks the fit. `SPARSE_ATTN_REPORT_SEQ=N`
//! runs the estimation at N keys instead.

use sparse_attn::params::{PREFILL_ROW_BLOCKS, PREFILL_TILE_M, PREFILL_TILE_N};
use sparse_attn::pattern::vs_convert::index_dims;
use sparse_attn::pattern::{VerticalSlash, VsEstimateConfig};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::source::VsIndex;
use sparse_attn::{AttnOptions, AttnShape, Source};

type T = half::bf16;
const HEAD_DIM: usize = 128;
const LIMIT: f64 = 0.05;

fn tensor(n: usize, seed: u32) -> Vec<T> {
    (0..n).map(|i| T::from_f32((((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 17) as f32 / 16.0 - 0.5)).collect()
}

/// Key tiles and CTAs of the dense causal kernel at head_dim 128 (seq_q = seq_k = `seq`, one
/// head): a CTA holds PREFILL_ROW_BLOCKS row blocks and walks the 64-key tiles up to its
/// last row's diagonal.
fn dense_work(seq: usize) -> (f64, f64) {
    let rows = PREFILL_ROW_BLOCKS * PREFILL_TILE_M;
    let ctas = seq.div_ceil(rows);
    let tiles: usize = (0..ctas).map(|c| ((c + 1) * rows).min(seq).div_ceil(PREFILL_TILE_N)).sum();
    (tiles as f64, ctas as f64)
}

fn dense_instructions(sim: &SimBackend, seq: usize) -> sparse_attn::Result<u64> {
    let shape = AttnShape::new(1, seq, seq, 1, 1, HEAD_DIM)?;
    let (q, k, v) = (tensor(shape.q_len(), 1), tensor(shape.kv_len(), 2), tensor(shape.kv_len(), 3));
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let out = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &Source::<Vec<i32>>::Dense)?;
    Ok(out.counters.warp_instructions)
}

fn main() -> sparse_attn::Result<()> {
    let seq: usize = std::env::var("SPARSE_ATTN_REPORT_SEQ").ok().and_then(|s| s.parse().ok()).unwrap_or(32 * 1024);
    let sim = SimBackend::new(80);
    let shape = AttnShape::new(1, seq, seq, 1, 1, HEAD_DIM)?;
    let config = VsEstimateConfig::default();
    let (q, k) = (tensor(shape.q_len(), 1), tensor(shape.kv_len(), 2));
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();

    let est = sim.vs_estimate(&shape, &config, scale, &q, &k)?;
    let names = ["scores", "row_stats", "sums", "select"];
    // The conversion of that estimate, on the same simulated device.
    let vs = VerticalSlash::new(1, 1, est.nnz_v, est.nnz_s, est.vertical_indexes.clone(), est.slash_indexes.clone())?;
    let dims = index_dims(&vs, &shape)?;
    let lens = dims.lens();
    let out = VsIndex {
        dims,
        block_count: sim.alloc::<i32>(lens.rows)?,
        block_offset: sim.alloc::<i32>(lens.block_offset)?,
        column_count: sim.alloc::<i32>(lens.rows)?,
        column_index: sim.alloc::<i32>(lens.column_index)?,
    };
    let convert_plan = sparse_attn::plan::vs_convert::plan(&shape, sim.upload(&est.vertical_indexes)?, sim.upload(&est.slash_indexes)?, &out)?;
    let convert = sim.launch(&convert_plan, &Default::default())?.warp_instructions;
    println!("vertical-slash estimation, seq {seq}, 1 head, head_dim {HEAD_DIM}, bf16, last_q {}, {} verticals / {} slashes (simulator warp-instructions):", config.last_q, est.nnz_v, est.nnz_s);
    for (name, c) in names.iter().zip(&est.counters) {
        println!("  {name:<10} {:>12}", c.warp_instructions);
    }
    println!("  {:<10} {:>12}", "convert", convert);
    let estimate = est.warp_instructions() + convert;
    println!("  {:<10} {:>12}", "total", estimate);

    // The dense kernel: measured at three lengths, modelled at `seq`.
    let measured: Vec<(usize, u64)> = [4096, 8192, 6144].iter().map(|&s| dense_instructions(&sim, s).map(|w| (s, w))).collect::<sparse_attn::Result<_>>()?;
    for &(s, w) in &measured {
        let (t, c) = dense_work(s);
        println!("dense causal prefill, seq {s:>5}: {w:>12} warp-instructions (measured; {t} key tiles over {c} CTAs)");
    }
    // a * tiles + b * ctas through the first two points.
    let ((t0, c0), (t1, c1)) = (dense_work(measured[0].0), dense_work(measured[1].0));
    let (w0, w1) = (measured[0].1 as f64, measured[1].1 as f64);
    let det = t0 * c1 - t1 * c0;
    let a = (w0 * c1 - w1 * c0) / det;
    let b = (t0 * w1 - t1 * w0) / det;
    let model = |s: usize| {
        let (t, c) = dense_work(s);
        a * t + b * c
    };
    let (s2, w2) = measured[2];
    let fit_error = (model(s2) - w2 as f64) / w2 as f64;
    println!("model: warp-instructions = {a:.1} * key tiles + {b:.1} * CTAs (fit at {} and {}); at {s2} it predicts {:.0}, measured {w2} ({:+.3}%)", measured[0].0, measured[1].0, model(s2), 100.0 * fit_error);
    let dense = model(seq);
    let (t, c) = dense_work(seq);
    println!("dense causal prefill, seq {seq}: {dense:.0} warp-instructions (MODEL, {t} key tiles over {c} CTAs)");
    let ratio = estimate as f64 / dense;
    println!("estimation + conversion / dense = {:.3}% (limit {:.0}%)", 100.0 * ratio, 100.0 * LIMIT);
    if ratio > LIMIT || fit_error.abs() > 0.01 {
        eprintln!("FAILED: the ratio is above the limit, or the dense model misses its check point by more than 1%");
        std::process::exit(1);
    }
    Ok(())
}
