//! The vertical-slash conversion kernel (kernels/vs_convert.cu, the PTX build/main.rs embedded),
//! launched from the crate's own plan on the PTX simulator, equals the CPU converter
//! exactly; adversarial indices never make it touch memory outside its buffers (the
//! simulator's memcheck turns any stray access into an error). Skips with the reason when
//! the crate was built without a CUDA compiler.

mod common;

use common::{random_vertical_slash, Rng};
use sparse_attn::pattern::vs_convert::{convert, index_dims, row_blocks, VsIndex, VsIndexDims};
use sparse_attn::sim::SimBackend;
use sparse_attn::AttnShape;

fn backend() -> Option<SimBackend> {
    if let Err(e) = sparse_attn::ptx::module_for("vs_convert", 80) {
        println!("skipped: {e}");
        return None;
    }
    Some(SimBackend::new(80))
}

/// Runs `vertical_slash_convert` for `dims` under `shape` on inputs that need not be valid.
/// Outputs start as garbage so every element the kernel must write is checked.
fn run(sim: &SimBackend, shape: &AttnShape, dims: VsIndexDims, verticals: &[i32], slashes: &[i32]) -> sparse_attn::Result<VsIndex> {
    let lens = dims.lens();
    let garbage = |n: usize| sim.upload(&vec![0x5A5A_5A5Ai32; n.max(1)]);
    let out = VsIndex {
        dims,
        block_count: garbage(lens.rows)?,
        block_offset: garbage(lens.block_offset)?,
        column_count: garbage(lens.rows)?,
        column_index: garbage(lens.column_index)?,
    };
    let plan = sparse_attn::plan::vs_convert::plan(shape, sim.upload(verticals)?, sim.upload(slashes)?, &out)?;
    sim.launch(&plan, &Default::default())?;
    Ok(out.try_map(|_, buf| sim.download::<i32>(buf))?.truncate_to_dims())
}

#[test]
fn simulated_kernel_equals_cpu_converter() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(2024);
    let mut with_both = 0;
    for case in 0..60 {
        let seq_q = rng.range(1, 700);
        let seq_k = if case % 2 == 0 { seq_q } else { rng.range(1, 700) };
        let heads_kv = rng.range(1, 2);
        let shape = AttnShape::new(rng.range(1, 2), seq_q, seq_k, heads_kv * rng.range(1, 4), heads_kv, 64).unwrap();
        let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
        let vs = random_vertical_slash(&mut rng, &shape, heads, 40, case % 3 != 0);
        let cpu = convert(&vs, &shape).unwrap();
        let got = run(&sim, &shape, index_dims(&vs, &shape).unwrap(), vs.vertical_indexes(), vs.slash_indexes()).unwrap();
        assert_eq!(got, cpu, "case {case}: {shape:?}, nnz_v {}, nnz_s {}", vs.nnz_v(), vs.nnz_s());
        with_both += usize::from(cpu.block_count.iter().any(|&c| c > 0) && cpu.column_count.iter().any(|&c| c > 0));
    }
    // Not vacuous: many cases have both tiles and columns to compare.
    assert!(with_both >= 20, "only {with_both} of 60 cases produced both tiles and columns");
}

#[test]
fn adversarial_indices_stay_in_bounds() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(77);
    for case in 0..40 {
        let (seq_q, seq_k) = (rng.range(1, 300), rng.range(1, 300));
        let (batch, heads) = (rng.range(1, 2), rng.range(1, 2));
        let (nnz_v, nnz_s) = (rng.range(0, 30), rng.range(0, 30));
        let mut wild = |n: usize| -> Vec<i32> {
            (0..n)
                .map(|_| match rng.below(4) {
                    0 => rng.next_u64() as i32,
                    1 => -(rng.range(1, 1000) as i32),
                    2 => rng.below(2 * seq_k) as i32,
                    _ => i32::MAX - rng.below(3) as i32,
                })
                .collect()
        };
        let (v, s) = (wild(batch * heads * nnz_v), wild(batch * heads * nnz_s));
        // Sizes are consistent (the host checks those); the index values are not.
        let shape = AttnShape::new(batch, seq_q, seq_k, heads, heads, 64).unwrap();
        let dims = VsIndexDims::new(batch, heads, row_blocks(seq_q), nnz_v, nnz_s).unwrap();
        let out = run(&sim, &shape, dims, &v, &s).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let counts = out.block_count.iter().map(|&c| (c, nnz_s)).chain(out.column_count.iter().map(|&c| (c, nnz_v)));
        for (c, cap) in counts {
            assert!((0..=cap as i32).contains(&c), "case {case}: count {c} outside 0..={cap}");
        }
    }
}

#[test]
fn every_embedded_module_loads_in_the_simulator() {
    let modules = sparse_attn::ptx::modules();
    if modules.is_empty() {
        println!("skipped: built without a CUDA compiler, no PTX embedded");
        return;
    }
    let dev = ptx_sim::Device::new();
    for m in modules {
        let loaded = dev.load_ptx(m.ptx).unwrap_or_else(|e| panic!("kernels/{}.cu for {}: {e}", m.name, m.target.arch));
        assert!(!loaded.kernel_names().is_empty(), "kernels/{}.cu for {} has no entry", m.name, m.target.arch);
    }
}
