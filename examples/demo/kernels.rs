//! The demo's kernel section: runs the index-conversion kernel, every attention kernel and
//! split-KV decode (split kernel + merge) through the public cudarc API
//! (`sparse_attn::cuda`), on the device `SPARSE_ATTN_DEVICE` picks, and checks each against
//! the CPU reference.
//!
//! On a GPU it prints wall times measured around a synchronised launch; on the simulated
//! CUDA driver (ptx-sim-driver) it prints the simulator's work counters instead (never a
//! time: simulated speed says nothing about a GPU, and the simulated driver has no event
//! timing).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use half::bf16;
use ptx_sim_driver::{DeviceChoice, Selected};
use sparse_attn::cuda::{attention, convert_on_gpu, decode, upload, AttnTensors, DecodeTensors};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::plan::decode::{workspace_len, DecodeOptions, DecodeSource};
use sparse_attn::plan::AttnLayouts;
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
    let choice: DeviceChoice = setting.parse().map_err(|e| format!("SPARSE_ATTN_DEVICE: {e}"))?;
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
        report(case.name, &run, &case.reference.out, &case.reference.lse, &mut dense_cost)?;
    }
    // Decode of the last token over the whole cache: the last row of dense attention.
    if let Some(dense) = cases.iter().find(|c| matches!(c.source, Source::Dense)) {
        let row = (shape.seq_q() - 1) * shape.heads_q() * shape.head_dim();
        let out = &dense.reference.out[row..row + shape.heads_q() * shape.head_dim()];
        let lse: Vec<f64> = (0..shape.heads_q()).map(|h| dense.reference.lse[(h + 1) * shape.seq_q() - 1]).collect();
        let run = run_decode(device, shape, inputs)?;
        report("decode (last token, split-KV)", &run, out, &lse, &mut dense_cost)?;
    }
    println!("\nmax |err|: largest difference between the bf16 kernel output and the f64 reference (bound {BF16_TOLERANCE});");
    println!("LSE |err| likewise for the log-sum-exp (bound {LSE_TOLERANCE}).");
    if device.on_sim {
        println!("mma: the simulator's mma.sync count of the launch (its share of dense's); warp-instr: all");
        println!("warp-instructions it executed. Simulator counts, not GPU times.");
    }
    Ok(())
}

/// Prints one kernel's errors and cost, and fails beyond the tolerances. The first timed or
/// counted kernel is the dense baseline the others are compared with.
fn report(name: &str, run: &Run, out: &[f64], lse: &[f64], dense_cost: &mut Option<f64>) -> Result<()> {
    let (err, lse_err) = errors(run, out, lse);
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
    println!("{name:<34} {err:>11.2e} {lse_err:>11.2e} {cost:>36}");
    if err > BF16_TOLERANCE || lse_err > LSE_TOLERANCE {
        return Err(Error::DescriptorMismatch { reason: format!("{name}: kernel differs from the CPU reference (out {err:e}, LSE {lse_err:e})") });
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

/// Runs `launch` once on the simulator, with its work counters, or twice on a GPU, timing
/// the second (the first loads the module).
fn measure(device: &Device, mut launch: impl FnMut() -> Result<()>) -> Result<Cost> {
    let stream = &device.stream;
    stream.synchronize()?;
    if device.on_sim {
        // Uploads run no kernel; the reset drops the counts of earlier work.
        ptx_sim_driver::counters(true);
        launch()?;
        stream.synchronize()?;
        let c = ptx_sim_driver::counters(true).unwrap_or_default();
        return Ok(Cost::Sim { mma: c.mma, warp_instructions: c.warp_instructions });
    }
    let mut seconds = 0.0;
    for _ in 0..2 {
        stream.synchronize()?;
        let start = Instant::now();
        launch()?;
        stream.synchronize()?;
        seconds = start.elapsed().as_secs_f64();
    }
    Ok(Cost::Seconds(seconds))
}

/// Split-KV decode (`sparse_attn::cuda::decode`: the split kernel, then the merge) of the
/// last query token over the whole cache, with the LSE.
fn run_decode(device: &Device, shape: &AttnShape, inputs: &Inputs) -> Result<Run> {
    let stream = &device.stream;
    let seq = shape.seq_k();
    let step = AttnShape::new(shape.batch(), 1, seq, shape.heads_q(), shape.heads_kv(), shape.head_dim())?;
    let sm_count = stream.context().attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize;
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count };
    let seqlens = vec![seq as i32];
    let last = (shape.seq_q() - 1) * shape.heads_q() * shape.head_dim();
    let q = stream.clone_htod(&inputs.q[last..])?;
    let (k, v, seqlens_k) = (stream.clone_htod(&inputs.k)?, stream.clone_htod(&inputs.v)?, stream.clone_htod(&seqlens)?);
    let mut out = stream.alloc_zeros::<bf16>(step.q_len())?;
    let mut lse = stream.alloc_zeros::<f32>(step.lse_len())?;
    let mut workspace = stream.alloc_zeros::<f32>(workspace_len(&step, None, &opts, &DecodeSource::<Vec<i32>>::Dense)?.max(1))?;
    let cost = measure(device, || {
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out, lse: Some(&mut lse), sinks: None, layouts: AttnLayouts::contiguous(&step) };
        let meta = DecodeTensors { seqlens_k: &seqlens_k, host_seqlens_k: Some(&seqlens), pages: None, packed: None };
        decode(stream, &step, &opts, tensors, meta, &mut workspace, &DecodeSource::<CudaSlice<i32>>::Dense)
    })?;
    Ok(Run { out: stream.clone_dtoh(&out)?, lse: stream.clone_dtoh(&lse)?, cost })
}

/// One attention launch through `sparse_attn::cuda::attention`, measured by [`measure`].
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
    let cost = measure(device, || attention(stream, shape, &opts, AttnTensors::contiguous(shape, &q, &k, &v, &mut out, Some(&mut lse)), &source))?;
    Ok(Run { out: stream.clone_dtoh(&out)?, lse: stream.clone_dtoh(&lse)?, cost })
}
