//! Every attention kernel run on the PTX simulator (the exact PTX build/main.rs embeds for
//! sm_80, memcheck always on) against the CPU reference, over the shared test matrix
//! (tests/attention_cases); plus racecheck, fuzzed index tensors, strided layouts, and
//! the simulator's mma counters showing that sparse launches skip excluded tiles.
//!
//! Without a CUDA compiler the crate carries no PTX and these tests skip with the reason, unless
//! SPARSE_ATTN_REQUIRE_KERNELS=1 makes that a failure.

mod attention_cases;
mod common;

use attention_cases::{check, matrix, problem, random_block_sparse, random_topk, wide_group_topk_cases, Case, Rng};
use ptx_sim::{Counters, LaunchOptions};
use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::pattern::{BlockSparse, TopkTokens};
use sparse_attn::source::{BlockSparseDims, BlockSparseIndex, Source, TopkDims, TopkIndex, VsIndex, VsIndexDims};
use sparse_attn::sim::SimBackend;
use sparse_attn::{plan, AttnDtype, AttnOptions, AttnShape, Bshd, DType};

/// The device-side form of a case's source: its descriptor's validated index tensors, uploaded.
fn source(sim: &SimBackend, case: &Case) -> Source<DeviceBuffer> {
    let host = case.pattern.source(&case.shape).unwrap_or_else(|e| panic!("{}: source: {e}", case.label()));
    host.try_map(|_, data| sim.upload(&data)).unwrap()
}

/// Uploads q, k, v into buffers laid out by `layouts` (padding filled with NaN-free junk
/// that must never reach the output), runs the case, and returns output (contiguous,
/// widened), LSE and counters.
fn run_case<T: AttnDtype + ptx_sim::Element>(
    sim: &SimBackend,
    case: &Case,
    p: &attention_cases::Problem<T>,
    layouts: AttnLayouts,
    source: &Source<DeviceBuffer>,
    opts: &LaunchOptions,
) -> (Vec<f32>, Vec<f32>, Counters) {
    let s = case.shape;
    let scatter = |data: &[T], layout: Bshd, seq: usize, heads: usize| -> DeviceBuffer {
        let dense = Bshd::contiguous(seq, heads, s.head_dim());
        let len = layout.batch * s.batch().max(1) + layout.seq * seq + layout.head * heads + s.head_dim();
        let mut buf = vec![T::from_f32(1e4); len];
        for b in 0..s.batch() {
            for i in 0..seq {
                for h in 0..heads {
                    let (src, dst) = (dense.offset(b, i, h), layout.offset(b, i, h));
                    buf[dst..dst + s.head_dim()].copy_from_slice(&data[src..src + s.head_dim()]);
                }
            }
        }
        sim.upload(&buf).unwrap()
    };
    let q = scatter(&p.q, layouts.q, s.seq_q(), s.heads_q());
    let k = scatter(&p.k, layouts.k, s.seq_k(), s.heads_kv());
    let v = scatter(&p.v, layouts.v, s.seq_k(), s.heads_kv());
    let out_len = layouts.out.batch * s.batch() + layouts.out.seq * s.seq_q() + layouts.out.head * s.heads_q() + s.head_dim();
    let out = sim.alloc::<T>(out_len).unwrap();
    let lse = sim.alloc::<f32>(s.lse_len()).unwrap();
    let bufs = AttnBuffers { q, k, v, out, lse: Some(lse), sinks: None, layouts };
    let plan = plan::attention(&s, T::DTYPE, &case.opts(), &bufs, source)
    .unwrap_or_else(|e| panic!("{}: plan: {e}", case.label()));
    let counters = sim.launch(&plan, opts).unwrap_or_else(|e| panic!("{}: {e}", case.label()));
    let raw: Vec<T> = sim.download(out).unwrap();
    let mut gathered = Vec::with_capacity(s.q_len());
    for b in 0..s.batch() {
        for i in 0..s.seq_q() {
            for h in 0..s.heads_q() {
                let o = layouts.out.offset(b, i, h);
                gathered.extend(raw[o..o + s.head_dim()].iter().map(|x| x.to_f32()));
            }
        }
    }
    (gathered, sim.download(lse).unwrap(), counters)
}

