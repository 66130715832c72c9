//! The demo's kernel section: runs the index-conversion kernel and every attention kernel
//! through the public cudarc API (`sparse_attn::cuda`), on the device `SPARSE_ATTN_DEVICE`
//! picks, and checks each against the CPU reference.
//!
//! On a GPU it prints wall times measured around a synchronised launch; on the simulated
//! CUDA driver (ptx-sim-driver) it prints the simulator's work counters instead (never a
//! time: simulated speed says nothing about a GPU, and the simulated driver has no event
//! timing).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaStream};
use half::bf16;
use ptx_sim_driver::{DeviceChoice, Selected};
use sparse_attn::cuda::{attention, convert_on_gpu, upload, AttnTensors};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::{AttnOptions, AttnShape, Error, Result, Source};

use crate::data::Inputs;
use crate::Case;

/// bf16 inputs, f32 accumulation: the output's own rounding (2^-8 relative on values of
/// order 1) plus rounding the probabilities to bf16 before P.V bound the error well below
/// this; the simulator's attention tests hold every kernel to the same figure.
const BF16_TOLERANCE: f64 = 1e-2;
/// LSE is accumulated in f32 from f32 scores.
const LSE_TOLERANCE: f64 = 1e-3;

/// The stream every kernel runs on, and whether it belongs to the simulated driver.
pub struct Device {
    stream: Arc<CudaStream>,
    pub on_sim: bool,
}

/// Binds the CUDA driver `SPARSE_ATTN_DEVICE` asks for (`cuda`, `sim` or `auto`, the
/// default) before any other cudarc call, as cudarc binds libcuda once per process. `None`
/// when the build has no kernels.
pub fn select_device() -> std::result::Result<Option<Device>, Box<dyn std::error::Error>> {
    if sparse_attn::ptx::modules().is_empty() {
        println!("kernels: none in this build (no CUDA compiler at build time); run scripts/demo.sh to install it");
        return Ok(None);
    }
    let setting = std::env::var("SPARSE_ATTN_DEVICE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "auto".into());
    let choice: DeviceChoice = setting.parse()?;
    let selected = ptx_sim_driver::select(choice).map_err(|e| format!("SPARSE_ATTN_DEVICE={setting}: {e}"))?;
    let ctx = CudaContext::new(0)?;
    println!("device: {selected}, \"{}\" (SPARSE_ATTN_DEVICE={setting}); kernels run through sparse_attn::cuda (cudarc)", ctx.name()?);
    Ok(Some(Device { stream: ctx.default_stream(), on_sim: selected == Selected::Sim }))
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
    /// What the simulated driver executed for the launch: mma.sync and all warp-instructions.
    Sim { mma: u64, warp_instructions: u64 },
}

pub fn run_all(device: &Device, shape: &AttnShape, opts: &AttnOptions, inputs: &Inputs, cases: &[Case]) -> Result<()> {
    let stream = &device.stream;
    if device.on_sim {
        println!("cost: the simulator's work counts of each launch (ptx_sim_driver::counters), not times");
    } else {
        println!("cost: wall time of one synchronised launch after a warm-up launch, and dense's time over it");
    }
    println!("{:<34} {:>11} {:>11} {:>36}", "kernel", "max |err|", "LSE |err|", "cost");
    let mut dense_cost = None;
    for case in cases {
        if let Some(vs) = case.converts {
            let cpu_index = convert(vs, shape)?;
            let index = convert_on_gpu(stream, vs, shape)?;
            let verdict = if index == cpu_index { "equals" } else { "DIFFERS FROM" };
            println!("{:<34} {verdict} the CPU converter", "vertical_slash_convert");
            if index != cpu_index {
                return Err(Error::DescriptorMismatch { reason: "the index kernel differs from the CPU converter".into() });
            }
        }
        let run = run_kernel(device, shape, opts, inputs, &case.source)?;
        let (err, lse_err) = errors(&run, &case.reference.out, &case.reference.lse);
        let cost = match run.cost {
            Cost::Seconds(s) => {
                let dense = *dense_cost.get_or_insert(s);
                format!("{:.3} ms ({:.2}x dense)", s * 1e3, dense / s)
            }
            Cost::Sim { mma, warp_instructions } => {
                let dense = *dense_cost.get_or_insert(mma as f64);
                format!("{mma} mma ({:.1}%), {:.1}M warp-instr", 100.0 * mma as f64 / dense, warp_instructions as f64 / 1e6)
            }
        };
        println!("{:<34} {err:>11.2e} {lse_err:>11.2e} {cost:>36}", case.name);
        if err > BF16_TOLERANCE || lse_err > LSE_TOLERANCE {
            return Err(Error::DescriptorMismatch {
                reason: format!("{}: kernel differs from the CPU reference (out {err:e}, LSE {lse_err:e})", case.name),
            });
        }
    }
    println!("\nmax |err|: largest difference between the bf16 kernel output and the f64 reference (bound {BF16_TOLERANCE});");
    println!("LSE |err| likewise for the log-sum-exp (bound {LSE_TOLERANCE}).");
    if device.on_sim {
        println!("mma: the simulator's mma.sync count of the launch (its share of dense's); warp-instr: all");
        println!("warp-instructions it executed. Simulator counts, not GPU times.");
    }
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

/// One attention launch through `sparse_attn::cuda::attention`: timed on a GPU (the second of
/// two launches, the first loading the module), counted once on the simulator.
fn run_kernel(device: &Device, shape: &AttnShape, opts: &AttnOptions, inputs: &Inputs, source: &Source<Cow<'_, [i32]>>) -> Result<Run> {
    let stream = &device.stream;
    let q = stream.clone_htod(&inputs.q)?;
    let k = stream.clone_htod(&inputs.k)?;
    let v = stream.clone_htod(&inputs.v)?;
    let mut out = stream.alloc_zeros::<bf16>(shape.q_len())?;
    let mut lse = stream.alloc_zeros::<f32>(shape.lse_len())?;
    let opts = AttnOptions { return_lse: true, ..*opts };
    // Index tensors are uploaded before the clock starts; the timed part is the launch.
    let source = upload(stream, source)?;
    stream.synchronize()?;
    let cost = if device.on_sim {
        // Uploads run no kernel; the reset drops the counts of earlier work.
        ptx_sim_driver::counters(true);
        attention(stream, shape, &opts, AttnTensors::contiguous(shape, &q, &k, &v, &mut out, Some(&mut lse)), &source)?;
        stream.synchronize()?;
        let c = ptx_sim_driver::counters(true).unwrap_or_default();
        Cost::Sim { mma: c.mma, warp_instructions: c.warp_instructions }
    } else {
        let mut seconds = 0.0;
        for _ in 0..2 {
            stream.synchronize()?;
            let start = Instant::now();
            attention(stream, shape, &opts, AttnTensors::contiguous(shape, &q, &k, &v, &mut out, Some(&mut lse)), &source)?;
            stream.synchronize()?;
            seconds = start.elapsed().as_secs_f64();
        }
        Cost::Seconds(seconds)
    };
    Ok(Run { out: stream.clone_dtoh(&out)?, lse: stream.clone_dtoh(&lse)?, cost })
}
