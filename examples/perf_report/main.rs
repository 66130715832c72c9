//! Performance report on the PTX simulator: this crate's kernels beside FlashAttention-2's
//! own forward kernel (flash-attn 2.8.3, see bench-fa2/), at the same shapes, in one run.
//! Every figure is a simulator count or a ptxas figure, never a GPU time.
//!
//! ```sh
//! cargo run --release --features sim --example perf_report
//! SPARSE_ATTN_PERF_SEQ=4096 SPARSE_ATTN_PERF_HEAD_DIMS=64,128 cargo run --release --features sim --example perf_report
//! ```
//!
//! The default shape (batch 1, 4 heads, seq 2048, head_dim 128, bf16) is what CI runs. The
//! last lines compare this crate's dense kernel with FA2 on totals, causal and not:
//! `vs FA2 hd128 bf16 causal: instr .., smem wavefronts .., global bytes ..` (ours / FA2).

#[path = "../../bench-fa2/mod.rs"]
mod fa2;
mod model;
mod occupancy;
mod resources;
mod sparse;
mod work;

use sparse_attn::params::{PREFILL_ROW_BLOCKS, PREFILL_TILE_M};
use sparse_attn::pattern::Dense;
use sparse_attn::plan::prefill;
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::{AttnOptions, AttnShape, DType, Source, SparsePattern};

use occupancy::{occupancy, SM80, SM90};
use work::{ratio_line, Work, HEADER};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("perf_report: {e}");
        std::process::exit(1);
    }
}

fn env_list(name: &str, default: &str) -> Result<Vec<usize>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_string());
    text.split(',').map(|x| x.trim().parse::<usize>().map_err(|e| format!("{name}: `{x}`: {e}").into())).collect()
}

fn run() -> Result<()> {
    let seq = env_list("SPARSE_ATTN_PERF_SEQ", "2048")?[0];
    let head_dims = env_list("SPARSE_ATTN_PERF_HEAD_DIMS", "128")?;
    if sparse_attn::ptx::modules().is_empty() {
        println!("skipped: this build carries no kernels (no CUDA compiler at build time)");
        return Ok(());
    }
    println!("Simulator work counts (ptx-sim) and ptxas figures; no GPU time. batch 1, 4 heads, seq {seq}, bf16.\n");
    let sim = SimBackend::new(80);
    let fa2_sim = fa2::Fa2Sim::new();
    let mut totals = Vec::new();
    let mut fits = Vec::new();
    for &d in &head_dims {
        let blocks_per_sm = print_resources(d)?;
        let shape = AttnShape::new(1, seq, seq, 4, 4, d)?;
        let (q, k, v) = inputs(&shape);
        let dense: Source<_> = Dense.source(&shape)?;
        let mut dense_mma = [0; 2];
        println!("{HEADER}");
        for (i, causal) in [false, true].into_iter().enumerate() {
            let opts = AttnOptions { causal, ..Default::default() };
            let ours = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &dense)?.counters;
            let theirs = fa2::counters(&fa2_sim, &shape, causal)?;
            dense_mma[i] = ours.mma;
            let label = format!("hd{d} bf16 {}", if causal { "causal" } else { "non-causal" });
            println!("{}", Work { counters: ours }.row(&format!("dense {label}"), ours.mma));
            println!("{}", Work { counters: theirs }.row(&format!("FA2 {label}"), ours.mma));
            totals.push(ratio_line(&label, &ours, &theirs));
            if let Some(blocks) = blocks_per_sm {
                fits.push(fit_model(&sim, &fa2_sim, d, seq, causal, (&ours, &theirs), blocks)?);
            }
        }
        println!();
        sparse::report(&sim, &shape, &q, &k, &v, dense_mma)?;
        println!();
    }
    print_model(&fits);
    for line in totals {
        println!("{line}");
    }
    Ok(())
}

/// The same random inputs FA2's counters use (seeds 1, 2, 3).
fn inputs(shape: &AttnShape) -> (Vec<half::bf16>, Vec<half::bf16>, Vec<half::bf16>) {
    (fa2::random_bf16(1, shape.q_len()), fa2::random_bf16(2, shape.kv_len()), fa2::random_bf16(3, shape.kv_len()))
}

