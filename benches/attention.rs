//! GPU benchmark: causal prefill attention at long context, dense against every sparse
//! pattern, through the crate's launch function (`cuda::attention`), plus the
//! vertical-slash index-conversion kernel (`cuda::vs_convert`).
//!
//! Problem: batch 1, 32 query heads / 8 kv heads, head_dim 128, bf16, causal, no LSE
//! output, at each of `SPARSE_ATTN_BENCH_SEQ` tokens for both queries and keys (one length
//! or a comma-separated list; default 8192, 32768 and 131072).
//!
//! Patterns (random but seeded; built, validated and uploaded before any timing):
//! - dense (causal);
//! - A-shape: 1 sink block + 16 local blocks (the diagonal block included);
//! - block-sparse keeping ~30%, ~10% and ~3% of the causally live tiles per query head,
//!   always the sink and the diagonal block (so a row block keeps at least 2 tiles, and at
//!   8K the 3% case keeps the ~3.1% that those forced tiles make);
//! - vertical-slash: 1000 verticals + 1024 slashes per query head, MInference-like (keys
//!   0..30 and distances 0..100 forced; see `common::minference_vertical_slash`),
//!   converted on the host and uploaded;
//! - top-k tokens: 2048 keys per query row and kv head, spread over the visible context.
//!
//! Timing: each criterion iteration is one launch; a sample enqueues its iterations back to
//! back on one stream and synchronises once at the end (`iter_custom`), so a sample's time
//! is GPU time plus one synchronisation, and the per-launch host work (validation, launch
//! plan) overlaps the previous launch. Flat sampling, 20 samples of at least 2 launches in
//! 2 s after a 0.5 s warm-up; when 40 launches take longer than 2 s (launches over 50 ms:
//! dense and the denser patterns at 128K), 10 samples of 2 launches. So about 3 s per case,
//! 24 cases (3 lengths x (7 patterns + the conversion)), plus 19 launches of each launch
//! over 105 ms (dense at 128K: ~140 TFLOP) and about a minute of host work (descriptors and
//! inputs; 128K top-k's index alone is 8 GiB). Throughput is `Throughput::Elements` of the FLOPs of the elements
//! the pattern keeps (4 x head_dim per kept query-key pair per query head, causal mask
//! applied), so criterion's "elem/s" reads as FLOP/s of useful work (Telem/s = TFLOP/s).
//!
//! `SPARSE_ATTN_BENCH_TSV=<path>` writes one row per case (sequence x pattern) with the
//! kept shares, the GPU memory the case holds, criterion's samples reduced to mean / median
//! / min / max per launch, TFLOP/s of kept work, the speedup over dense at the same length,
//! and the timing model's prediction (`common::model`: a model, not a measurement).
//! `scripts/gpu-bench.sh` prints its summary table from that file.
//!
//! Without a usable GPU it prints `skipped: no GPU: <reason>` and exits 0.
//! `SPARSE_ATTN_BENCH_HOST_ONLY=1` builds and validates every descriptor and prints the
//! kept-share table (and writes the TSV, untimed) without a GPU, to check the setup on a
//! CPU-only machine. `SPARSE_ATTN_BENCH_PROBE=1` only prints one line, `gpu: <device>` or
//! `no GPU: <reason>`, and exits 0.
//!
//! `SPARSE_ATTN_DEVICE=cuda|sim|auto` picks the driver (`ptx_sim_driver::select`) before
//! the first CUDA call. On the simulated driver nothing is timed (it has no clock): every
//! case runs once on a small problem and its simulator work counters are printed (`sim`).

mod common;
#[path = "attention/sim.rs"]
mod sim;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use cudarc::driver::{sys::CUdevice_attribute, CudaContext, CudaSlice, CudaStream};
use half::bf16;
use sparse_attn::cuda::{alloc_vs_index, attention, download_vs_index, gpu_context, upload, vs_convert, AttnTensors};
use sparse_attn::pattern::vs_convert::{convert, index_dims, VsIndex};
use sparse_attn::pattern::{AShape, BlockSparse, Dense, VerticalSlash};
use sparse_attn::{AttnOptions, AttnShape, Error, Result, Source, SparsePattern};

use common::model::{self, Device, ModelInput};
use common::Rng;

