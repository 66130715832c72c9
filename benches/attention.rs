//! GPU benchmark: causal prefill attention at long context, dense against every sparse
//! pattern, through the crate's launch function (`cuda::attention`), plus the
//! vertical-slash index-conversion kernel (`cuda::vs_convert`).
//!
//! Problem: batch 1, `SPARSE_ATTN_BENCH_SEQ` tokens (default 32768) for both queries and
//! keys, 32 query heads / 8 kv heads, head_dim 128, bf16, causal, no LSE output.
//!
//! Patterns (random but seeded; built, validated and uploaded before any timing):
//! - dense (causal);
//! - A-shape: 1 sink block + 16 local blocks (the diagonal block included);
//! - block-sparse: ~10% of the causally live tiles per query head, always the sink and the
//!   diagonal block;
//! - vertical-slash: 1000 verticals + 1024 slashes per query head, MInference-like (keys
//!   0..30 and distances 0..100 forced; see `common::minference_vertical_slash`),
//!   converted on the host and uploaded;
//! - top-k tokens: 2048 keys per query row and kv head, spread over the visible context.
//!
//! Each timed iteration enqueues one launch and synchronises the stream. Throughput is
//! `Throughput::Elements` of the FLOPs of the elements the pattern keeps (4 x head_dim per
//! kept query-key pair per query head, causal mask applied), so criterion's "elem/s" reads
//! as FLOP/s of useful work (Telem/s = TFLOP/s); the table printed first gives each
//! pattern's kept share of the dense causal elements.
//!
//! Without a usable GPU it prints `skipped: no GPU: <reason>` and exits 0.
//! `SPARSE_ATTN_BENCH_HOST_ONLY=1` builds and validates every descriptor and prints the
//! table without a GPU (no timings), to check the setup on a CPU-only machine.

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use half::bf16;
use sparse_attn::cuda::{alloc_vs_index, attention, download_vs_index, gpu_context, upload, vs_convert, AttnTensors};
use sparse_attn::pattern::vs_convert::{convert, index_dims};
use sparse_attn::pattern::{AShape, Dense, VerticalSlash};
use sparse_attn::{AttnOptions, AttnShape, Error, Result, Source, SparsePattern};

use common::Rng;

const DEFAULT_SEQ: usize = 32768;
const HEADS_Q: usize = 32;
const HEADS_KV: usize = 8;
const HEAD_DIM: usize = 128;

const SINK_BLOCKS: usize = 1;
const LOCAL_BLOCKS: usize = 16;
const BLOCK_FRACTION: f64 = 0.10;
const NNZ_V: usize = 1000;
const NNZ_S: usize = 1024;
const TOPK: usize = 2048;

/// One benchmarked pattern, as built on the host.
struct Case {
    name: &'static str,
    pattern: Box<dyn SparsePattern>,
    /// Kept (query head, query, key) elements, causal mask applied.
    elements: u64,
    /// The vertical-slash descriptor whose GPU conversion is benchmarked too.
    converts: Option<VerticalSlash>,
}

impl Case {
    fn new(name: &'static str, pattern: impl SparsePattern + 'static, elements: u64) -> Self {
        Self { name, pattern: Box::new(pattern), elements, converts: None }
    }
}

const CASES: [&str; 5] = ["dense", "a_shape_sink1_local16", "block_sparse_10pct", "vertical_slash_v1000_s1024", "topk_2048"];

/// Builds (and validates) one case's host descriptor. Untimed.
fn build_case(name: &'static str, shape: &AttnShape) -> Result<Case> {
    let block_sparse = |d: sparse_attn::pattern::BlockSparse| -> Result<Case> {
        d.validate(shape)?;
        let elements = common::block_sparse_elements(shape, &d)?;
        Ok(Case::new(name, d, elements))
    };
    match name {
        "dense" => Ok(Case::new(name, Dense, common::dense_causal_elements(shape))),
        "a_shape_sink1_local16" => block_sparse(AShape::new(SINK_BLOCKS, LOCAL_BLOCKS)?.to_block_sparse(shape)?),
        "block_sparse_10pct" => block_sparse(common::random_block_sparse(shape, HEADS_Q, BLOCK_FRACTION, 0xB10C)?),
        "vertical_slash_v1000_s1024" => {
            let vs = common::minference_vertical_slash(shape, HEADS_Q, NNZ_V.min(shape.seq_k()), NNZ_S.min(shape.seq_k()), 0x5145)?;
            let index = convert(&vs, shape)?; // validates
            let elements = common::vertical_slash_elements(shape, &index)?;
            Ok(Case { converts: Some(vs.clone()), ..Case::new(name, vs, elements) })
        }
        "topk_2048" => {
            let d = common::spread_topk(shape, TOPK, 0x70C)?;
            d.validate(shape)?;
            let elements = common::topk_elements(shape, &d);
            Ok(Case::new(name, d, elements))
        }
        _ => Err(Error::InvalidParameter { name: "case", reason: format!("unknown case {name}") }),
    }
}

