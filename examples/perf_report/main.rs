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
mod occupancy;
mod resources;
mod sparse;
mod work;

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
    for &d in &head_dims {
        print_resources(d)?;
        let shape = AttnShape::new(1, seq, seq, 4, 4, d)?;
        let q = fa2::random_bf16(1, shape.q_len());
        let k = fa2::random_bf16(2, shape.kv_len());
        let v = fa2::random_bf16(3, shape.kv_len());
        let dense: Source<_> = Dense.source(&shape)?;
        let mut dense_mma = [0; 2];
        println!("{HEADER}");
        for (i, causal) in [false, true].into_iter().enumerate() {
            let opts = AttnOptions { causal, ..Default::default() };
            let ours = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v }, &dense)?.counters;
            let theirs = fa2::counters(&fa2_sim, &shape, causal)?;
            dense_mma[i] = ours.mma;
            let label = format!("hd{d} bf16 {}", if causal { "causal" } else { "non-causal" });
            println!("{}", Work { counters: ours.clone() }.row(&format!("dense {label}"), ours.mma));
            println!("{}", Work { counters: theirs.clone() }.row(&format!("FA2 {label}"), ours.mma));
            totals.push(ratio_line(&label, &ours, &theirs));
        }
        println!();
        sparse::report(&sim, &shape, &q, &k, &v, dense_mma)?;
        println!();
    }
    for line in totals {
        println!("{line}");
    }
    Ok(())
}

/// ptxas figures and theoretical occupancy of the dense prefill kernel and FA2's, on sm_80
/// and sm_90, from one ptxas when the nvcc 13.0 set is installed.
fn print_resources(d: usize) -> Result<()> {
    let ours_name = prefill::kernel_name(&Source::<&[i32]>::Dense, DType::BF16, d)?;
    let ours_smem = prefill::shared_mem_bytes(d);
    let fa2_kernel = fa2::kernel(d, false, true)?;
    let fa2_traits = fa2::traits(d)?;
    let ptxas = resources::ptxas();
    println!("ptxas ({}):", ptxas.as_ref().map_or("build report, ptxas 12.4; FA2 needs the nvcc 13.0 set".into(), |p| p.display().to_string()));
    let our_ptx = |arch: &str| sparse_attn::ptx::modules().iter().find(|m| m.name == prefill::MODULE && m.target.arch == arch).map(|m| m.ptx);
    for sm in [&SM80, &SM90] {
        let ours = match (&ptxas, our_ptx(sm.name)) {
            (Some(p), Some(ptx)) => Some(resources::measure(p, ptx, sm.name, &ours_name)?),
            _ => resources::from_build_report(&ours_name, sm.name),
        };
        let theirs = match &ptxas {
            Some(p) => Some(resources::measure(p, &fa2::ptx(d)?, sm.name, fa2_kernel.name)?),
            None => None,
        };
        for (who, r, threads, dynamic) in [
            (ours_name.as_str(), ours, prefill::THREADS, ours_smem),
            ("FA2 flash_fwd_kernel", theirs, fa2_traits.n_threads as u32, fa2_traits.smem_bytes as u32),
        ] {
            match r {
                Some(r) => {
                    let smem = dynamic + r.static_shared;
                    let (blocks, occ) = occupancy(sm, threads, r.registers, smem);
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
    Ok(())
}