fn check_case_as<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, case: &Case, layouts: AttnLayouts, opts: &LaunchOptions) -> Counters {
    let p = problem::<T>(case);
    let (out, lse, counters) = run_case(sim, case, &p, layouts, &source(sim, case), opts);
    check(case, &p.expected, &out, &lse);
    counters
}

fn check_case(sim: &SimBackend, case: &Case, layouts: AttnLayouts, opts: &LaunchOptions) -> Counters {
    match case.dtype {
        DType::BF16 => check_case_as::<half::bf16>(sim, case, layouts, opts),
        DType::F16 => check_case_as::<half::f16>(sim, case, layouts, opts),
    }
}

fn run_matrix(pattern: &str) {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let cases: Vec<Case> = matrix(1).into_iter().chain(wide_group_topk_cases()).filter(|c| c.name == pattern).collect();
    assert!(cases.len() >= 50, "{pattern}: only {} cases", cases.len());
    for case in &cases {
        check_case(&sim, case, AttnLayouts::contiguous(&case.shape), &LaunchOptions::default());
    }
    println!("{pattern}: {} cases match the reference on the simulator", cases.len());
}

#[test]
fn dense_matches_the_reference() {
    run_matrix("dense");
}

#[test]
fn block_sparse_matches_the_reference() {
    run_matrix("block_sparse");
}

#[test]
fn a_shape_matches_the_reference() {
    run_matrix("a_shape");
}

#[test]
fn vertical_slash_matches_the_reference() {
    run_matrix("vertical_slash");
}

#[test]
fn topk_matches_the_reference() {
    run_matrix("topk");
}

#[test]
fn the_checker_rejects_a_wrong_mask() {
    // Negative control: the same kernel output held to the reference of a different mask
    // (dense instead of the block list) must fail, or the matrix above proves nothing.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 130, 130, 2, 2, 64).unwrap();
    let mut rng = Rng::new(77);
    let desc = random_block_sparse(&mut rng, &shape, 2, 0.5);
    let case = Case::new(shape, false, DType::BF16, 77, "block_sparse", desc);
    let p = problem::<half::bf16>(&case);
    let (out, lse, _) = run_case(&sim, &case, &p, AttnLayouts::contiguous(&shape), &source(&sim, &case), &LaunchOptions::default());
    let dense = Case::dense(shape, false, DType::BF16, 77);
    let wrong = problem::<half::bf16>(&dense).expected;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&case, &wrong, &out, &lse))).is_err();
    assert!(caught, "a block-sparse result passed as dense attention");
    check(&case, &p.expected, &out, &lse);
}

#[test]
fn racecheck_is_clean() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let opts = LaunchOptions { racecheck: true, ..Default::default() };
    // One case per pattern and head_dim, with partial tiles and GQA.
    let cases: Vec<Case> = matrix(1)
        .into_iter()
        .filter(|c| c.shape.seq_q() == 65 && c.shape.heads_q() == 4 && c.dtype == DType::BF16 && c.causal)
        .collect();
    assert_eq!(cases.len(), 5 * sparse_attn::params::HEAD_DIMS.len(), "five patterns x every head dim");
    for case in &cases {
        check_case(&sim, case, AttnLayouts::contiguous(&case.shape), &opts);
    }
}

#[test]
fn padded_strided_layouts_are_honoured() {
    // Rows padded to 136 (head) and whole positions padded by two extra rows, with junk in
    // the padding: a kernel that assumed contiguity would read it.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for pattern in ["dense", "block_sparse", "vertical_slash", "topk"] {
        for case in matrix(1).into_iter().filter(|c| c.name == pattern && c.shape.seq_q() == 65 && c.shape.head_dim() == 128 && c.causal).take(2) {
            let s = case.shape;
            let pad = |seq: usize, heads: usize| {
                let head = s.head_dim() + 8;
                let row = heads * head + 16;
                Bshd { batch: seq * row + 64, seq: row, head }
            };
            let layouts = AttnLayouts { q: pad(s.seq_q(), s.heads_q()), k: pad(s.seq_k(), s.heads_kv()), v: pad(s.seq_k(), s.heads_kv()), out: pad(s.seq_q(), s.heads_q()) };
            check_case(&sim, &case, layouts, &LaunchOptions::default());
        }
    }
}