fn print_header(shape: &AttnShape) {
    println!(
        "prefill attention: batch {}, seq {}, {} q heads / {} kv heads, head_dim {}, bf16, causal",
        shape.batch(), shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim()
    );
    println!("throughput unit: FLOPs of the kept elements (4 x head_dim per kept query-key pair); read elem/s as FLOP/s");
    println!("{:<28} {:>16} {:>14} {:>12}", "pattern", "kept elements", "of dense", "GFLOP");
}

fn print_case(shape: &AttnShape, case: &Case, dense: u64) {
    let flops = common::attention_flops(shape, case.elements);
    let share = 100.0 * case.elements as f64 / dense as f64;
    println!("{:<28} {:>16} {:>13.2}% {:>12.1}", case.name, case.elements, share, flops as f64 / 1e9);
}

fn main() -> ExitCode {
    let seq = match common::seq_from_env("SPARSE_ATTN_BENCH_SEQ", DEFAULT_SEQ) {
        Ok(seq) => seq,
        Err(e) => {
            eprintln!("attention bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shape = match AttnShape::new(1, seq, seq, HEADS_Q, HEADS_KV, HEAD_DIM) {
        Ok(shape) => shape,
        Err(e) => {
            eprintln!("attention bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = if std::env::var_os("SPARSE_ATTN_BENCH_HOST_ONLY").is_some_and(|v| !v.is_empty() && v != "0") {
        host_only(&shape)
    } else {
        let ctx = match gpu_context(0) {
            Ok(ctx) => ctx,
            Err(reason) => {
                println!("skipped: no GPU: {reason}");
                return ExitCode::SUCCESS;
            }
        };
        if sparse_attn::ptx::modules().is_empty() {
            println!("skipped: this build carries no kernels (no CUDA compiler at build time; run scripts/install-cuda-toolchain.sh)");
            return ExitCode::SUCCESS;
        }
        run_gpu(ctx, &shape)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attention bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Builds and validates every descriptor, prints the table, times nothing.
fn host_only(shape: &AttnShape) -> Result<()> {
    print_header(shape);
    let dense = common::dense_causal_elements(shape);
    for name in CASES {
        let case = build_case(name, shape)?;
        print_case(shape, &case, dense);
        if shape.seq_q() <= CROSS_CHECK_MAX_SEQ {
            cross_check(shape, &case)?;
        }
    }
    if shape.seq_q() <= CROSS_CHECK_MAX_SEQ {
        println!("kept element counts equal the descriptors' element masks");
    }
    println!("skipped: host-only run (SPARSE_ATTN_BENCH_HOST_ONLY): descriptors built and validated, nothing timed");
    Ok(())
}

/// Up to this length the host-only run also expands every descriptor's element mask (one
/// bit per element) and checks the analytic kept counts against it.
const CROSS_CHECK_MAX_SEQ: usize = 4096;

fn cross_check(shape: &AttnShape, case: &Case) -> Result<()> {
    let mask = case.pattern.element_mask(shape, true)?;
    if mask.count() as u64 != case.elements {
        return Err(Error::DescriptorMismatch {
            reason: format!("{}: counted {} kept elements, the element mask has {}", case.name, case.elements, mask.count()),
        });
    }
    Ok(())
}

/// q, k, v and the output in device memory.
struct Buffers {
    q: CudaSlice<bf16>,
    k: CudaSlice<bf16>,
    v: CudaSlice<bf16>,
    out: CudaSlice<bf16>,
}

fn random_bf16(len: usize, seed: u64) -> Vec<bf16> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| bf16::from_f64(2.0 * rng.unit() - 1.0)).collect()
}

/// Enqueues one attention launch of `source` (not synchronised).
fn launch(stream: &Arc<CudaStream>, shape: &AttnShape, opts: &AttnOptions, bufs: &mut Buffers, source: &Source<CudaSlice<i32>>) -> Result<()> {
    let tensors = AttnTensors::contiguous(shape, &bufs.q, &bufs.k, &bufs.v, &mut bufs.out, None);
    attention(stream, shape, opts, tensors, source)
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    // Launches take milliseconds to a second: flat sampling keeps the iteration count
    // (and so the run time) bounded, where linear sampling needs 55 iterations even at
    // the minimum sample size.
    group.sampling_mode(SamplingMode::Flat);
}

fn run_gpu(ctx: Arc<CudaContext>, shape: &AttnShape) -> Result<()> {
    let stream = ctx.default_stream();
    let opts = AttnOptions::causal();
    // Inputs: uniform in [-1, 1), rounded to bf16; generated and uploaded once, untimed.
    let mut bufs = Buffers {
        q: stream.clone_htod(&random_bf16(shape.q_len(), 1))?,
        k: stream.clone_htod(&random_bf16(shape.kv_len(), 2))?,
        v: stream.clone_htod(&random_bf16(shape.kv_len(), 3))?,
        out: stream.alloc_zeros::<bf16>(shape.q_len())?,
    };
    stream.synchronize()?;

    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    print_header(shape);
    let dense = common::dense_causal_elements(shape);
    let group_name = format!("prefill_seq{}_h{}kv{}_d{}_bf16_causal", shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim());
    for name in CASES {
        // Descriptor construction, validation and upload: all before the clock.
        let case = build_case(name, shape)?;
        print_case(shape, &case, dense);
        let pattern = upload(&stream, &case.pattern.source(shape)?)?;
        // First launch: loads (JIT-compiles) the module and surfaces any launch error.
        launch(&stream, shape, &opts, &mut bufs, &pattern)?;
        stream.synchronize()?;

        let mut group = criterion.benchmark_group(&group_name);
        configure(&mut group);
        group.throughput(Throughput::Elements(common::attention_flops(shape, case.elements)));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                if let Err(e) = launch(&stream, shape, &opts, &mut bufs, &pattern) {
                    panic!("{}: launch failed mid-benchmark: {e}", case.name);
                }
                if let Err(e) = stream.synchronize() {
                    panic!("{}: stream synchronisation failed: {e}", case.name);
                }
            })
        });
        group.finish();

        if let Some(vs) = &case.converts {
            bench_vs_convert(&mut criterion, &stream, shape, vs)?;
        }
    }
    criterion.final_summary();
    Ok(())
}

