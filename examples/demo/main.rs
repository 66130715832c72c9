//! The main demo: every sparsity pattern on one 4096-token GQA problem.
//!
//! For each pattern it builds (or estimates) the descriptor, runs the pattern's sparse CPU
//! reference, checks it against dense attention under the descriptor's element mask, and
//! prints how much of the dense causal work the pattern keeps. Then it runs the CUDA
//! kernels (index conversion, and attention for every pattern) through the public cudarc
//! API, `sparse_attn::cuda`, and checks them against the CPU reference: on a GPU when one
//! is usable, otherwise on the simulated CUDA driver (ptx-sim-driver). `SPARSE_ATTN_DEVICE`
//! = `cuda` (a GPU or an error), `sim` or `auto` (the default) picks the device.
//!
//! Run: `bash scripts/demo.sh` (or `cargo run --release --example demo`).
//! Options: `--seq N` (default 4096 on a GPU, 2048 on the simulator, which runs every
//! instruction on the CPU).
//!
//! The inputs are synthetic: unit-variance noise plus a rotary-style positional component
//! that makes nearby keys score higher, and a key 0 that every query likes (an attention
//! sink), so the estimators have real structure to find. Nothing here measures a real
//! model's accuracy.

mod data;
mod kernels;

use std::time::Instant;

use sparse_attn::pattern::vs_convert::{convert, VsIndex};
use sparse_attn::pattern::{
    estimate_block_topk, estimate_vertical_slash, AShape, BlockSparse, BlockTopkConfig, Dense, VerticalSlash,
    VsEstimateConfig, BLOCK_M, BLOCK_N,
};
use sparse_attn::reference::{
    a_shape_attention, block_sparse_attention, dense_attention, masked_attention, topk_attention,
    vertical_slash_attention, RefOutput,
};
use sparse_attn::{AttnOptions, AttnShape, Error, Result, Source, SparsePattern};
use std::borrow::Cow;

const HEADS_Q: usize = 4;
const HEADS_KV: usize = 1;
const HEAD_DIM: usize = 64;

/// One pattern of the demo: the index tensors a kernel consumes, its CPU result, and for
/// vertical-slash the descriptor the index kernel converts.
pub struct Case<'a> {
    pub name: &'static str,
    pub source: Source<Cow<'a, [i32]>>,
    pub reference: RefOutput,
    pub converts: Option<&'a VerticalSlash>,
}

