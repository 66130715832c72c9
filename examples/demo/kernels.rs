//! The demo's kernel section: runs the index-conversion kernel and every attention kernel
//! on a GPU through cudarc when one is usable, otherwise on the PTX simulator, and checks
//! each against the CPU reference.
//!
//! On a GPU it prints wall times measured around a synchronised launch; on the simulator
//! it prints the simulator's work counters instead (never a time: simulated speed says
//! nothing about a GPU).

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::CudaStream;
use half::bf16;
use sparse_attn::cuda::{attention, convert_on_gpu, upload, AttnTensors};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::{AttnOptions, AttnShape, Error, Result, Source};
use std::borrow::Cow;

use crate::data::Inputs;
use crate::Case;

/// bf16 inputs, f32 accumulation: the output's own rounding (2^-8 relative on values of
/// order 1) plus rounding the probabilities to bf16 before P.V bound the error well below
/// this; the simulator's attention tests hold every kernel to the same figure.
const BF16_TOLERANCE: f64 = 1e-2;
/// LSE is accumulated in f32 from f32 scores.
const LSE_TOLERANCE: f64 = 1e-3;

enum Backend {
    Gpu(Arc<CudaStream>),
    Sim(SimBackend),
}

/// One kernel's result, and how its cost is reported.
struct Run {
    out: Vec<bf16>,
    lse: Vec<f32>,
    cost: Cost,
}

enum Cost {
    /// Measured on the GPU around a synchronised launch.
    Seconds(f64),
    /// mma.sync instructions the simulator executed.
    Mma(u64),
}

pub fn run_all(shape: &AttnShape, opts: &AttnOptions, inputs: &Inputs, cases: &[Case]) -> Result<()> {
    if sparse_attn::ptx::modules().is_empty() {
        println!("kernels: none in this build (no CUDA compiler at build time); run scripts/demo.sh to install it");
        return Ok(());
    }
    let backend = match sparse_attn::cuda::gpu_context(0) {
        Ok(ctx) => {
            println!("kernels on the GPU (times: wall time of one synchronised launch, after a warm-up launch)");
            Backend::Gpu(ctx.default_stream())
        }
        Err(reason) => {
            println!("kernels on the PTX simulator: no GPU ({reason}). Costs are simulator work counts, not times.");
            Backend::Sim(SimBackend::new(80))
        }
    };
    println!("{:<34} {:>11} {:>11} {:>22}", "kernel", "max |err|", "LSE |err|", "cost");
    let mut dense_mma = None;
    for case in cases {
        if let Some(vs) = case.converts {
            let cpu_index = convert(vs, shape)?;
            let index = match &backend {
                Backend::Gpu(stream) => convert_on_gpu(stream, vs, shape)?,
                Backend::Sim(sim) => sim.vs_convert(vs, shape)?,
            };
            let verdict = if index == cpu_index { "equals" } else { "DIFFERS FROM" };
            println!("{:<34} {verdict} the CPU converter", "vertical_slash_convert");
            if index != cpu_index {
                return Err(Error::DescriptorMismatch { reason: "the index kernel differs from the CPU converter".into() });
            }
        }
        let run = match &backend {
            Backend::Gpu(stream) => run_gpu(stream, shape, opts, inputs, &case.source)?,
            Backend::Sim(sim) => run_sim(sim, shape, opts, inputs, &case.source)?,
        };
        let (err, lse_err) = errors(&run, &case.reference.out, &case.reference.lse);
        let cost = match run.cost {
            Cost::Seconds(s) => format!("{:.3} ms", s * 1e3),
            Cost::Mma(n) => {
                let dense = *dense_mma.get_or_insert(n);
                format!("{n} mma ({:.1}%)", 100.0 * n as f64 / dense as f64)
            }
        };
        println!("{:<34} {err:>11.2e} {lse_err:>11.2e} {cost:>22}", case.name);
        if err > BF16_TOLERANCE || lse_err > LSE_TOLERANCE {
            return Err(Error::DescriptorMismatch {
                reason: format!("{}: kernel differs from the CPU reference (out {err:e}, LSE {lse_err:e})", case.name),
            });
        }
    }
    println!("\nmax |err|: largest difference between the bf16 kernel output and the f64 reference (bound {BF16_TOLERANCE});");
    println!("LSE |err| likewise for the log-sum-exp (bound {LSE_TOLERANCE}).");
    Ok(())
}

/// Largest output and LSE differences; rows that see no key must be -inf on both sides.
fn errors(run: &Run, out: &[f64], lse: &[f64]) -> (f64, f64) {
    let err = run.out.iter().zip(out).map(|(a, b)| (a.to_f64() - b).abs()).fold(0.0, f64::max);
    let lse_err = run
        .lse
        .iter()
        .zip(lse)
        .map(|(&a, &b)| if a as f64 == b { 0.0 } else { (a as f64 - b).abs() })
        .fold(0.0, f64::max);
    (if err.is_nan() { f64::INFINITY } else { err }, if lse_err.is_nan() { f64::INFINITY } else { lse_err })
}

fn run_sim(sim: &SimBackend, shape: &AttnShape, opts: &AttnOptions, inputs: &Inputs, source: &Source<Cow<'_, [i32]>>) -> Result<Run> {
    let r = sim.attention(shape, opts, HostTensors { q: &inputs.q, k: &inputs.k, v: &inputs.v }, source)?;
    Ok(Run { out: r.out, lse: r.lse, cost: Cost::Mma(r.counters.mma) })
}

fn run_gpu(stream: &Arc<CudaStream>, shape: &AttnShape, opts: &AttnOptions, inputs: &Inputs, source: &Source<Cow<'_, [i32]>>) -> Result<Run> {
    let q = stream.clone_htod(&inputs.q)?;
    let k = stream.clone_htod(&inputs.k)?;
    let v = stream.clone_htod(&inputs.v)?;
    let mut out = stream.alloc_zeros::<bf16>(shape.q_len())?;
    let mut lse = stream.alloc_zeros::<f32>(shape.lse_len())?;
    let opts = AttnOptions { return_lse: true, ..*opts };
    // Index tensors are uploaded before the clock starts; the timed part is the launch.
    let source = upload(stream, source)?;
    // The first launch loads (JIT-compiles) the module; time the second.
    let mut seconds = 0.0;
    for _ in 0..2 {
        stream.synchronize()?;
        let start = Instant::now();
        let tensors = AttnTensors::contiguous(shape, &q, &k, &v, &mut out, Some(&mut lse));
        attention(stream, shape, &opts, tensors, &source)?;
        stream.synchronize()?;
        seconds = start.elapsed().as_secs_f64();
    }
    Ok(Run {
        out: stream.clone_dtoh(&out)?,
        lse: stream.clone_dtoh(&lse)?,
        cost: Cost::Seconds(seconds),
    })
}