/// ptxas figures and theoretical occupancy of the dense prefill kernel and FA2's, on sm_80
/// and sm_90, from one ptxas when the nvcc 13.0 set is installed. Returns the resident
/// blocks per SM [sm_80, sm_90] as (ours, FA2's) when all are known.
fn print_resources(d: usize) -> Result<Option<[(u32, u32); 2]>> {
    let ours_name = prefill::kernel_name(&Source::<&[i32]>::Dense, DType::BF16, d)?;
    let ours_smem = prefill::shared_mem_bytes(&Source::<&[i32]>::Dense, d);
    let fa2_kernel = fa2::kernel(d, false, true)?;
    let fa2_traits = fa2::traits(d)?;
    let ptxas = resources::ptxas();
    println!("ptxas ({}):", ptxas.as_ref().map_or("build report, ptxas 12.4; FA2 needs the nvcc 13.0 set".into(), |p| p.display().to_string()));
    // One PTX serves both targets (the driver JIT-compiles it); ptxas measures it on each.
    let our_ptx = sparse_attn::ptx::modules().iter().find(|m| m.name == prefill::MODULE).map(|m| m.ptx);
    let mut blocks_of = [[None, None], [None, None]];
    for (arch, sm) in [&SM80, &SM90].into_iter().enumerate() {
        let ours = match (&ptxas, our_ptx) {
            (Some(p), Some(ptx)) => Some(resources::measure(p, ptx, sm.name, &ours_name)?),
            _ => resources::from_build_report(&ours_name, sm.name),
        };
        let theirs = match &ptxas {
            Some(p) => Some(resources::measure(p, &fa2::ptx(d)?, sm.name, fa2_kernel.name)?),
            None => None,
        };
        for (which, (who, r, threads, dynamic)) in [
            (ours_name.as_str(), ours, prefill::threads(&Source::<&[i32]>::Dense), ours_smem),
            ("FA2 flash_fwd_kernel", theirs, fa2_traits.n_threads as u32, fa2_traits.smem_bytes as u32),
        ]
        .into_iter()
        .enumerate()
        {
            match r {
                Some(r) => {
                    let smem = dynamic + r.static_shared;
                    let (blocks, occ) = occupancy(sm, threads, r.registers, smem);
                    blocks_of[arch][which] = Some(blocks);
                    println!(
                        "  {:<5} {who:<34} {:>3} registers, {} spill bytes, {:>6} B smem, {threads} threads: {blocks} blocks/SM, occupancy {:.0}%",
                        sm.name,
                        r.registers,
                        r.spill_bytes,
                        smem,
                        100.0 * occ
                    );
                }
                None => println!("  {:<5} {who:<34} n/a", sm.name),
            }
        }
    }
    let pair = |a: [Option<u32>; 2]| a[0].zip(a[1]);
    Ok(pair(blocks_of[0]).zip(pair(blocks_of[1])).map(|(sm80, sm90)| [sm80, sm90]))
}

/// One (head_dim, mask)'s fitted counts for both kernels, and their resident blocks per SM.
struct Fit {
    head_dim: usize,
    causal: bool,
    ours: model::Linear,
    fa2: model::Linear,
    /// Resident blocks per SM (ours, FA2's) on [sm_80, sm_90].
    blocks: [(u32, u32); 2],
}

/// The model's four resources from a launch's counters.
fn model_work(c: &ptx_sim::Counters) -> model::Work {
    model::Work([c.mma as f64, c.warp_instructions as f64, c.shared_wavefronts as f64, (c.global_load_bytes + c.global_store_bytes) as f64])
}

/// Fits the linear count model of both kernels from the run at `seq` (4 heads) and one
/// more at `seq / 2`.
fn fit_model(sim: &SimBackend, fa2_sim: &fa2::Fa2Sim, d: usize, seq: usize, causal: bool, at_seq: (&ptx_sim::Counters, &ptx_sim::Counters), blocks: [(u32, u32); 2]) -> Result<Fit> {
    let half = seq / 2;
    let shape = AttnShape::new(1, half, half, 4, 4, d)?;
    let (q, k, v) = inputs(&shape);
    let opts = AttnOptions { causal, ..Default::default() };
    let ours_half = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &Dense.source(&shape)?)?.counters;
    let fa2_half = fa2::counters(fa2_sim, &shape, causal)?;
    let t = fa2::traits(d)?;
    let ours_n = prefill::key_tile(&Source::<&[i32]>::Dense, d);
    let ours_geo = |s| model::geometry(1, 4, s, PREFILL_ROW_BLOCKS * PREFILL_TILE_M, ours_n, causal);
    let fa2_geo = |s| model::geometry(1, 4, s, t.block_m, t.block_n, causal);
    Ok(Fit {
        head_dim: d,
        causal,
        ours: model::Linear::fit((ours_geo(half), model_work(&ours_half)), (ours_geo(seq), model_work(at_seq.0))),
        fa2: model::Linear::fit((fa2_geo(half), model_work(&fa2_half)), (fa2_geo(seq), model_work(at_seq.1))),
        blocks,
    })
}