const DEFAULT_SEQS: [usize; 3] = [8192, 32768, 131072];
const HEADS_Q: usize = 32;
const HEADS_KV: usize = 8;
const HEAD_DIM: usize = 128;

const SINK_BLOCKS: usize = 1;
const LOCAL_BLOCKS: usize = 16;
const NNZ_V: usize = 1000;
const NNZ_S: usize = 1024;
const TOPK: usize = 2048;

/// The per-head / per-row budgets of the vertical-slash and top-k cases.
#[derive(Clone, Copy)]
struct Budgets {
    nnz_v: usize,
    nnz_s: usize,
    topk: usize,
}

impl Budgets {
    const FULL: Budgets = Budgets { nnz_v: NNZ_V, nnz_s: NNZ_S, topk: TOPK };
}

/// Criterion's budget per case (see the module docs).
const SAMPLES: usize = 20;
const MIN_SAMPLES: usize = 10;
const WARM_UP: Duration = Duration::from_millis(500);
const MEASUREMENT: Duration = Duration::from_secs(2);

/// What a case runs.
#[derive(Clone, Copy)]
enum Kind {
    Dense,
    AShape,
    /// Target share of the causally live tiles.
    BlockSparse(f64),
    VerticalSlash,
    Topk,
}

/// One benchmarked case: a name (criterion's benchmark id) and what it runs.
struct Spec {
    name: &'static str,
    kind: Kind,
}

const CASES: [Spec; 7] = [
    Spec { name: "dense", kind: Kind::Dense },
    Spec { name: "a_shape_sink1_local16", kind: Kind::AShape },
    Spec { name: "block_sparse_30pct", kind: Kind::BlockSparse(0.30) },
    Spec { name: "block_sparse_10pct", kind: Kind::BlockSparse(0.10) },
    Spec { name: "block_sparse_3pct", kind: Kind::BlockSparse(0.03) },
    Spec { name: "vertical_slash_v1000_s1024", kind: Kind::VerticalSlash },
    Spec { name: "topk_2048", kind: Kind::Topk },
];

impl Spec {
    /// The pattern column of the TSV.
    fn pattern(&self) -> &'static str {
        match self.kind {
            Kind::Dense => "dense",
            Kind::AShape => "a_shape",
            Kind::BlockSparse(_) => "block_sparse",
            Kind::VerticalSlash => "vertical_slash",
            Kind::Topk => "topk",
        }
    }

    fn target(&self) -> Option<f64> {
        match self.kind {
            Kind::BlockSparse(fraction) => Some(fraction),
            _ => None,
        }
    }
}

/// One case's host descriptor and its counts.
struct Case {
    spec: &'static Spec,
    pattern: Box<dyn SparsePattern>,
    /// Kept (query head, query, key) elements, causal mask applied.
    elements: u64,
    /// Kept share of the causally live 64 x 64 tiles (tile-list patterns only).
    tile_share: Option<f64>,
    /// Vertical-slash: the host-converted index the launch reads, and the descriptor whose
    /// GPU conversion is benchmarked too.
    converted: Option<(VsIndex, VerticalSlash)>,
}

impl Case {
    /// The index tensors the launch reads; validates the descriptor (the converted
    /// vertical-slash index was validated by `convert`).
    fn source(&self, shape: &AttnShape) -> Result<Source<Cow<'_, [i32]>>> {
        match &self.converted {
            Some((index, _)) => Ok(Source::from(index).map(|_, b| Cow::Borrowed(b))),
            None => self.pattern.source(shape),
        }
    }

    fn model_input<'a>(&'a self, shape: &'a AttnShape, device: Option<&'a Device>) -> ModelInput<'a> {
        ModelInput {
            case: self.spec.name,
            shape,
            pattern: self.pattern.as_ref(),
            causal: true,
            kept_elements: self.elements,
            dense_elements: common::dense_causal_elements(shape),
            flops: common::attention_flops(shape, self.elements),
            device,
        }
    }
}