/// mma.sync instructions per warp per key tile: Q K^T and P V over head_dim.
fn mma_per_warp_tile(head_dim: usize, keys: usize) -> u64 {
    let qk = (head_dim / 16) * (keys / 8);
    let pv = (keys / 16) * (head_dim / 8);
    (qk + pv) as u64
}

#[test]
fn sparse_launches_execute_only_the_kept_tiles() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for (causal, head_dim, seq) in [(false, 64, 300), (true, 128, 513), (true, 64, 130)] {
        let shape = AttnShape::new(1, seq, seq, 4, 2, head_dim).unwrap();
        let dense_case = Case::dense(shape, causal, DType::BF16, 5);
        let dense = check_case(&sim, &dense_case, AttnLayouts::contiguous(&shape), &LaunchOptions::default());
        // Dense: each row block runs exactly its visible tiles (causal stops at the diagonal),
        // in tiles of the dense kernel's key width (128 keys at head_dim 64, as FA2).
        let key_tile = sparse_attn::plan::prefill::key_tile(&Source::<&[i32]>::Dense, head_dim);
        let visible_tiles = |width: usize| -> u64 {
            (0..seq.div_ceil(64))
                .map(|m| shape.visible_keys(((m + 1) * 64).min(seq) - 1, causal).div_ceil(width) as u64)
                .sum::<u64>()
                * shape.heads_q() as u64
        };
        assert_eq!(dense.mma, visible_tiles(key_tile) * 4 * mma_per_warp_tile(head_dim, key_tile), "dense causal={causal} d={head_dim}");
        // The sparse kernels' unit: 64 x 64 tiles.
        let dense_tiles = visible_tiles(64);
        let dense_mma_64 = dense_tiles * 4 * mma_per_warp_tile(head_dim, 64);
        for density in [0.1, 0.3, 0.7] {
            let mut rng = Rng::new((density * 100.0) as u64 + seq as u64);
            let desc = random_block_sparse(&mut rng, &shape, 2, density);
            let (kept, dense_count) = desc.kept_tiles(&shape, causal).unwrap();
            assert_eq!(dense_count as u64, dense_tiles);
            let case = Case::new(shape, causal, DType::BF16, 6, "block_sparse", desc);
            let sparse = check_case(&sim, &case, AttnLayouts::contiguous(&shape), &LaunchOptions::default());
            // The issue asks for within 10% of dense x kept fraction; the kernel does exactly that.
            assert_eq!(sparse.mma * dense_count as u64, dense_mma_64 * kept as u64, "density {density}: {kept}/{dense_count} tiles kept");
            println!("causal={causal} d={head_dim} density {density}: mma {} of dense {} ({kept}/{dense_count} tiles)", sparse.mma, dense_mma_64);
        }
    }
}