/// Writes the calibration and this crate's fits to `SPARSE_ATTN_PERF_MODEL_OUT`, when set,
/// for the GPU bench's model column (`benches/common/model.rs`).
fn export_calibration(k: f64, fits: &[Fit]) -> Result<()> {
    let Some(path) = std::env::var_os("SPARSE_ATTN_PERF_MODEL_OUT") else { return Ok(()) };
    let records = fits.iter().map(|f| model::FitRecord { head_dim: f.head_dim, causal: f.causal, blocks: [f.blocks[0].0, f.blocks[1].0], ours: f.ours }).collect();
    std::fs::write(&path, model::Calibration { k, fits: records }.to_tsv())?;
    println!("model: calibration written to {}", std::path::Path::new(&path).display());
    Ok(())
}

/// The MODEL table: FA2's published H100 forward figures, the model's FA2 prediction after
/// one calibration factor, the residual, and this crate's dense kernel as a time ratio to
/// FA2 in the same model.
fn print_model(fits: &[Fit]) {
    if fits.is_empty() {
        println!("model: skipped (needs ptxas figures for both kernels: bash scripts/install-cuda-toolchain.sh nvcc)\n");
        return;
    }
    // Modelled seconds of both kernels at a published shape on `gpu` (blocks per SM of
    // `arch`), before calibration.
    let on = |gpu: &model::Gpu, arch: usize, f: &Fit, seq: usize| -> ((f64, &str), (f64, &str), f64) {
        let t = fa2::traits(f.head_dim).expect("fitted head dims have FA2 traits");
        let (batch, heads) = (16384 / seq, 2048 / f.head_dim);
        let g_fa2 = model::geometry(batch, heads, seq, t.block_m, t.block_n, f.causal);
        let ours_n = prefill::key_tile(&Source::<&[i32]>::Dense, f.head_dim);
        let g_ours = model::geometry(batch, heads, seq, PREFILL_ROW_BLOCKS * PREFILL_TILE_M, ours_n, f.causal);
        let hbm = model::compulsory_bytes(batch, heads, seq, f.head_dim);
        let fa2_s = model::seconds(gpu, f.fa2.predict(g_fa2), hbm, g_fa2.ctas, f.blocks[arch].1);
        let ours_s = model::seconds(gpu, f.ours.predict(g_ours), hbm, g_ours.ctas, f.blocks[arch].0);
        (fa2_s, ours_s, model::flops(batch, heads, seq, f.head_dim, f.causal))
    };
    let gpu = &model::H100;
    let at = |f: &Fit, seq: usize| on(gpu, 1, f, seq);
    let published = |f: &Fit| model::FA2_H100_FORWARD.iter().find(|(d, c, _)| *d == f.head_dim && *c == f.causal).map(|x| x.2);
    // Calibrate on the largest non-causal published point of the first head_dim run.
    let Some((cal, cal_tflops)) = fits.iter().find(|f| !f.causal).and_then(|f| published(f).map(|p| (f, p[5]))) else {
        println!("model: no published FA2 figure for these head dims\n");
        return;
    };
    let ((fa2_s, _), _, fl) = at(cal, 16384);
    let k = (fl / (cal_tflops * 1e12)) / fa2_s;
    if let Err(e) = export_calibration(k, fits) {
        println!("model: could not write SPARSE_ATTN_PERF_MODEL_OUT: {e}");
    }
    println!(
        "MODEL, not a measurement: {}, calibrated once on FA2 hd{} non-causal at seq 16K ({cal_tflops} TFLOP/s published), k = {k:.2}",
        gpu.name, cal.head_dim
    );
    println!("source: FlashAttention-3 paper, forward-speed figure (flash-attention repo assets/flash3_fp16_fwd.png); see examples/perf_report/model.rs");
    println!("kernel                 seq   FA2 published  FA2 model  residual   bound (FA2, ours)  ours / FA2 model time: H100, A100 (k cancels)");
    for f in fits {
        let Some(values) = published(f) else { continue };
        for (i, &seq) in model::PUBLISHED_SEQS.iter().enumerate() {
            let ((fa2_s, fa2_bound), (ours_s, ours_bound), fl) = at(f, seq);
            let ((a100_fa2, _), (a100_ours, _), _) = on(&model::A100, 0, f, seq);
            let predicted = fl / (k * fa2_s) / 1e12;
            println!(
                "hd{} {:<11} {:>7}  {:>9.0} TF/s  {:>6.0} TF/s  {:>+7.1}%   {:>6}, {:<6}     {:.2}, {:.2}",
                f.head_dim,
                if f.causal { "causal" } else { "non-causal" },
                seq,
                values[i],
                predicted,
                100.0 * (predicted / values[i] - 1.0),
                fa2_bound,
                ours_bound,
                ours_s / fa2_s,
                a100_ours / a100_fa2
            );
        }
    }
    println!();
}