/// Builds one case's host descriptor and counts what it keeps. Untimed.
fn build_case(spec: &'static Spec, shape: &AttnShape, budgets: Budgets) -> Result<Case> {
    let heads = shape.heads_q();
    let block_sparse = |d: BlockSparse| -> Result<Case> {
        let elements = common::block_sparse_elements(shape, &d)?;
        let (kept, live) = d.kept_tiles(shape, true)?; // validates
        let tile_share = Some(kept as f64 / live.max(1) as f64);
        Ok(Case { spec, pattern: Box::new(d), elements, tile_share, converted: None })
    };
    match spec.kind {
        Kind::Dense => {
            let elements = common::dense_causal_elements(shape);
            Ok(Case { spec, pattern: Box::new(Dense), elements, tile_share: Some(1.0), converted: None })
        }
        Kind::AShape => block_sparse(AShape::new(SINK_BLOCKS, LOCAL_BLOCKS)?.to_block_sparse(shape)?),
        Kind::BlockSparse(fraction) => block_sparse(common::random_block_sparse(shape, heads, fraction, 0xB10C)?),
        Kind::VerticalSlash => {
            let vs = common::minference_vertical_slash(shape, heads, budgets.nnz_v.min(shape.seq_k()), budgets.nnz_s.min(shape.seq_k()), 0x5145)?;
            let index = convert(&vs, shape)?; // validates
            let elements = common::vertical_slash_elements(shape, &index)?;
            Ok(Case { spec, pattern: Box::new(vs.clone()), elements, tile_share: None, converted: Some((index, vs)) })
        }
        Kind::Topk => {
            // Validated by `Case::source`, once: at 128K the index is 8 GiB.
            let d = common::spread_topk(shape, budgets.topk, 0x70C)?;
            let elements = common::topk_elements(shape, &d);
            Ok(Case { spec, pattern: Box::new(d), elements, tile_share: None, converted: None })
        }
    }
}

/// Bytes of the index tensors of `source` on the device (an empty tensor is uploaded as one
/// element).
fn index_bytes<B: AsRef<[i32]>>(source: &Source<B>) -> u64 {
    let mut bytes = 0u64;
    source.as_ref().map(|_, b| bytes += 4 * b.as_ref().len().max(1) as u64);
    bytes
}

/// Bytes of q, k, v and the output (bf16).
fn input_bytes(shape: &AttnShape) -> u64 {
    2 * (2 * shape.q_len() + 2 * shape.kv_len()) as u64
}

/// Extra device bytes the conversion bench holds while the converted index of the
/// vertical-slash launch is still uploaded: its inputs and its own output.
fn convert_bytes(index: &VsIndex, vs: &VerticalSlash) -> u64 {
    index_bytes(&Source::from(index)) + 4 * (vs.vertical_indexes().len() + vs.slash_indexes().len()) as u64
}

/// Peak device bytes while `case` runs.
fn case_device_bytes(shape: &AttnShape, case: &Case, index: u64) -> u64 {
    let convert = case.converted.as_ref().map_or(0, |(index, vs)| convert_bytes(index, vs));
    input_bytes(shape) + index + convert
}

const MIB: f64 = 1024.0 * 1024.0;

fn print_header(shape: &AttnShape) {
    println!(
        "prefill attention: batch {}, seq {}, {} q heads / {} kv heads, head_dim {}, bf16, causal",
        shape.batch(), shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim()
    );
    println!("throughput unit: FLOPs of the kept elements (4 x head_dim per kept query-key pair); read elem/s as FLOP/s");
    println!(
        "GPU MiB: q, k, v and out ({:.0} MiB) plus the case's index tensors (vertical-slash: plus the conversion bench's)",
        input_bytes(shape) as f64 / MIB
    );
    println!("{:<28} {:>16} {:>10} {:>10} {:>10} {:>10}", "pattern", "kept elements", "of dense", "tiles", "GFLOP", "GPU MiB");
}

