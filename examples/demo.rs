//! The main demo: every sparsity pattern on one 4096-token GQA problem.
//!
//! For each pattern it builds (or estimates) the descriptor, runs the pattern's sparse CPU
//! reference, checks it against dense attention under the descriptor's element mask, and
//! prints how much of the dense causal work the pattern keeps. With a GPU present it also
//! runs the vertical-slash conversion kernel and checks it against the CPU converter.
//!
//! Run: `bash scripts/demo.sh` (or `cargo run --release --example demo`).
//! Options: `--seq N` (default 4096).
//!
//! The inputs are synthetic: unit-variance noise plus a rotary-style positional component
//! that makes nearby keys score higher, and a key 0 that every query likes (an attention
//! sink), so the estimators have real structure to find. Nothing here measures a real
//! model's accuracy.

use std::time::Instant;

use sparse_attn::pattern::vs_convert::{convert, VsIndex};
use sparse_attn::pattern::{
    estimate_block_topk, estimate_vertical_slash, AShape, BlockSparse, BlockTopkConfig, TopkTokens, VsEstimateConfig,
    BLOCK_M, BLOCK_N,
};
use sparse_attn::reference::{
    a_shape_attention, block_sparse_attention, dense_attention, masked_attention, topk_attention,
    vertical_slash_attention, RefInputs, RefOutput,
};
use sparse_attn::{AttnOptions, AttnShape, ElementMask, Result, SparsePattern};

const HEADS_Q: usize = 4;
const HEADS_KV: usize = 1;
const HEAD_DIM: usize = 64;

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let seq = parse_seq();
    let shape = AttnShape::new(1, seq, seq, HEADS_Q, HEADS_KV, HEAD_DIM)?;
    let opts = AttnOptions::causal();
    let scale = opts.scale(HEAD_DIM)? as f64;
    println!("sparse-attn demo: batch 1, {seq} tokens, {HEADS_Q} query heads / {HEADS_KV} kv head, head_dim {HEAD_DIM}, causal");
    println!("CPU reference in f64 on synthetic data (see the source for what the data is)\n");

    let inputs = synthetic_inputs(shape)?;
    let t = Instant::now();
    dense_attention(&inputs, &opts)?;
    println!("dense causal reference: {:.2} s (CPU, f64)\n", t.elapsed().as_secs_f64());

    let block_topk = estimate_block_topk(
        &inputs,
        &BlockTopkConfig { top_k: 8, causal: true, force_sink: true, force_diagonal: true, per_kv_group: true },
        scale,
    )?;
    let a_shape = AShape::new(1, 3)?;
    let vs = estimate_vertical_slash(&inputs, &VsEstimateConfig::new(128, 128), scale)?;
    let topk = select_topk_tokens(&inputs, 256, scale)?;

    println!(
        "{:<34} {:>9} {:>9} {:>15} {:>8}",
        "pattern", "elements", "tiles", "|sparse-masked|", "time"
    );
    let rows: Vec<(&str, Box<dyn SparsePattern>, Option<f64>, Runner)> = vec![
        (
            "block-sparse (block top-8 estimate)",
            Box::new(block_topk.clone()),
            Some(block_tiles(&block_topk, &shape)?),
            Box::new(move |i: &RefInputs, o: &AttnOptions| block_sparse_attention(i, o, &block_topk)),
        ),
        (
            "A-shape (1 sink + 3 local blocks)",
            Box::new(a_shape),
            Some(block_tiles(&a_shape.to_block_sparse(&shape)?, &shape)?),
            Box::new(move |i: &RefInputs, o: &AttnOptions| a_shape_attention(i, o, &a_shape)),
        ),
        (
            "vertical-slash (128 v + 128 s)",
            Box::new(vs.clone()),
            Some(vs_tiles(&convert(&vs, &shape)?, &shape)),
            Box::new({
                let vs = vs.clone();
                move |i: &RefInputs, o: &AttnOptions| vertical_slash_attention(i, o, &vs)
            }),
        ),
        (
            "top-k tokens (k = 256)",
            Box::new(topk.clone()),
            None,
            Box::new(move |i: &RefInputs, o: &AttnOptions| topk_attention(i, o, &topk)),
        ),
    ];
    for (name, pattern, tiles, runner) in rows {
        let mask = pattern.element_mask(&shape, true)?;
        let t = Instant::now();
        let sparse = runner(&inputs, &opts)?;
        let took = t.elapsed().as_secs_f64();
        let masked = masked_attention(&inputs, &opts, &mask)?;
        let (exact, _) = sparse.max_abs_diff(&masked);
        let tiles = tiles.map_or("gather".to_string(), |f| format!("{:.1}%", 100.0 * f));
        println!(
            "{name:<34} {:>8.1}% {tiles:>9} {exact:>15.1e} {took:>7.2}s",
            100.0 * mask.density(&shape, true)
        );
        check_exact(name, exact)?;
    }
    println!("\nelements: share of the dense causal (row, key) pairs computed; tiles: share of the");
    println!("dense causal {BLOCK_M}x{BLOCK_N} tiles a tiled kernel visits. |sparse-masked| must be ~1e-15: the");
    println!("pattern's sparse reference equals dense attention under its element mask.\n");

    gpu_section(&vs, &shape)
}

type Runner = Box<dyn Fn(&RefInputs, &AttnOptions) -> Result<RefOutput>>;

