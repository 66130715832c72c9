//! CPU benchmark: the host-side index builders at 128K tokens (CPU wall time, single
//! thread; no GPU involved).
//!
//! - `vs_convert`: `pattern::vs_convert::convert` of an MInference-scale vertical-slash
//!   descriptor (32 heads, 1000 verticals, 6096 slashes; keys 0..30 and distances 0..100
//!   forced as MInference does). The call validates the descriptor, allocates the four
//!   output tensors (about 1.9 GB at 128K) and fills them; all of it is timed.
//!   Throughput: elements = row blocks converted (batch x heads x ceil(seq / 64)).
//! - `block_sparse_from_mask`: `BlockSparse::from_block_mask` of a 32-head causal block
//!   mask keeping ~10% of the live tiles (sink and diagonal always).
//!   Throughput: elements = mask entries read (batch x heads x MB x NB).
//! - `topk_validate`: `SparsePattern::validate` of a top-2048 token index for one kv head
//!   (DSA's indexer selects one set of keys per query token, shared by every head).
//!   Throughput: elements = index entries checked (seq x heads_kv x k).
//!
//! Descriptors are built once, before timing. Sample time is kept short (10 samples,
//! flat sampling) so the whole bench finishes in about a minute on a 2-core machine.
//! `SPARSE_ATTN_BENCH_INDEX_SEQ` overrides the sequence length (default 131072).

mod common;

use std::process::ExitCode;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::pattern::{BlockSparse, BLOCK_M, BLOCK_N};
use sparse_attn::{AttnShape, Result, SparsePattern};

const DEFAULT_SEQ: usize = 131072;
const HEADS_Q: usize = 32;
const HEADS_KV: usize = 8;
const HEAD_DIM: usize = 128;

const NNZ_V: usize = 1000;
const NNZ_S: usize = 6096;
const BLOCK_FRACTION: f64 = 0.10;
const TOPK: usize = 2048;
/// DSA / MLA: one top-k set per query token for all heads.
const TOPK_HEADS_KV: usize = 1;

fn main() -> ExitCode {
    let seq = match common::seq_from_env("SPARSE_ATTN_BENCH_INDEX_SEQ", DEFAULT_SEQ) {
        Ok(seq) => seq,
        Err(e) => {
            eprintln!("index_build bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(seq) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("index_build bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    // An iteration takes up to about a second here: flat sampling runs 10 samples of the
    // same small iteration count, where linear sampling would need at least 55 iterations.
    group.sampling_mode(SamplingMode::Flat);
}

fn run(seq: usize) -> Result<()> {
    let shape = AttnShape::new(1, seq, seq, HEADS_Q, HEADS_KV, HEAD_DIM)?;
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    println!("host index builders (CPU wall time, one thread), seq {seq}");
    let mut group = criterion.benchmark_group(format!("index_build_cpu_seq{seq}"));
    configure(&mut group);

    // Vertical-slash conversion.
    let vs = common::minference_vertical_slash(&shape, HEADS_Q, NNZ_V.min(seq), NNZ_S.min(seq), 0x5145)?;
    let row_blocks = seq.div_ceil(BLOCK_M);
    let index = convert(&vs, &shape)?; // once untimed: any error surfaces here, not mid-benchmark
    let tiles: u64 = index.block_count.iter().map(|&c| c as u64).sum();
    let columns: u64 = index.column_count.iter().map(|&c| c as u64).sum();
    let rows = (vs.batch() * vs.heads() * row_blocks) as u64;
    println!(
        "vs_convert: {} heads x {row_blocks} row blocks, {} verticals + {} slashes; mean {:.1} tiles + {:.1} columns per row block",
        vs.heads(),
        vs.nnz_v(),
        vs.nnz_s(),
        tiles as f64 / rows as f64,
        columns as f64 / rows as f64
    );
    drop(index);
    group.throughput(Throughput::Elements(rows));
    group.bench_function(format!("vs_convert_h{}_v{}_s{}", vs.heads(), vs.nnz_v(), vs.nnz_s()), |b| {
        b.iter(|| convert(&vs, &shape).map(|index| index.block_count.len()))
    });
    drop(vs);

    // Block-sparse from a boolean block mask.
    let (mb, nb) = (seq.div_ceil(BLOCK_M), seq.div_ceil(BLOCK_N));
    let mask = common::random_block_mask(&shape, HEADS_Q, BLOCK_FRACTION, 0xB10C);
    let desc = BlockSparse::from_block_mask(shape.batch(), HEADS_Q, mb, nb, &mask)?;
    let (kept, live) = desc.kept_tiles(&shape, true)?;
    println!(
        "block_sparse_from_mask: {HEADS_Q} heads x {mb} x {nb} mask, {:.1}% of the causally live tiles kept, max_blocks {}",
        100.0 * kept as f64 / live as f64,
        desc.max_blocks()
    );
    drop(desc);
    group.throughput(Throughput::Elements(mask.len() as u64));
    group.bench_function(format!("block_sparse_from_mask_h{HEADS_Q}_{}pct", (BLOCK_FRACTION * 100.0).round()), |b| {
        b.iter(|| BlockSparse::from_block_mask(shape.batch(), HEADS_Q, mb, nb, &mask).map(|d| d.max_blocks()))
    });
    drop(mask);

    // Top-k token index validation.
    let topk_shape = AttnShape::new(1, seq, seq, HEADS_Q, TOPK_HEADS_KV, HEAD_DIM)?;
    let topk = common::spread_topk(&topk_shape, TOPK.min(seq), 0x70C)?;
    topk.validate(&topk_shape)?;
    println!("topk_validate: [1, {seq}, {TOPK_HEADS_KV}, {}] i32 index ({:.2} GB)", topk.k(), topk.indices().len() as f64 * 4.0 / 1e9);
    group.throughput(Throughput::Elements(topk.indices().len() as u64));
    group.bench_function(format!("topk_validate_kv{TOPK_HEADS_KV}_k{}", topk.k()), |b| b.iter(|| topk.validate(&topk_shape)));
    group.finish();

    criterion.final_summary();
    Ok(())
}
