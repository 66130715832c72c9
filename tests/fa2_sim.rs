//! FlashAttention-2's own forward kernel (flash-attn 2.8.3, compiled by nvcc 13.0 for
//! compute_80; bench-fa2/) run on the PTX simulator against the CPU reference, with the
//! simulator's work counters printed: the yardstick this crate's kernels are measured
//! against. Also checks the params layout against the PTX and that the fixtures are up to date.
//!
//! The PTX is a checked-in fixture, decompressed with `gzip`; without gzip (or the fixture)
//! the tests skip with the reason, unless SPARSE_ATTN_REQUIRE_KERNELS=1 makes that a failure.
//! FA2_REGENERATE=1 rebuilds the fixtures with scripts/fa2-ptx.sh in a temporary folder
//! (minutes: it downloads the sdist and runs nvcc) and requires them to equal the checked-in
//! ones.

mod attention_cases;
mod common;
#[path = "../bench-fa2/mod.rs"]
mod fa2;

use std::time::Instant;

use attention_cases::{check, problem, Case};
use half::bf16;
use ptx_sim::{Counters, LaunchOptions};
use sparse_attn::sim::HostTensors;
use sparse_attn::{AttnShape, DType};

/// The simulator with FA2's PTX available, or `None` (test skipped) with the reason printed.
fn sim_or_skip() -> Option<fa2::Fa2Sim> {
    match fa2::ptx(128) {
        Ok(_) => {
            println!("FA2 (flash-attn 2.8.3) PTX by {}", fa2::NVCC_VERSION);
            Some(fa2::Fa2Sim::new())
        }
        Err(reason) => {
            assert!(std::env::var("SPARSE_ATTN_REQUIRE_KERNELS").map_or(true, |v| v != "1"), "SPARSE_ATTN_REQUIRE_KERNELS=1 but FA2's PTX is unavailable: {reason}");
            eprintln!("skipped: FA2's PTX is unavailable: {reason}");
            None
        }
    }
}

fn print_counters(label: &str, c: &Counters, secs: f64) {
    println!(
        "{label}: warp_instructions {} mma {} shared_wavefronts {} (bank conflicts {}) global_load_bytes {} global_store_bytes {} cp_async {} barriers {} [{secs:.2} s]",
        c.warp_instructions, c.mma, c.shared_wavefronts, c.shared_bank_conflicts, c.global_load_bytes, c.global_store_bytes, c.cp_async, c.barriers
    );
}

/// FA2 on `case` (dense bf16) against the f64 reference, with the shared tolerances
/// (tests/attention_cases: bf16 output 1e-2, LSE 1e-3).
fn run_case(sim: &fa2::Fa2Sim, case: &Case, want_even_mn: bool, opts: &LaunchOptions) -> Counters {
    let p = problem::<bf16>(case);
    let scale = case.opts().scale(case.shape.head_dim()).unwrap();
    let t = Instant::now();
    let r = sim.run(&case.shape, case.causal, scale, HostTensors { q: &p.q, k: &p.k, v: &p.v, sinks: None }, opts).unwrap_or_else(|e| panic!("{}: {e}", case.label()));
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.kernel.even_mn, want_even_mn, "{}: run_flash_fwd's Is_even_MN", case.label());
    let out: Vec<f32> = r.out.iter().map(|x| x.to_f32()).collect();
    // FA2 writes LSE = +inf for a row that sees no key (normalize_softmax_lse in softmax.h, and
    // the early exit of compute_attn_1rowblock); the reference (and this crate) write -inf.
    let lse: Vec<f32> = r.lse.iter().map(|&l| if l == f32::INFINITY { f32::NEG_INFINITY } else { l }).collect();
    check(case, &p.expected, &out, &lse);
    let out_err = out.iter().zip(&p.expected.out).map(|(&o, &e)| (o as f64 - e).abs()).fold(0.0, f64::max);
    let lse_err = lse.iter().zip(&p.expected.lse).filter(|(_, e)| e.is_finite()).map(|(&l, &e)| (l as f64 - e).abs()).fold(0.0, f64::max);
    println!("FA2 {}: max |out err| {out_err:.2e}, max |lse err| {lse_err:.2e}", case.label());
    print_counters(&format!("FA2 {}", case.label()), &r.counters, secs);
    r.counters
}

/// The yardstick shape: batch 1, 4 heads, 256 tokens, head_dim 128, bf16, causal and not.
#[test]
fn fa2_hdim128_bf16_matches_reference() {
    let Some(sim) = sim_or_skip() else { return };
    let shape = AttnShape::new(1, 256, 256, 4, 4, 128).unwrap();
    let opts = LaunchOptions::default();
    let dense = run_case(&sim, &Case::dense(shape, false, DType::BF16, 7001), true, &opts);
    let causal = run_case(&sim, &Case::dense(shape, true, DType::BF16, 7002), true, &opts);
    // Non-causal: 2 m-blocks x 4 n-blocks x 4 heads; a 128 x 64 tile is QK^T (128x64x128)
    // plus PV (128x128x64), 2 x 131072 / (16x8x16) = 1024 mma.
    assert_eq!(dense.mma, 2 * 4 * 4 * 1024, "non-causal mma");
    // Causal skips the tiles above the diagonal: m-block 0 runs n-blocks 0..2, m-block 1 runs 0..4.
    assert_eq!(causal.mma, (2 + 4) * 4 * 1024, "causal mma");
    // The perf-report helper (its own random inputs) gives the same counts: FA2's work does
    // not depend on the data.
    assert_eq!(fa2::counters(&sim, &shape, false).unwrap(), dense);
    assert_eq!(fa2::counters(&sim, &shape, true).unwrap(), causal);
}