/// The sparse reference and the masked dense reference sum the same terms in f64; anything
/// beyond rounding means the descriptor's key enumeration and its element mask disagree.
fn check_exact(name: &str, diff: f64) -> Result<()> {
    if diff > 1e-12 {
        return Err(sparse_attn::Error::DescriptorMismatch {
            reason: format!("{name}: sparse reference differs from masked dense attention by {diff:e}"),
        });
    }
    Ok(())
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
        * (shape.heads_q / index.dims.heads);
    let dense_per_head: usize = (0..shape.seq_q.div_ceil(BLOCK_M))
        .map(|m| {
            let last_row = ((m + 1) * BLOCK_M).min(shape.seq_q) - 1;
            shape.visible_keys(last_row, true).div_ceil(BLOCK_N)
        })
        .sum();
    kept as f64 / (dense_per_head * shape.batch * shape.heads_q) as f64
}

fn parse_seq() -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--seq") {
        Some(i) => args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: demo [--seq N]");
            std::process::exit(2)
        }),
        None => 4096,
    }
}

/// Noise plus a rotary-style positional signal (q_i . k_j gains sum_f cos((i - j) w_f), which
/// peaks at i == j) and a strong key 0. Rounded to bf16 like real kernel inputs.
fn synthetic_inputs(shape: AttnShape) -> Result<RefInputs> {
    let mut state = 0x5eed_u64;
    let mut noise = move || {
        // xorshift64*, summed four times for a roughly normal value of unit variance.
        (0..4)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .sum::<f64>()
            * 3f64.sqrt()
    };
    let positional = |pos: usize, x: usize| {
        let f = (x / 2) as f64;
        let angle = pos as f64 * 0.5 / 10_000f64.powf(2.0 * f / 16.0);
        1.5 * if x % 2 == 0 { angle.cos() } else { angle.sin() }
    };
    let build = |seq: usize, heads: usize, noise: &mut dyn FnMut() -> f64, sink: bool| -> Vec<half::bf16> {
        let mut t = Vec::with_capacity(seq * heads * HEAD_DIM);
        for pos in 0..seq {
            for _ in 0..heads {
                for x in 0..HEAD_DIM {
                    let mut value = noise();
                    if x < 16 {
                        value += positional(pos, x);
                    } else if sink && pos == 0 {
                        value += 2.0;
                    } else if !sink {
                        value += 0.25;
                    }
                    t.push(half::bf16::from_f64(value));
                }
            }
        }
        t
    };
    let q = build(shape.seq_q, shape.heads_q, &mut noise, false);
    let k = build(shape.seq_k, shape.heads_kv, &mut noise, true);
    let v = build(shape.seq_k, shape.heads_kv, &mut noise, true);
    RefInputs::new(shape, &q, &k, &v)
}

/// Exact top-k keys per (query row, kv head) by the summed scores of the group's query
/// heads: what an ideal DSA-style indexer would pick. Causally hidden keys are never picked.
fn select_topk_tokens(inputs: &RefInputs, k: usize, scale: f64) -> Result<TopkTokens> {
    let s = inputs.shape;
    let (d, group) = (s.head_dim, s.group_size());
    let row = |b: usize, i: usize, h_kv: usize| -> Vec<i32> {
        let visible = s.visible_keys(i, true);
        let mut scored: Vec<(f64, usize)> = (0..visible)
            .map(|j| {
                let kj = &inputs.k[s.kv_layout().offset(b, j, h_kv)..][..d];
                let score: f64 = (0..group)
                    .map(|g| {
                        let qi = &inputs.q[s.q_layout().offset(b, i, h_kv * group + g)..][..d];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .sum();
                (score * scale, j)
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut keys: Vec<i32> = scored.iter().take(k).map(|&(_, j)| j as i32).collect();
        keys.resize(k, -1);
        keys
    };
    let rows: Vec<(usize, usize, usize)> =
        (0..s.batch).flat_map(|b| (0..s.seq_q).flat_map(move |i| (0..s.heads_kv).map(move |h| (b, i, h)))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = rows.len().div_ceil(threads);
    let indices: Vec<i32> = std::thread::scope(|scope| {
        let workers: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().flat_map(|&(b, i, h)| row(b, i, h)).collect::<Vec<i32>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("top-k selection worker panicked")).collect()
    });
    TopkTokens::new(s.batch, s.seq_q, s.heads_kv, k, indices)
}

/// Runs the vertical-slash conversion kernel through cudarc when a GPU is present.
fn gpu_section(vs: &sparse_attn::pattern::VerticalSlash, shape: &AttnShape) -> Result<()> {
    if let Some(report) = sparse_attn::kernels::resource_report() {
        let kernels = report.lines().count().saturating_sub(1);
        println!("kernels: {kernels} kernel/target pairs compiled by nvcc (cargo run --example ptxas_report)");
    } else {
        println!("kernels: none (built without nvcc)");
    }
    match sparse_attn::cuda::gpu_context(0) {
        Ok(ctx) => {
            let stream = ctx.default_stream();
            let t = Instant::now();
            let gpu = sparse_attn::cuda::convert_on_gpu(&stream, vs, shape)?;
            let took = t.elapsed().as_secs_f64();
            let cpu = convert(vs, shape)?;
            let verdict = if gpu == cpu { "equals" } else { "DIFFERS FROM" };
            println!("GPU: vertical_slash_convert {verdict} the CPU converter ({took:.3} s wall, incl. module load and copies)");
            if gpu != cpu {
                return Err(sparse_attn::Error::DescriptorMismatch { reason: "GPU conversion differs from the CPU converter".into() });
            }
        }
        Err(reason) => {
            println!("GPU: not used ({reason}); the PTX simulator backend arrives with ptx-sim (issue 3)");
        }
    }
    // The element mask of the estimate must contain every element of the pure pattern.
    let pure: ElementMask = vs.pure_mask(shape)?;
    let full = vs.element_mask(shape, true)?;
    println!(
        "vertical-slash: the converted tiles keep {:.1}% of elements for a pure pattern of {:.1}%",
        100.0 * full.density(shape, true),
        100.0 * pure.density(shape, true)
    );
    Ok(())
}