#[test]
fn vertical_slash_runs_its_tiles_and_column_tiles_only() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let (seq, head_dim) = (300, 64);
    let shape = AttnShape::new(1, seq, seq, 2, 2, head_dim).unwrap();
    let mut rng = Rng::new(31);
    let desc = attention_cases::random_vertical_slash(&mut rng, &shape, 2, 0.05);
    let index = convert(&desc, &shape).unwrap();
    let (heads, row_blocks) = (index.dims.heads(), index.dims.row_blocks());
    // Each warp (16 rows) runs the 16-key steps of a tile that can hold a key it sees: a
    // gathered tile up to the list's end; a contiguous tile up to seq_k and to the last key
    // of the warp's last row (the causal diagonal, with seq_q = seq_k here).
    let steps = |slots: i64| (slots.max(0) as u64).div_ceil(16).min(4);
    let (mut mma, mut full_tiles) = (0u64, 0u64);
    for h in 0..heads {
        for m in 0..row_blocks {
            let (offsets, columns) = index.row_block(0, h, m).unwrap();
            full_tiles += offsets.len() as u64 + columns.len().div_ceil(64) as u64;
            for w in 0..4 {
                let last_key = ((m * 64 + w * 16 + 15) as i64).min(seq as i64 - 1);
                for &o in offsets {
                    let slots = (seq as i64 - o as i64).min(last_key - o as i64 + 1);
                    mma += mma_per_warp_tile(head_dim, 16 * steps(slots) as usize);
                }
                for first in (0..columns.len()).step_by(64) {
                    mma += mma_per_warp_tile(head_dim, 16 * steps((columns.len() - first).min(64) as i64) as usize);
                }
            }
        }
    }
    let case = Case::new(shape, true, DType::F16, 32, "vertical_slash", desc);
    let counters = check_case(&sim, &case, AttnLayouts::contiguous(&shape), &LaunchOptions::default());
    assert_eq!(counters.mma, mma);
    // The trimming is real work saved: fewer mma than whole tiles for every warp.
    assert!(counters.mma < full_tiles * 4 * mma_per_warp_tile(head_dim, 64), "{} vs {full_tiles} whole tiles", counters.mma);
}

#[test]
fn topk_loads_each_gathered_row_once_per_group() {
    // GQA 8:1 packs 8 heads in one warp: one warp per (row, kv head), so the mma count is
    // that of heads_kv warps, not heads_q.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 40, 100, 8, 1, 64).unwrap();
    let mut rng = Rng::new(8);
    let desc = random_topk(&mut rng, &shape, 0.4);
    let tiles_per_row = desc.k().div_ceil(32) as u64;
    let case = Case::new(shape, false, DType::BF16, 9, "topk", desc);
    let counters = check_case(&sim, &case, AttnLayouts::contiguous(&shape), &LaunchOptions::default());
    assert_eq!(counters.mma, 40 * tiles_per_row * mma_per_warp_tile(64, 32));
}

#[test]
fn the_output_leaves_in_16_byte_stores() {
    // The epilogue stages each warp's 16 output rows in shared memory so that every lane
    // stores whole 16-byte chunks (kernels/common/epilogue.cuh): a warp writes its rows in
    // head_dim / 16 stores (head_dim / 4 per row pair with 4-byte stores from the
    // fragments), plus one LSE store per fragment row.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for head_dim in [64, 128] {
        let shape = AttnShape::new(1, 128, 128, 2, 1, head_dim).unwrap();
        let counters = check_case(&sim, &Case::dense(shape, true, DType::BF16, 41), AttnLayouts::contiguous(&shape), &LaunchOptions::default());
        let warps = (2 * 2 * 4) as u64; // row blocks x heads x 4 warps
        assert_eq!(counters.global_stores, warps * (head_dim as u64 / 16 + 2), "d{head_dim}");
        assert_eq!(counters.global_store_bytes, (shape.q_len() * 2 + shape.lse_len() * 4) as u64, "d{head_dim}");
        // Top-k: one warp per query row holds the group's 2 heads in 2 of its 16 rows; one
        // store of 32 chunks covers both (4 rows of 8 chunks, or 2 of 16), and one LSE store.
        let mut rng = Rng::new(42);
        let topk = Case::new(shape, true, DType::BF16, 43, "topk", random_topk(&mut rng, &shape, 0.2));
        let counters = check_case(&sim, &topk, AttnLayouts::contiguous(&shape), &LaunchOptions::default());
        assert_eq!(counters.global_stores, 128 * 2, "top-k d{head_dim}");
    }
}

/// Arbitrary i32s: in range, negative, huge, and the extremes.
fn junk(rng: &mut Rng, n: usize, range: usize) -> Vec<i32> {
    (0..n)
        .map(|_| match rng.below(6) {
            0 => -1,
            1 => -(rng.below(1 << 30) as i32) - 2,
            2 => i32::MAX - rng.below(100) as i32,
            3 => i32::MIN + rng.below(100) as i32,
            _ => rng.below(range.max(1)) as i32,
        })
        .collect()
}