/// Sequence lengths that are not tile multiples (Is_even_MN = false), GQA, seq_q != seq_k
/// (bottom-right causal, including rows that see no key), and head_dim 64: the other
/// instantiations and params paths. The first case runs under racecheck.
#[test]
fn fa2_uneven_gqa_and_hdim64_match_reference() {
    let Some(sim) = sim_or_skip() else { return };
    let cases = [
        (AttnShape::new(1, 100, 150, 4, 2, 128).unwrap(), true, false),
        (AttnShape::new(2, 70, 70, 2, 1, 128).unwrap(), false, false),
        (AttnShape::new(1, 128, 256, 2, 2, 64).unwrap(), true, true),
        (AttnShape::new(1, 65, 130, 2, 1, 64).unwrap(), false, false),
        (AttnShape::new(1, 130, 65, 2, 1, 128).unwrap(), true, false),
    ];
    for (i, (shape, causal, even)) in cases.into_iter().enumerate() {
        let opts = LaunchOptions { racecheck: i == 0, ..LaunchOptions::default() };
        run_case(&sim, &Case::dense(shape, causal, DType::BF16, 7100 + i as u64), even, &opts);
    }
}

/// The Flash_fwd_params layout the compiler reported is the one the PTX takes: one by-value
/// parameter of `sizeof(Flash_fwd_params)` bytes, fields inside it and not overlapping; and
/// every listed kernel is in its module.
#[test]
fn fa2_params_layout_matches_ptx() {
    let Some(sim) = sim_or_skip() else { return };
    assert_eq!(fa2::PARAMS_SIZE % fa2::PARAMS_ALIGN, 0);
    let mut fields = fa2::field::ALL.to_vec();
    fields.sort_by_key(|f| f.offset);
    for w in fields.windows(2) {
        assert!(w[0].offset + w[0].size <= w[1].offset, "{} overlaps {}", w[0].name, w[1].name);
    }
    let last = fields.last().unwrap();
    assert!(last.offset + last.size <= fa2::PARAMS_SIZE);
    for head_dim in [128, 64] {
        let module = sim.module(head_dim).unwrap();
        let listed: Vec<&str> = fa2::KERNELS.iter().filter(|k| k.head_dim == head_dim).map(|k| k.name).collect();
        assert_eq!(module.kernel_names().len(), listed.len(), "hdim{head_dim}: kernels in the PTX");
        for name in listed {
            let params = module.params(name).unwrap_or_else(|| panic!("{name} is not in the hdim{head_dim} PTX"));
            assert_eq!(params.len(), 1, "{name}: one by-value Flash_fwd_params");
            assert_eq!(params[0].size as usize, fa2::PARAMS_SIZE, "{name}: .param size vs sizeof(Flash_fwd_params)");
            assert_eq!(params[0].align as usize, fa2::PARAMS_ALIGN, "{name}: .param alignment");
            assert_eq!(module.static_shared_bytes(name), Some(0), "{name}: FA2 uses dynamic shared memory only");
        }
    }
}

/// The generator's inputs are those the fixtures were made from (cheap; no nvcc needed).
#[test]
fn fa2_fixture_inputs_unchanged() {
    let h = fa2::inputs_hash(&fa2::root()).unwrap();
    assert_eq!(
        h,
        fa2::INPUTS_FNV1A64,
        "bench-fa2 sources or scripts/fa2-ptx.sh changed since the fixtures were generated: run bash scripts/fa2-ptx.sh"
    );
}

/// With FA2_REGENERATE=1: rebuilds everything with scripts/fa2-ptx.sh into a temporary
/// folder and requires the checked-in PTX (decompressed) and generated layout to equal it.
#[test]
fn fa2_fixtures_fresh() {
    if std::env::var("FA2_REGENERATE").map_or(true, |v| v != "1") {
        eprintln!("skipped: set FA2_REGENERATE=1 to rebuild FA2's PTX (downloads the sdist, ~1.5 min of nvcc) and compare");
        return;
    }
    let root = fa2::root();
    let tmp = std::env::temp_dir().join(format!("fa2-fixtures-{}", std::process::id()));
    let st = std::process::Command::new("bash").arg(root.join("scripts/fa2-ptx.sh")).arg(&tmp).status().unwrap();
    assert!(st.success(), "scripts/fa2-ptx.sh failed");
    let mut stale = Vec::new();
    for file in ["fa2_fwd_hdim128.ptx.gz", "fa2_fwd_hdim64.ptx.gz"] {
        let fresh = fa2::read_gz(&tmp.join("ptx").join(file)).unwrap();
        let fixture = fa2::read_gz(&root.join("bench-fa2/ptx").join(file)).unwrap();
        if fresh != fixture {
            stale.push(file);
        }
    }
    let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    if read(tmp.join("generated/fa2_layout.rs")) != read(root.join("bench-fa2/generated/fa2_layout.rs")) {
        stale.push("fa2_layout.rs");
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(stale.is_empty(), "stale FA2 fixtures {stale:?}: regenerate with bash scripts/fa2-ptx.sh");
}
