//! The vertical-slash conversion kernel (kernels/vs_convert.cu, the PTX build/main.rs embedded),
//! launched from the crate's own plan on the PTX simulator, equals the CPU converter
//! exactly, for padded batches and per sequence of varlen and paged ones; adversarial indices never make it touch memory outside its buffers (the
//! simulator's memcheck turns any stray access into an error). Skips with the reason when
//! the crate was built without a CUDA compiler.

mod common;

use common::{random_vertical_slash, Rng};
use sparse_attn::pattern::vs_convert::{convert, convert_varlen, index_dims, row_blocks, VsIndex, VsIndexDims};
use sparse_attn::plan::vs_convert::SeqLens;
use sparse_attn::plan::{PagedKvBuffers, VarlenBuffers};
use sparse_attn::sim::SimBackend;
use sparse_attn::{AttnShape, Varlen};

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

/// A random varlen batch of `batch` sequences: lengths 0, 1, 63, 64, 65 or random, keys
/// equal to, longer or shorter than the queries.
fn random_varlen(rng: &mut Rng, batch: usize) -> Varlen {
    let (mut cu_q, mut cu_k) = (vec![0i32], vec![0i32]);
    for _ in 0..batch {
        let q = [0, 1, 63, 64, 65, rng.range(1, 300)][rng.below(6)];
        let k = match rng.below(3) {
            0 => q,
            1 => q + rng.range(0, 200),
            _ => rng.range(0, 200),
        };
        cu_q.push(cu_q.last().unwrap() + q as i32);
        cu_k.push(cu_k.last().unwrap() + k as i32);
    }
    Varlen::new(cu_q, cu_k).unwrap()
}

/// The longest sequences of `varlen` as a shape (at least one row and key).
fn longest(varlen: &Varlen, heads_q: usize, heads_kv: usize) -> AttnShape {
    let (mut q, mut k) = (1, 1);
    for b in 0..varlen.batch() {
        let (lq, lk) = varlen.seqlens(b);
        (q, k) = (q.max(lq), k.max(lk));
    }
    AttnShape::new(varlen.batch(), q, k, heads_q, heads_kv, 64).unwrap()
}

/// Runs the varlen / paged conversion planned for `lens` on garbage-filled outputs.
fn run_varlen(sim: &SimBackend, shape: &AttnShape, lens: SeqLens, dims: VsIndexDims, verticals: &[i32], slashes: &[i32]) -> sparse_attn::Result<VsIndex> {
    let lens_rows = dims.lens();
    let garbage = |n: usize| sim.upload(&vec![0x5A5A_5A5Ai32; n.max(1)]);
    let out = VsIndex {
        dims,
        block_count: garbage(lens_rows.rows)?,
        block_offset: garbage(lens_rows.block_offset)?,
        column_count: garbage(lens_rows.rows)?,
        column_index: garbage(lens_rows.column_index)?,
    };
    let plan = sparse_attn::plan::vs_convert::plan_varlen(shape, lens, sim.upload(verticals)?, sim.upload(slashes)?, &out)?;
    sim.launch(&plan, &Default::default())?;
    Ok(out.try_map(|_, buf| sim.download::<i32>(buf))?.truncate_to_dims())
}

#[test]
fn varlen_conversion_on_the_device_equals_the_cpu_converter() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(4096);
    let mut nonempty = 0;
    for case in 0..30 {
        let batch = rng.range(1, 5);
        let varlen = random_varlen(&mut rng, batch);
        let shape = longest(&varlen, 4, 2);
        let heads = if case % 2 == 0 { 4 } else { 2 };
        let vs = random_vertical_slash(&mut rng, &shape, heads, 40, case % 3 != 0);
        let cpu = convert_varlen(&vs, &shape, &varlen).unwrap();
        let got = sim.vs_convert_varlen(&vs, &shape, &varlen).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(got, cpu, "case {case}: {varlen:?}");
        nonempty += usize::from(cpu.block_count.iter().any(|&c| c > 0) && cpu.column_count.iter().any(|&c| c > 0));
    }
    assert!(nonempty >= 10, "only {nonempty} of 30 cases produced both tiles and columns");
}