/// Runs a launch over garbage index tensors: memcheck must stay clean and every output
/// finite (LSE may be -inf, never NaN).
fn run_fuzzed(sim: &SimBackend, shape: &AttnShape, causal: bool, source: &Source<DeviceBuffer>) {
    let mut rng = Rng::new(shape.seq_q() as u64 * 31 + shape.seq_k() as u64);
    let vals = |rng: &mut Rng, n: usize| (0..n).map(|_| half::bf16::from_f32(rng.normal() as f32)).collect::<Vec<_>>();
    let bufs = AttnBuffers {
        q: sim.upload(&vals(&mut rng, shape.q_len())).unwrap(),
        k: sim.upload(&vals(&mut rng, shape.kv_len())).unwrap(),
        v: sim.upload(&vals(&mut rng, shape.kv_len())).unwrap(),
        out: sim.alloc::<half::bf16>(shape.q_len()).unwrap(),
        lse: Some(sim.alloc::<f32>(shape.lse_len()).unwrap()),
        sinks: None,
        layouts: AttnLayouts::contiguous(shape),
    };
    let opts = AttnOptions { causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let plan = plan::attention(shape, DType::BF16, &opts, &bufs, source).unwrap();
    sim.launch(&plan, &LaunchOptions::default()).unwrap_or_else(|e| panic!("fuzzed {shape:?}: {e}"));
    let out: Vec<half::bf16> = sim.download(bufs.out).unwrap();
    assert!(out.iter().all(|x| x.to_f32().is_finite()), "non-finite output");
    let lse: Vec<f32> = sim.download(bufs.lse.unwrap()).unwrap();
    assert!(lse.iter().all(|x| !x.is_nan()), "NaN LSE");
}

#[test]
fn fuzzed_index_tensors_stay_in_bounds() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for (seq_q, seq_k) in [(65, 130), (130, 65), (1, 257)] {
        let shape = AttnShape::new(1, seq_q, seq_k, 4, 2, 64).unwrap();
        let mut rng = Rng::new(seq_q as u64 ^ 0xF00D);
        let rows = 2 * seq_q.div_ceil(64);
        let nb = seq_k.div_ceil(64);
        let (cap, nnz_s, nnz_v) = (5, 4, 70);
        let bs = Source::BlockSparse(BlockSparseIndex {
            dims: BlockSparseDims::new(1, 2, rows / 2, cap).unwrap(),
            block_count: sim.upload(&junk(&mut rng, rows, cap + 2)).unwrap(),
            block_index: sim.upload(&junk(&mut rng, rows * cap, nb + 1)).unwrap(),
        });
        run_fuzzed(&sim, &shape, seq_q % 2 == 1, &bs);
        let vs = Source::VerticalSlash(VsIndex {
            dims: VsIndexDims::new(1, 2, rows / 2, nnz_v, nnz_s).unwrap(),
            block_count: sim.upload(&junk(&mut rng, rows, nnz_s + 2)).unwrap(),
            block_offset: sim.upload(&junk(&mut rng, rows * nnz_s, seq_k + 10)).unwrap(),
            column_count: sim.upload(&junk(&mut rng, rows, nnz_v + 2)).unwrap(),
            column_index: sim.upload(&junk(&mut rng, rows * nnz_v, seq_k + 10)).unwrap(),
        });
        run_fuzzed(&sim, &shape, true, &vs);
        // Top-k, duplicates included (the host would reject them; the kernel must still
        // stay in bounds).
        let k = 40;
        let mut indices = junk(&mut rng, seq_q * 2 * k, seq_k + 5);
        for slot in (1..indices.len()).step_by(7) {
            indices[slot] = indices[slot - 1];
        }
        let topk = Source::TopK(TopkIndex { dims: TopkDims::new(1, seq_q, 2, k).unwrap(), indices: sim.upload(&indices).unwrap() });
        run_fuzzed(&sim, &shape, seq_q % 2 == 0, &topk);
    }
}

