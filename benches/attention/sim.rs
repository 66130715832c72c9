//! The attention bench on the simulated CUDA driver (`SPARSE_ATTN_DEVICE=sim`): the
//! simulator has no clock (event timing is NOT_SUPPORTED) and runs kernels thousands of
//! times slower than a GPU, so instead of criterion it launches every case once on a small
//! problem and prints the simulator's work counters for it. These are instruction counts of
//! the simulated kernels, never times.

use super::*;

/// Small enough that all cases together run in a few seconds on the simulator (release),
/// long enough (16 key blocks) that 30% and 10% block-sparse differ (at 3% the forced sink
/// and diagonal tiles are all that is kept, as in 10%).
const SEQ: usize = 1024;
const HEADS_Q: usize = 4;
const HEADS_KV: usize = 2;

/// The GPU bench's budgets scaled by 1/8 with the sequence: unscaled, 1000 + 1024 and 2048
/// would keep nearly every key of 1024.
const BUDGETS: Budgets = Budgets { nnz_v: 125, nnz_s: 128, topk: 256 };

/// Warp-instructions and `mma.sync` instructions since the last read (which resets them).
fn counters() -> Result<(u64, u64)> {
    ptx_sim_driver::counters(true)
        .map(|c| (c.warp_instructions, c.mma))
        .ok_or_else(|| Error::InvalidParameter { name: "SPARSE_ATTN_DEVICE", reason: "the simulated driver reports no counters".into() })
}

fn print_counts(name: &str, (warp_instructions, mma): (u64, u64)) {
    println!("sim: {name:<40} {warp_instructions:>14} {mma:>12}");
}

pub fn run() -> Result<()> {
    let shape = AttnShape::new(1, SEQ, SEQ, HEADS_Q, HEADS_KV, HEAD_DIM)?;
    let ctx = gpu_context(0).map_err(|reason| Error::InvalidParameter { name: "SPARSE_ATTN_DEVICE", reason: reason.to_string() })?;
    if sparse_attn::ptx::modules().is_empty() {
        println!("skipped: this build carries no kernels (no CUDA compiler at build time; run scripts/install-cuda-toolchain.sh)");
        return Ok(());
    }
    let stream = ctx.default_stream();
    let opts = AttnOptions::causal();
    let mut bufs = Buffers {
        q: stream.clone_htod(&random_bf16(shape.q_len(), 1))?,
        k: stream.clone_htod(&random_bf16(shape.kv_len(), 2))?,
        v: stream.clone_htod(&random_bf16(shape.kv_len(), 3))?,
        out: stream.alloc_zeros::<bf16>(shape.q_len())?,
    };
    stream.synchronize()?;
    println!(
        "simulator run: batch 1, seq {SEQ}, {HEADS_Q} q / {HEADS_KV} kv heads, head_dim {HEAD_DIM}, bf16, causal; \
         vertical-slash {} + {} per head, top-k {} keys (the case names keep the GPU budgets)",
        BUDGETS.nnz_v, BUDGETS.nnz_s, BUDGETS.topk
    );
    println!("one launch per case; SIMULATOR COUNTS, not times");
    println!("sim: {:<40} {:>14} {:>12}", "case", "warp-instr", "mma");
    counters()?;
    for spec in &CASES {
        let case = build_case(spec, &shape, BUDGETS)?;
        cross_check(&shape, &case)?;
        let pattern = upload(&stream, &case.source(&shape)?)?;
        stream.synchronize()?;
        counters()?;
        launch(&stream, &shape, &opts, &mut bufs, &pattern)?;
        stream.synchronize()?;
        print_counts(spec.name, counters()?);
        if let Some((host_index, vs)) = &case.converted {
            let vertical = stream.clone_htod(vs.vertical_indexes())?;
            let slash = stream.clone_htod(vs.slash_indexes())?;
            let mut out = alloc_vs_index(&stream, index_dims(vs, &shape)?)?;
            stream.synchronize()?;
            counters()?;
            vs_convert(&stream, &shape, &vertical, &slash, &mut out)?;
            stream.synchronize()?;
            let c = counters()?;
            if &download_vs_index(&stream, &out)? != host_index {
                return Err(Error::DescriptorMismatch { reason: "vertical_slash_convert on the simulator differs from the host conversion".into() });
            }
            print_counts(&convert_case_name(vs), c);
        }
    }
    println!("kept element counts equal the descriptors' element masks; the converted vertical-slash index equals the host's");
    println!("done: simulator counts (warp-instructions, mma.sync), not times");
    Ok(())
}