fn print_case(shape: &AttnShape, case: &Case, dense: u64, device_bytes: u64) {
    let flops = common::attention_flops(shape, case.elements);
    let share = 100.0 * case.elements as f64 / dense as f64;
    let tiles = case.tile_share.map_or("-".to_string(), |t| format!("{:.2}%", 100.0 * t));
    println!(
        "{:<28} {:>16} {:>9.2}% {:>10} {:>10.1} {:>10.0}",
        case.spec.name, case.elements, share, tiles, flops as f64 / 1e9, device_bytes as f64 / MIB
    );
}

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attention bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> std::result::Result<(), String> {
    let seqs = common::seqs_from_env("SPARSE_ATTN_BENCH_SEQ", &DEFAULT_SEQS)?;
    let shapes = seqs
        .iter()
        .map(|&seq| AttnShape::new(1, seq, seq, HEADS_Q, HEADS_KV, HEAD_DIM))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    if env_flag("SPARSE_ATTN_BENCH_PROBE") {
        match gpu_context(0) {
            Ok(ctx) => match device_info(&ctx) {
                Ok(d) => println!(
                    "gpu: {}, compute capability {}.{}, {} SMs, {:.1} GiB",
                    d.name, d.compute_capability.0, d.compute_capability.1, d.sm_count, d.memory_bytes as f64 / (1024.0 * MIB)
                ),
                Err(e) => println!("no GPU: could not query device 0: {e}"),
            },
            Err(reason) => println!("no GPU: {reason}"),
        }
        return Ok(());
    }
    // SPARSE_ATTN_DEVICE=cuda|sim|auto picks the driver before the first CUDA call; on the
    // simulated one nothing is timed (see `sim`).
    let device = std::env::var("SPARSE_ATTN_DEVICE").ok().filter(|v| !v.is_empty());
    if let Some(choice) = device {
        let choice: ptx_sim_driver::DeviceChoice = choice.parse().map_err(|e| format!("SPARSE_ATTN_DEVICE: {e}"))?;
        let selected = ptx_sim_driver::select(choice).map_err(|e| e.to_string())?;
        println!("device: {selected}");
        if selected == ptx_sim_driver::Selected::Sim && !env_flag("SPARSE_ATTN_BENCH_PROBE") {
            return sim::run().map_err(|e| e.to_string());
        }
    }
    let mut tsv = Tsv::create(std::env::var_os("SPARSE_ATTN_BENCH_TSV").map(PathBuf::from))?;
    let result = if env_flag("SPARSE_ATTN_BENCH_HOST_ONLY") {
        host_only(&shapes, &mut tsv)
    } else {
        let ctx = match gpu_context(0) {
            Ok(ctx) => ctx,
            Err(reason) => {
                println!("skipped: no GPU: {reason}");
                return Ok(());
            }
        };
        if sparse_attn::ptx::modules().is_empty() {
            println!("skipped: this build carries no kernels (no CUDA compiler at build time; run scripts/install-cuda-toolchain.sh)");
            return Ok(());
        }
        run_gpu(ctx, &shapes, &mut tsv)
    };
    result.map_err(|e| e.to_string())
}

fn device_info(ctx: &CudaContext) -> Result<Device> {
    Ok(Device {
        name: ctx.name()?,
        compute_capability: ctx.compute_capability()?,
        sm_count: ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize,
        memory_bytes: ctx.total_mem()?,
    })
}