/// The block list the kernel actually runs for one row: entries up to the clamped count
/// that are in range and strictly above the last kept one (tiles past the row block's
/// visibility hold no visible key either way).
fn kernel_rule(list: &[i32], count: i32, key_blocks: i32) -> Vec<i32> {
    let count = count.clamp(0, list.len() as i32) as usize;
    let mut kept: Vec<i32> = Vec::new();
    for &n in &list[..count] {
        if n >= 0 && n < key_blocks && kept.last().is_none_or(|&p| n > p) {
            kept.push(n);
        }
    }
    kept
}

#[test]
fn fuzzed_block_lists_compute_exactly_the_entries_they_keep() {
    // Beyond staying in bounds: with garbage in the lists, the kernel's result equals the
    // reference on the entries its documented skip rule keeps.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for (seq_q, seq_k, causal) in [(130, 200, false), (200, 130, true)] {
        let shape = AttnShape::new(1, seq_q, seq_k, 2, 2, 64).unwrap();
        let mut rng = Rng::new(seq_k as u64);
        let (mb, nb, cap) = (seq_q.div_ceil(64), seq_k.div_ceil(64), 6);
        let counts = junk(&mut rng, 2 * mb, cap + 2);
        let lists = junk(&mut rng, 2 * mb * cap, nb + 1);
        // The sanitized descriptor the reference sees.
        let mut block_count = Vec::new();
        let mut block_index = Vec::new();
        for r in 0..2 * mb {
            let kept = kernel_rule(&lists[r * cap..(r + 1) * cap], counts[r], nb as i32);
            block_count.push(kept.len() as i32);
            let mut row = kept.clone();
            row.resize(cap, -1);
            block_index.extend(row);
        }
        let clean = BlockSparse::new(1, 2, mb, cap, block_count, block_index).unwrap();
        let case = Case::new(shape, causal, DType::BF16, 12, "block_sparse", clean);
        let p = problem::<half::bf16>(&case);
        let dims = BlockSparseDims::new(1, 2, mb, cap).unwrap();
        let dirty = Source::BlockSparse(BlockSparseIndex { dims, block_count: sim.upload(&counts).unwrap(), block_index: sim.upload(&lists).unwrap() });
        let (out, lse, _) = run_case(&sim, &case, &p, AttnLayouts::contiguous(&shape), &dirty, &LaunchOptions::default());
        check(&case, &p.expected, &out, &lse);
    }
}

#[test]
fn fuzzed_topk_rows_skip_what_they_must() {
    // -1, negatives and keys >= seq_k are skipped exactly as if they were -1.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 50, 90, 4, 1, 128).unwrap();
    let mut rng = Rng::new(4242);
    let clean = random_topk(&mut rng, &shape, 0.3);
    let mut dirty = clean.indices().to_vec();
    for slot in dirty.iter_mut().filter(|x| **x == -1) {
        *slot = match rng.below(3) {
            0 => -2 - rng.below(1000) as i32,
            1 => i32::MIN + rng.below(1000) as i32,
            _ => 90 + rng.below(1000) as i32, // at or past seq_k
        };
    }
    let case = Case::new(shape, true, DType::F16, 43, "topk", clean.clone());
    let p = problem::<half::f16>(&case);
    // Uploaded as it is: validating it (as `source()` does) would reject it.
    let dirty = TopkTokens::new(1, 50, 1, clean.k(), dirty).unwrap();
    let dims = TopkDims::new(1, 50, 1, dirty.k()).unwrap();
    let dirty = Source::TopK(TopkIndex { dims, indices: sim.upload(dirty.indices()).unwrap() });
    let (out, lse, _) = run_case(&sim, &case, &p, AttnLayouts::contiguous(&shape), &dirty, &LaunchOptions::default());
    check(&case, &p.expected, &out, &lse);
}