/// The GPU index-conversion kernel on the same descriptor, checked once against the host
/// conversion before it is timed.
fn bench_vs_convert(
    criterion: &mut Criterion,
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    vs: &VerticalSlash,
) -> Result<()> {
    let host_index = convert(vs, shape)?;
    let vertical = stream.clone_htod(vs.vertical_indexes())?;
    let slash = stream.clone_htod(vs.slash_indexes())?;
    let mut out = alloc_vs_index(stream, index_dims(vs, shape)?)?;
    vs_convert(stream, shape, &vertical, &slash, &mut out)?;
    let gpu_index = download_vs_index(stream, &out)?;
    stream.synchronize()?;
    if gpu_index != host_index {
        return Err(Error::DescriptorMismatch { reason: "vertical_slash_convert on the GPU differs from the host conversion".into() });
    }
    let mut group = criterion.benchmark_group(format!("index_gpu_seq{}", shape.seq_q()));
    configure(&mut group);
    group.bench_function(format!("vertical_slash_convert_h{}_v{}_s{}", vs.heads(), vs.nnz_v(), vs.nnz_s()), |b| {
        b.iter(|| {
            if let Err(e) = vs_convert(stream, shape, &vertical, &slash, &mut out) {
                panic!("vertical_slash_convert failed mid-benchmark: {e}");
            }
            if let Err(e) = stream.synchronize() {
                panic!("stream synchronisation failed: {e}");
            }
        })
    });
    group.finish();
    Ok(())
}