#[test]
fn paged_conversion_reads_the_key_lengths_of_seqlens_k() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(77_000);
    for case in 0..10 {
        let batch = rng.range(1, 4);
        let varlen = random_varlen(&mut rng, batch);
        let shape = longest(&varlen, 2, 2);
        let vs = random_vertical_slash(&mut rng, &shape, 2, 30, true);
        let cpu = convert_varlen(&vs, &shape, &varlen).unwrap();
        // The paging metadata as an attention launch holds it; the conversion reads only the
        // query boundaries and the key counts.
        let seqlens_k: Vec<i32> = (0..varlen.batch()).map(|b| varlen.seqlens(b).1 as i32).collect();
        let max_pages = shape.seq_k().div_ceil(16);
        let block_table: Vec<i32> = (0..varlen.batch() * max_pages).map(|i| i as i32).collect();
        let paged = PagedKvBuffers {
            cu_seqlens_q: sim.upload(varlen.cu_seqlens_q()).unwrap(),
            total_q: varlen.total_q().max(1),
            seqlens_k: sim.upload(&seqlens_k).unwrap(),
            block_table: sim.upload(&block_table).unwrap(),
            max_pages,
            page_size: 16,
            num_pages: block_table.len(),
            host: None,
        };
        let dims = index_dims(&vs, &shape).unwrap();
        let got = run_varlen(&sim, &shape, SeqLens::Paged(&paged), dims, vs.vertical_indexes(), vs.slash_indexes()).unwrap();
        assert_eq!(got, cpu, "case {case}: {varlen:?}");
    }
}

#[test]
fn corrupt_device_lengths_convert_as_empty_sequences_in_bounds() {
    let Some(sim) = backend() else { return };
    // Sequence 0 valid (70 rows, 90 keys); 1 decreasing; 2 longer than the longest; 3
    // negative; the last entry far out. No host copy: the device lengths are all there is.
    let cu_q = [0, 70, 10, 5000, -40, i32::MAX];
    let cu_k = [0, 90, 80, 81, 7000, -1];
    let shape = AttnShape::new(5, 100, 100, 1, 1, 64).unwrap();
    let good = Varlen::new(vec![0, 70, 70, 70, 70, 70], vec![0, 90, 90, 90, 90, 90]).unwrap();
    let mut rng = Rng::new(5);
    let vs = random_vertical_slash(&mut rng, &shape, 1, 20, true);
    let lens = VarlenBuffers { cu_seqlens_q: sim.upload(&cu_q).unwrap(), cu_seqlens_k: sim.upload(&cu_k).unwrap(), total_q: 70, total_k: 90, host: None };
    let dims = index_dims(&vs, &shape).unwrap();
    let got = run_varlen(&sim, &shape, SeqLens::Varlen(&lens), dims, vs.vertical_indexes(), vs.slash_indexes()).unwrap();
    // Sequence 0 as the host converts it; every other sequence has no rows (memcheck would
    // have failed the launch on any access outside the buffers).
    assert_eq!(got, convert_varlen(&vs, &shape, &good).unwrap());
    // With the host copy, a sequence longer than the longest is refused before the launch.
    let bad_host = Varlen::new(vec![0, 70, 170], vec![0, 90, 100]).unwrap();
    let short = AttnShape::new(2, 80, 100, 1, 1, 64).unwrap();
    let lens = VarlenBuffers { cu_seqlens_q: sim.upload(bad_host.cu_seqlens_q()).unwrap(), cu_seqlens_k: sim.upload(bad_host.cu_seqlens_k()).unwrap(), total_q: 170, total_k: 100, host: Some(&bad_host) };
    let vs = random_vertical_slash(&mut rng, &short, 1, 20, true);
    let err = run_varlen(&sim, &short, SeqLens::Varlen(&lens), index_dims(&vs, &short).unwrap(), vs.vertical_indexes(), vs.slash_indexes()).unwrap_err();
    assert!(matches!(&err, sparse_attn::Error::InvalidCuSeqlens { tensor: "cu_seqlens_q", .. }), "{err}");
}