/// Builds and validates every descriptor, prints the tables, times nothing.
fn host_only(shapes: &[AttnShape], tsv: &mut Tsv) -> Result<()> {
    // The model column's GPU: a nominal one when SPARSE_ATTN_BENCH_MODEL_GPU names it.
    let nominal = model::nominal_device();
    for shape in shapes {
        print_header(shape);
        let dense = common::dense_causal_elements(shape);
        for spec in &CASES {
            let case = build_case(spec, shape, Budgets::FULL)?;
            let index = index_bytes(&case.source(shape)?);
            let device_bytes = case_device_bytes(shape, &case, index);
            print_case(shape, &case, dense, device_bytes);
            if shape.seq_q() <= CROSS_CHECK_MAX_SEQ {
                cross_check(shape, &case)?;
            }
            tsv.row(&Row::attention(shape, &case, dense, device_bytes, None, None, model::model_cell(&case.model_input(shape, nominal.as_ref()))))?;
            if let Some((_, vs)) = &case.converted {
                let name = convert_case_name(vs);
                let model = model::model_cell(&convert_model_input(&name, shape, vs, nominal.as_ref()));
                tsv.row(&Row::convert(shape, vs, device_bytes, None, model))?;
            }
        }
        if shape.seq_q() <= CROSS_CHECK_MAX_SEQ {
            println!("kept element counts equal the descriptors' element masks");
        }
        println!();
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
            reason: format!("{}: counted {} kept elements, the element mask has {}", case.spec.name, case.elements, mask.count()),
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

/// Per-launch times of criterion's measurement samples: the mean is criterion's mean
/// estimate's point value (the mean of the samples' per-iteration times), the median
/// likewise.
#[derive(Clone, Copy)]
struct Stats {
    samples: usize,
    iters_per_sample: u64,
    mean: f64,
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// The last `samples` calls of the timing routine are criterion's measurement (its
    /// warm-up calls come first, and flat sampling gives every sample the same iteration
    /// count). `None` when criterion did not measure (a filtered-out benchmark, `--test`,
    /// `--quick`, `--profile-time`).
    fn from_calls(calls: &[(u64, Duration)], samples: usize) -> Option<Stats> {
        let tail = calls.get(calls.len().checked_sub(samples)?..)?;
        let iters = tail.first()?.0;
        if samples == 0 || iters == 0 || tail.iter().any(|&(n, _)| n != iters) {
            return None;
        }
        let mut per_launch: Vec<f64> = tail.iter().map(|&(n, d)| d.as_secs_f64() / n as f64).collect();
        per_launch.sort_by(f64::total_cmp);
        let n = per_launch.len();
        let median = if n % 2 == 1 { per_launch[n / 2] } else { 0.5 * (per_launch[n / 2 - 1] + per_launch[n / 2]) };
        Some(Stats {
            samples: n,
            iters_per_sample: iters,
            mean: per_launch.iter().sum::<f64>() / n as f64,
            median,
            min: per_launch[0],
            max: per_launch[n - 1],
        })
    }
}

/// Sample count and measurement time for a launch that takes `one` (see the module docs):
/// flat sampling runs ceil(measurement / samples / launch) launches per sample, and prints
/// a warning when that is 1.
fn budget(one: Duration) -> (usize, Duration) {
    if one.saturating_mul(2 * SAMPLES as u32) <= MEASUREMENT {
        (SAMPLES, MEASUREMENT)
    } else {
        // 1.9 rather than 2: the warm-up's estimate of a launch may come out a little
        // shorter than `one`, and ceil(2.0x) would make it 3 launches per sample.
        (MIN_SAMPLES, MEASUREMENT.max(one.mul_f64(1.9 * MIN_SAMPLES as f64)))
    }
}

/// Times `routine(iters)` (which runs `iters` launches and returns their wall time) as
/// benchmark `id` of `group`, and returns criterion's measurement samples.
fn bench(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, one: Duration, mut routine: impl FnMut(u64) -> Duration) -> Option<Stats> {
    let (samples, measurement) = budget(one);
    group.sampling_mode(SamplingMode::Flat).sample_size(samples).warm_up_time(WARM_UP).measurement_time(measurement);
    let mut calls: Vec<(u64, Duration)> = Vec::new();
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let elapsed = routine(iters);
            calls.push((iters, elapsed));
            elapsed
        })
    });
    Stats::from_calls(&calls, samples)
}

