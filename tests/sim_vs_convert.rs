//! The vertical-slash conversion kernel (kernels/vs_convert.cu, the PTX build.rs embedded),
//! launched from the crate's own plan on the PTX simulator, equals the CPU converter
//! exactly; adversarial indices never make it touch memory outside its buffers (the
//! simulator's memcheck turns any stray access into an error). Skips with the reason when
//! the crate was built without nvcc.

mod common;

use common::{random_vertical_slash, Rng};
use sparse_attn::params::VsConvertParams;
use sparse_attn::pattern::vs_convert::{convert, row_blocks, VsIndex, VsIndexDims};
use sparse_attn::sim::SimBackend;
use sparse_attn::AttnShape;

fn backend() -> Option<SimBackend> {
    if let Err(e) = sparse_attn::kernels::module_for("vs_convert", 80) {
        println!("skipped: {e}");
        return None;
    }
    Some(SimBackend::new(80))
}

/// Runs `vertical_slash_convert` with `sizes` (every field but the addresses) on inputs
/// that need not be valid. Outputs start as garbage so every element the kernel must write
/// is checked.
fn run(sim: &SimBackend, sizes: VsConvertParams, verticals: &[i32], slashes: &[i32]) -> sparse_attn::Result<VsIndex> {
    let (nnz_v, nnz_s) = (sizes.nnz_v as usize, sizes.nnz_s as usize);
    let rows = (sizes.batch * sizes.heads * sizes.row_blocks) as usize;
    let garbage = |n: usize| sim.upload(&vec![0x5A5A_5A5Ai32; n.max(1)]);
    let (bc, bo, cc, ci) = (garbage(rows)?, garbage(rows * nnz_s)?, garbage(rows)?, garbage(rows * nnz_v)?);
    let p = VsConvertParams {
        vertical_indexes: sim.upload(verticals)?.addr,
        slash_indexes: sim.upload(slashes)?.addr,
        block_count: bc.addr,
        block_offset: bo.addr,
        column_count: cc.addr,
        column_index: ci.addr,
        ..sizes
    };
    sim.launch(&sparse_attn::plan::vs_convert(&p)?, &Default::default())?;
    let get = |buf: sparse_attn::attention::DeviceBuffer, n: usize| -> sparse_attn::Result<Vec<i32>> {
        let mut v = sim.download::<i32>(buf)?;
        v.truncate(n);
        Ok(v)
    };
    Ok(VsIndex {
        block_count: get(bc, rows)?,
        block_offset: get(bo, rows * nnz_s)?,
        column_count: get(cc, rows)?,
        column_index: get(ci, rows * nnz_v)?,
        dims: VsIndexDims { batch: p.batch as usize, heads: p.heads as usize, row_blocks: p.row_blocks as usize, nnz_v, nnz_s },
    })
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
        let heads = if rng.chance(0.5) { shape.heads_q } else { shape.heads_kv };
        let vs = random_vertical_slash(&mut rng, &shape, heads, 40, case % 3 != 0);
        let cpu = convert(&vs, &shape).unwrap();
        let sizes = VsConvertParams::for_problem(&vs, &shape).unwrap();
        let got = run(&sim, sizes, vs.vertical_indexes(), vs.slash_indexes()).unwrap();
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
        let sizes = VsConvertParams {
            batch: batch as i32,
            heads: heads as i32,
            seq_q: seq_q as i32,
            seq_k: seq_k as i32,
            nnz_v: nnz_v as i32,
            nnz_s: nnz_s as i32,
            row_blocks: row_blocks(seq_q) as i32,
            ..VsConvertParams::default()
        };
        let out = run(&sim, sizes, &v, &s).unwrap_or_else(|e| panic!("case {case}: {e}"));
        let counts = out.block_count.iter().map(|&c| (c, nnz_s)).chain(out.column_count.iter().map(|&c| (c, nnz_v)));
        for (c, cap) in counts {
            assert!((0..=cap as i32).contains(&c), "case {case}: count {c} outside 0..={cap}");
        }
    }
}

#[test]
fn every_embedded_module_loads_in_the_simulator() {
    let modules = sparse_attn::kernels::modules();
    if modules.is_empty() {
        println!("skipped: built without nvcc, no PTX embedded");
        return;
    }
    let dev = ptx_sim::Device::new();
    for m in modules {
        let loaded = dev.load_ptx(m.ptx).unwrap_or_else(|e| panic!("kernels/{}.cu for {}: {e}", m.name, m.target.arch));
        assert!(!loaded.kernel_names().is_empty(), "kernels/{}.cu for {} has no entry", m.name, m.target.arch);
    }
}
