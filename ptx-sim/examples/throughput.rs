//! Measures the simulator's speed on an ALU-bound kernel (`alu_loop` from
//! tests/kernels/basics.cu: 8 integer instructions per loop iteration, no memory traffic in
//! the loop) and prints thread-instructions per second.
//!
//! Run with: `cargo run --release -p ptx-sim --example throughput [blocks] [iters] [host threads]`
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = std::env::args().skip(1).map(|s| s.parse::<u64>());
    let blocks = a.next().transpose()?.unwrap_or(64) as u32;
    let iters = a.next().transpose()?.unwrap_or(2000) as i32;
    let threads = a.next().transpose()?.unwrap_or(0) as usize;
    let dev = Device::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/basics.ptx"))?;
    let m = dev.load_ptx(&text)?;
    let out = dev.alloc(blocks as usize * 256 * 4)?;
    let cfg = LaunchConfig::linear(blocks, 256);
    let args = Args::new().ptr(out).val(iters);
    let opts = LaunchOptions { threads, ..LaunchOptions::default() };
    dev.launch(&m, "alu_loop", &LaunchConfig::linear(1, 32), &args.slices(), &opts)?;
    let t = Instant::now();
    let c = dev.launch(&m, "alu_loop", &cfg, &args.slices(), &opts)?;
    let s = t.elapsed().as_secs_f64();
    let host_threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    println!(
        "alu_loop: {} blocks x 256 threads x {} iterations on {} host threads: {} thread-instructions in {:.3} s = {:.1} M thread-instructions/s ({:.1} M warp-instructions/s)",
        blocks,
        iters,
        host_threads,
        c.thread_instructions,
        s,
        c.thread_instructions as f64 / s / 1e6,
        c.warp_instructions as f64 / s / 1e6
    );
    Ok(())
}