/// Wall time of one synchronised call of `f`.
fn time_once(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

fn run_gpu(ctx: Arc<CudaContext>, shapes: &[AttnShape], tsv: &mut Tsv) -> Result<()> {
    let device = device_info(&ctx)?;
    println!(
        "GPU: {}, compute capability {}.{}, {} SMs, {:.1} GiB",
        device.name, device.compute_capability.0, device.compute_capability.1, device.sm_count, device.memory_bytes as f64 / (1024.0 * MIB)
    );
    let stream = ctx.default_stream();
    let opts = AttnOptions::causal();
    let mut criterion = Criterion::default().configure_from_args();
    for shape in shapes {
        // Inputs: uniform in [-1, 1), rounded to bf16; generated and uploaded once per
        // length, untimed.
        let mut bufs = Buffers {
            q: stream.clone_htod(&random_bf16(shape.q_len(), 1))?,
            k: stream.clone_htod(&random_bf16(shape.kv_len(), 2))?,
            v: stream.clone_htod(&random_bf16(shape.kv_len(), 3))?,
            out: stream.alloc_zeros::<bf16>(shape.q_len())?,
        };
        stream.synchronize()?;

        print_header(shape);
        let dense = common::dense_causal_elements(shape);
        let mut dense_time = None;
        let group_name = format!("prefill_seq{}_h{}kv{}_d{}_bf16_causal", shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim());
        for spec in &CASES {
            // Descriptor construction, validation and upload: all before the clock.
            let case = build_case(spec, shape, Budgets::FULL)?;
            let (pattern, device_bytes) = {
                let source = case.source(shape)?;
                let device_bytes = case_device_bytes(shape, &case, index_bytes(&source));
                print_case(shape, &case, dense, device_bytes);
                check_free_memory(&ctx, device_bytes - input_bytes(shape), spec.name)?;
                (upload(&stream, &source)?, device_bytes)
            };
            // First launch: loads (JIT-compiles) the module and surfaces any launch error;
            // the second sizes criterion's budget.
            launch(&stream, shape, &opts, &mut bufs, &pattern)?;
            stream.synchronize()?;
            let one = time_once(|| {
                launch(&stream, shape, &opts, &mut bufs, &pattern)?;
                Ok(stream.synchronize()?)
            })?;

            let mut group = criterion.benchmark_group(&group_name);
            group.throughput(Throughput::Elements(common::attention_flops(shape, case.elements)));
            let stats = bench(&mut group, spec.name, one, |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if let Err(e) = launch(&stream, shape, &opts, &mut bufs, &pattern) {
                        panic!("{}: launch failed mid-benchmark: {e}", spec.name);
                    }
                }
                if let Err(e) = stream.synchronize() {
                    panic!("{}: stream synchronisation failed: {e}", spec.name);
                }
                start.elapsed()
            });
            group.finish();
            if matches!(spec.kind, Kind::Dense) {
                dense_time = stats.map(|s| s.mean);
            }
            let model = model::model_cell(&case.model_input(shape, Some(&device)));
            tsv.row(&Row::attention(shape, &case, dense, device_bytes, stats, dense_time, model))?;

            if let Some((index, vs)) = &case.converted {
                let stats = bench_vs_convert(&mut criterion, &stream, shape, vs, index)?;
                let name = convert_case_name(vs);
                let model = model::model_cell(&convert_model_input(&name, shape, vs, Some(&device)));
                tsv.row(&Row::convert(shape, vs, device_bytes, stats, model))?;
            }
        }
        println!();
    }
    criterion.final_summary();
    Ok(())
}

/// Fails with the sizes when `bytes` more do not fit in the device's free memory.
fn check_free_memory(ctx: &Arc<CudaContext>, bytes: u64, case: &str) -> Result<()> {
    let (free, total) = ctx.mem_get_info()?;
    if bytes > free as u64 {
        return Err(Error::InvalidParameter {
            name: "device memory",
            reason: format!(
                "{case} needs {:.0} MiB more device memory, {:.0} MiB of {:.0} MiB are free",
                bytes as f64 / MIB, free as f64 / MIB, total as f64 / MIB
            ),
        });
    }
    Ok(())
}

fn convert_case_name(vs: &VerticalSlash) -> String {
    format!("vertical_slash_convert_h{}_v{}_s{}", vs.heads(), vs.nnz_v(), vs.nnz_s())
}

fn convert_model_input<'a>(name: &'a str, shape: &'a AttnShape, vs: &'a VerticalSlash, device: Option<&'a Device>) -> ModelInput<'a> {
    ModelInput { case: name, shape, pattern: vs, causal: true, kept_elements: 0, dense_elements: 0, flops: 0, device }
}

/// The GPU index-conversion kernel on the same descriptor, checked once against the host
/// conversion before it is timed.
fn bench_vs_convert(
    criterion: &mut Criterion,
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    vs: &VerticalSlash,
    host_index: &VsIndex,
) -> Result<Option<Stats>> {
    let vertical = stream.clone_htod(vs.vertical_indexes())?;
    let slash = stream.clone_htod(vs.slash_indexes())?;
    let mut out = alloc_vs_index(stream, index_dims(vs, shape)?)?;
    vs_convert(stream, shape, &vertical, &slash, &mut out)?;
    let gpu_index = download_vs_index(stream, &out)?;
    stream.synchronize()?;
    if &gpu_index != host_index {
        return Err(Error::DescriptorMismatch { reason: "vertical_slash_convert on the GPU differs from the host conversion".into() });
    }
    let one = time_once(|| {
        vs_convert(stream, shape, &vertical, &slash, &mut out)?;
        Ok(stream.synchronize()?)
    })?;
    let mut group = criterion.benchmark_group(format!("index_gpu_seq{}", shape.seq_q()));
    let stats = bench(&mut group, &convert_case_name(vs), one, |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            if let Err(e) = vs_convert(stream, shape, &vertical, &slash, &mut out) {
                panic!("vertical_slash_convert failed mid-benchmark: {e}");
            }
        }
        if let Err(e) = stream.synchronize() {
            panic!("stream synchronisation failed: {e}");
        }
        start.elapsed()
    });
    group.finish();
    Ok(stats)
}