/// Default sequence lengths: a GPU runs the large problem; the simulator a small one.
const SEQ_GPU: usize = 4096;
const SEQ_SIM: usize = 2048;

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    // Before any other CUDA call: cudarc binds the driver library once per process.
    let device = kernels::select_device()?;
    let on_sim = device.as_ref().is_some_and(|d| d.on_sim);
    let seq = parse_seq().unwrap_or(if on_sim { SEQ_SIM } else { SEQ_GPU });
    let shape = AttnShape::new(1, seq, seq, HEADS_Q, HEADS_KV, HEAD_DIM)?;
    let opts = AttnOptions::causal();
    let scale = opts.scale(HEAD_DIM)? as f64;
    println!("sparse-attn demo: batch 1, {seq} tokens, {HEADS_Q} query heads / {HEADS_KV} kv head, head_dim {HEAD_DIM}, causal, bf16");
    println!("CPU reference in f64 on synthetic data (see the source for what the data is)\n");

    let inputs = data::synthetic_inputs(shape)?;
    let reference = &inputs.reference;
    let t = Instant::now();
    let dense = dense_attention(reference, &opts)?;
    println!("dense causal reference: {:.2} s (CPU, f64)\n", t.elapsed().as_secs_f64());

    let block_topk = estimate_block_topk(
        reference,
        &BlockTopkConfig { top_k: 8, causal: true, force_sink: true, force_diagonal: true, per_kv_group: true },
        scale,
    )?;
    let a_shape = AShape::new(1, 3)?;
    let a_blocks = a_shape.to_block_sparse(&shape)?;
    let vs = estimate_vertical_slash(reference, &VsEstimateConfig::new(128, 128), scale)?;
    let vs_index = convert(&vs, &shape)?;
    let dense_source = Dense.source(&shape)?;
    let topk = data::select_topk_tokens(reference, 256, scale)?;

    println!("{:<34} {:>9} {:>9} {:>15} {:>8}", "pattern", "elements", "tiles", "|sparse-masked|", "time");
    let mut cases = vec![Case { name: "dense", source: dense_source, reference: dense, converts: None }];
    type Reference<'a> = &'a dyn Fn() -> Result<RefOutput>;
    // (name, descriptor, tile share, sparse reference, the descriptor the index kernel converts)
    type Pattern<'a> = (&'static str, &'a dyn SparsePattern, Option<f64>, Reference<'a>, Option<&'a VerticalSlash>);
    let patterns: [Pattern<'_>; 4] = [
        (
            "block-sparse (block top-8 estimate)",
            &block_topk,
            Some(block_tiles(&block_topk, &shape)?),
            &|| block_sparse_attention(reference, &opts, &block_topk),
            None,
        ),
        (
            "A-shape (1 sink + 3 local blocks)",
            &a_shape,
            Some(block_tiles(&a_blocks, &shape)?),
            &|| a_shape_attention(reference, &opts, &a_shape),
            None,
        ),
        (
            "vertical-slash (128 v + 128 s)",
            &vs,
            Some(vs_tiles(&vs_index, &shape)),
            &|| vertical_slash_attention(reference, &opts, &vs),
            Some(&vs),
        ),
        (
            "top-k tokens (k = 256)",
            &topk,
            None,
            &|| topk_attention(reference, &opts, &topk),
            None,
        ),
    ];
    for (name, pattern, tiles, sparse_reference, converts) in patterns {
        let mask = pattern.element_mask(&shape, true)?;
        let t = Instant::now();
        let sparse = sparse_reference()?;
        let took = t.elapsed().as_secs_f64();
        let (exact, _) = sparse.max_abs_diff(&masked_attention(reference, &opts, &mask)?);
        let tiles = tiles.map_or("gather".to_string(), |f| format!("{:.1}%", 100.0 * f));
        println!("{name:<34} {:>8.1}% {tiles:>9} {exact:>15.1e} {took:>7.2}s", 100.0 * mask.density(&shape, true));
        // Both sum the same terms in f64; more than rounding means descriptor and mask disagree.
        if exact > 1e-12 {
            return Err(Error::DescriptorMismatch {
                reason: format!("{name}: sparse reference differs from masked dense attention by {exact:e}"),
            }
            .into());
        }
        cases.push(Case { name, source: pattern.source(&shape)?, reference: sparse, converts });
    }
    println!("\nelements: share of the dense causal (row, key) pairs computed; tiles: share of the");
    println!("dense causal {BLOCK_M}x{BLOCK_N} tiles a tiled kernel visits. |sparse-masked| must be ~1e-15: the");
    println!("pattern's sparse reference equals dense attention under its element mask.\n");

    match device {
        Some(device) => Ok(kernels::run_all(&device, &shape, &opts, &inputs, &cases)?),
        None => Ok(()),
    }
}

fn block_tiles(pattern: &BlockSparse, shape: &AttnShape) -> Result<f64> {
    let (kept, dense) = pattern.kept_tiles(shape, true)?;
    Ok(kept as f64 / dense as f64)
}

/// Tiles a vertical-slash kernel visits: the slash tiles plus the gathered columns packed
/// BLOCK_N to a tile, against the dense causal tiles (the same for every query head).
fn vs_tiles(index: &VsIndex, shape: &AttnShape) -> f64 {
    let kept: usize = index
        .block_count
        .iter()
        .zip(&index.column_count)
        .map(|(&b, &c)| b.max(0) as usize + (c.max(0) as usize).div_ceil(BLOCK_N))
        .sum::<usize>()
        * (shape.heads_q() / index.dims.heads());
    let dense_per_head: usize = (0..shape.seq_q().div_ceil(BLOCK_M))
        .map(|m| {
            let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q()) - 1;
            shape.visible_keys(last_row, true).div_ceil(BLOCK_N)
        })
        .sum();
    kept as f64 / (dense_per_head * shape.batch() * shape.heads_q()) as f64
}

fn parse_seq() -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == "--seq").map(|i| {
        args.get(i + 1).and_then(|s| s.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("usage: demo [--seq N]  (N >= 1)");
            std::process::exit(2)
        })
    })
}