#[test]
fn shared_memory_accesses_are_bank_conflict_free() {
    // The XOR swizzle of the K/V/Q tiles exists so that ldmatrix (8 rows at one chunk) and
    // the cp.async fills hit 8 distinct 16-byte bank groups; the simulator counts the
    // wavefronts, so a broken swizzle shows up here as extra ones.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let cases: Vec<Case> = matrix(1).into_iter().filter(|c| c.shape.seq_q() == 257 && c.shape.heads_q() == 4 && c.dtype == DType::F16 && c.causal).collect();
    assert_eq!(cases.len(), 5 * sparse_attn::params::HEAD_DIMS.len(), "five patterns x every head dim");
    for case in &cases {
        let counters = check_case(&sim, case, AttnLayouts::contiguous(&case.shape), &LaunchOptions::default());
        assert!(counters.shared_loads > 0, "{}: no shared loads counted", case.label());
        assert_eq!(counters.shared_bank_conflicts, 0, "{}: {} extra wavefronts", case.label(), counters.shared_bank_conflicts);
    }
}

#[test]
fn fuzzed_vertical_columns_attend_each_key_once() {
    // Garbage column lists (unsorted, repeated, out of range, counts past the capacity)
    // with no tiles: the kernel keeps an entry only if it is in range and above every
    // in-range entry before it, so each key is attended at most once. The expected mask is
    // that rule restated here, intersected with the causal mask.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 130, 200, 4, 2, 64).unwrap();
    let (heads, mb, nnz_v) = (2, 3, 100);
    let mut rng = Rng::new(555);
    // Mostly ascending rows (so the rule keeps a lot), then damaged: out-of-range values,
    // repeats of an earlier entry, and swapped neighbours.
    let mut columns = Vec::new();
    for _ in 0..heads * mb {
        let mut row: Vec<i32> = (0..200).filter(|_| rng.below(2) == 0).take(nnz_v).collect();
        row.resize(nnz_v, 199);
        for slot in 0..nnz_v {
            match rng.below(10) {
                0 => row[slot] = junk(&mut rng, 1, 0)[0].min(-1),
                1 => row[slot] = 200 + rng.below(1 << 20) as i32,
                2 if slot >= 3 => row[slot] = row[slot - 3],
                3 if slot >= 1 => row.swap(slot, slot - 1),
                _ => {}
            }
        }
        columns.extend(row);
    }
    let counts: Vec<i32> = (0..heads * mb).map(|r| [nnz_v as i32 + 7, 70, -4, 100, 1, 64][r % 6]).collect();
    let mut kept: Vec<Vec<usize>> = Vec::new();
    for r in 0..heads * mb {
        let count = counts[r].clamp(0, nnz_v as i32) as usize;
        let mut max = -1i64;
        let mut row = Vec::new();
        for &c in &columns[r * nnz_v..r * nnz_v + count] {
            if (0..200).contains(&c) {
                if c as i64 > max {
                    row.push(c as usize);
                }
                max = max.max(c as i64);
            }
        }
        kept.push(row);
    }
    let mask = sparse_attn::ElementMask::from_fn(&shape, |_, h, i, j| {
        let r = (h / 2) * mb + i / 64;
        j <= i + 70 && kept[r].contains(&j)
    });
    let case = Case::dense(shape, true, DType::BF16, 556);
    let mut p = problem::<half::bf16>(&case);
    let inputs = sparse_attn::reference::RefInputs::new(shape, &p.q, &p.k, &p.v).unwrap();
    p.expected = sparse_attn::reference::masked_attention(&inputs, &case.opts(), &mask).unwrap();
    let rows = heads * mb;
    let source = Source::VerticalSlash(VsIndex {
        dims: VsIndexDims::new(1, heads, mb, nnz_v, 1).unwrap(),
        block_count: sim.upload(&vec![0; rows]).unwrap(),
        block_offset: sim.upload(&vec![-1; rows]).unwrap(),
        column_count: sim.upload(&counts).unwrap(),
        column_index: sim.upload(&columns).unwrap(),
    });
    let (out, lse, _) = run_case(&sim, &case, &p, AttnLayouts::contiguous(&shape), &source, &LaunchOptions::default());
    assert!(mask.count() > 5000, "the rule keeps a meaningful number of elements ({})", mask.count());
    check(&case, &p.expected, &out, &lse);
}