/// One line of the TSV.
struct Row {
    seq: usize,
    case: String,
    pattern: &'static str,
    target: Option<f64>,
    kept_share: Option<f64>,
    tile_share: Option<f64>,
    flops: u64,
    device_bytes: u64,
    stats: Option<Stats>,
    dense_time: Option<f64>,
    model: String,
}

impl Row {
    fn attention(shape: &AttnShape, case: &Case, dense: u64, device_bytes: u64, stats: Option<Stats>, dense_time: Option<f64>, model: String) -> Row {
        Row {
            seq: shape.seq_q(),
            case: case.spec.name.to_string(),
            pattern: case.spec.pattern(),
            target: case.spec.target(),
            kept_share: Some(case.elements as f64 / dense as f64),
            tile_share: case.tile_share,
            flops: common::attention_flops(shape, case.elements),
            device_bytes,
            stats,
            dense_time,
            model,
        }
    }

    fn convert(shape: &AttnShape, vs: &VerticalSlash, device_bytes: u64, stats: Option<Stats>, model: String) -> Row {
        Row {
            seq: shape.seq_q(),
            case: convert_case_name(vs),
            pattern: "vs_convert",
            target: None,
            kept_share: None,
            tile_share: None,
            flops: 0,
            device_bytes,
            stats,
            dense_time: None,
            model,
        }
    }
}

/// The TSV of `SPARSE_ATTN_BENCH_TSV`, written row by row (flushed after each, so a run
/// that stops part-way keeps what it measured).
struct Tsv(Option<BufWriter<File>>);

const TSV_COLUMNS: [&str; 17] = [
    "seq", "case", "pattern", "target_tiles", "kept_tiles", "kept_elements", "kept_gflop", "gpu_mib", "samples",
    "iters_per_sample", "mean_s", "median_s", "min_s", "max_s", "tflops", "speedup", "model_s",
];

impl Tsv {
    fn create(path: Option<PathBuf>) -> std::result::Result<Tsv, String> {
        let Some(path) = path else { return Ok(Tsv(None)) };
        let open = |path: &Path| -> std::io::Result<BufWriter<File>> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = BufWriter::new(File::create(path)?);
            writeln!(file, "{}", TSV_COLUMNS.join("\t"))?;
            file.flush()?;
            Ok(file)
        };
        open(&path).map(|f| Tsv(Some(f))).map_err(|e| format!("SPARSE_ATTN_BENCH_TSV={}: {e}", path.display()))
    }

    fn row(&mut self, row: &Row) -> Result<()> {
        let Some(file) = &mut self.0 else { return Ok(()) };
        let dash = || "-".to_string();
        let fraction = |x: Option<f64>| x.map_or_else(dash, |x| format!("{x:.6}"));
        let secs = |x: Option<f64>| x.map_or_else(dash, |x| format!("{x:.6e}"));
        let s = row.stats;
        let per_flop = row.flops > 0;
        let cells = [
            row.seq.to_string(),
            row.case.clone(),
            row.pattern.to_string(),
            fraction(row.target),
            fraction(row.tile_share),
            fraction(row.kept_share),
            if per_flop { format!("{:.3}", row.flops as f64 / 1e9) } else { dash() },
            format!("{:.1}", row.device_bytes as f64 / MIB),
            s.map_or_else(dash, |s| s.samples.to_string()),
            s.map_or_else(dash, |s| s.iters_per_sample.to_string()),
            secs(s.map(|s| s.mean)),
            secs(s.map(|s| s.median)),
            secs(s.map(|s| s.min)),
            secs(s.map(|s| s.max)),
            s.filter(|_| per_flop).map_or_else(dash, |s| format!("{:.2}", row.flops as f64 / s.mean / 1e12)),
            match (s, row.dense_time) {
                (Some(s), Some(dense)) if per_flop => format!("{:.3}", dense / s.mean),
                _ => dash(),
            },
            row.model.clone(),
        ];
        let write = |file: &mut BufWriter<File>| -> std::io::Result<()> {
            writeln!(file, "{}", cells.join("\t"))?;
            file.flush()
        };
        write(file).map_err(|e| Error::InvalidParameter { name: "SPARSE_ATTN_BENCH_TSV", reason: e.to_string() })
    }
}
