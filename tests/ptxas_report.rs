//! The build's ptxas resource report: every kernel module's PTX is measured on every target,
//! and no kernel spills registers to local memory.
//!
//! Without a CUDA compiler the crate carries no kernels and this test skips with the reason, unless
//! `SPARSE_ATTN_REQUIRE_KERNELS=1` (set by scripts/test.sh and CI) makes that a failure.

use sparse_attn::ptx::{modules, resource_report};

fn kernels_required() -> bool {
    std::env::var("SPARSE_ATTN_REQUIRE_KERNELS").is_ok_and(|v| v == "1")
}

fn report_or_skip() -> Option<&'static str> {
    match resource_report() {
        Some(r) => Some(r),
        None => {
            assert!(!kernels_required(), "SPARSE_ATTN_REQUIRE_KERNELS=1 but the crate was built without a CUDA compiler");
            eprintln!("skipped: the crate was built without a CUDA compiler, so there is no ptxas report");
            None
        }
    }
}

struct Row<'a> {
    module: &'a str,
    kernel: &'a str,
    arch: &'a str,
    registers: u32,
    spill_store: u32,
    spill_load: u32,
    static_smem: u32,
}

fn rows(report: &str) -> Vec<Row<'_>> {
    report
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 8, "malformed report line: {line}");
            let n = |i: usize| f[i].parse::<u32>().unwrap_or_else(|_| panic!("bad number in {line}"));
            Row { module: f[0], kernel: f[1], arch: f[2], registers: n(3), spill_store: n(4), spill_load: n(5), static_smem: n(7) }
        })
        .collect()
}

#[test]
fn every_source_is_compiled_once_and_measured_on_every_target() {
    let Some(report) = report_or_skip() else { return };
    let rows = rows(report);
    let sources: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/kernels"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(!sources.is_empty(), "no kernels/*.cu");
    for src in &sources {
        // One PTX per module, for the oldest target; the driver JIT-compiles it for newer GPUs.
        let embedded: Vec<_> = modules().iter().filter(|m| m.name == src).collect();
        assert_eq!(embedded.len(), 1, "{src}.cu: {} embedded modules, expected one", embedded.len());
        let m = embedded[0];
        assert_eq!(m.target.arch, "sm_80", "{src}: PTX compiled for {}, expected the oldest target", m.target.arch);
        assert!(m.ptx.contains(".target sm_80"), "{src}: the PTX's .target is not sm_80");
        let entries = m.ptx.matches(".entry ").count();
        assert!(entries > 0, "{src}: PTX has no kernel");
        // ptxas compiled that PTX for every target, every kernel of it.
        for arch in ["sm_80", "sm_90"] {
            let measured = rows.iter().filter(|r| r.module == src && r.arch == arch).count();
            assert_eq!(measured, entries, "{src} on {arch}: {measured} kernels in the ptxas report, the PTX has {entries}");
        }
    }
}

#[test]
fn no_kernel_spills() {
    let Some(report) = report_or_skip() else { return };
    let rows = rows(report);
    assert!(!rows.is_empty(), "the report lists no kernel");
    for r in &rows {
        println!("{}::{} {}: {} registers", r.module, r.kernel, r.arch, r.registers);
        assert_eq!((r.spill_store, r.spill_load), (0, 0), "{}::{} spills on {}", r.module, r.kernel, r.arch);
        assert!(r.registers > 0 && r.registers <= 255, "{}::{} uses {} registers", r.module, r.kernel, r.registers);
    }
}

/// sm_86 and sm_89 (consumer Ampere and Ada) allow 99 KiB of shared memory per block, the
/// least of any target GPU: every attention kernel's dynamic shared memory (as the host
/// plans it) plus its static shared memory (ptxas) fits, at every head_dim.
#[test]
fn every_attention_kernel_fits_the_shared_memory_of_sm_86() {
    use sparse_attn::pattern::{vs_convert, BlockSparse, VerticalSlash};
    use sparse_attn::plan::{prefill, topk_attention};
    use sparse_attn::{AttnShape, Source, SparsePattern};
    let Some(report) = report_or_skip() else { return };
    // One source of each pattern: the tile sizes do not depend on the indices.
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let block_sparse = BlockSparse::new(1, 1, 1, 1, vec![1], vec![0]).unwrap();
    let block_sparse = block_sparse.source(&shape).unwrap();
    let vs = VerticalSlash::new(1, 1, 1, 1, vec![0], vec![0]).unwrap();
    let vs = Source::VerticalSlash(vs_convert::convert(&vs, &shape).unwrap());
    const SM_86_BYTES: u32 = 99 * 1024;
    let mut checked = 0;
    for r in rows(report) {
        let head_dim: usize = match r.kernel.rsplit_once("_hd") {
            Some((_, d)) => d.parse().unwrap_or_else(|_| panic!("{}: no head_dim in the name", r.kernel)),
            None => continue,
        };
        let dynamic = match r.module {
            "topk_attention" => topk_attention::shared_mem_bytes(head_dim),
            "prefill" if r.kernel.starts_with("attn_fwd_dense_") => prefill::shared_mem_bytes(&Source::<&[i32]>::Dense, head_dim),
            "prefill" if r.kernel.starts_with("attn_fwd_vertical_slash_") => prefill::shared_mem_bytes(&vs, head_dim),
            "prefill" => prefill::shared_mem_bytes(&block_sparse, head_dim),
            _ => continue,
        };
        let total = dynamic + r.static_smem;
        println!("{}::{} {}: {} + {} bytes of shared memory", r.module, r.kernel, r.arch, dynamic, r.static_smem);
        assert!(total <= SM_86_BYTES, "{}::{} ({}) needs {total} bytes of shared memory, past sm_86's {SM_86_BYTES}", r.module, r.kernel, r.arch);
        checked += 1;
    }
    assert!(checked > 0, "no attention kernel in the report");
}

#[test]
fn module_selection_serves_every_device_from_sm_80_on() {
    use sparse_attn::ptx::module_for;
    use sparse_attn::Error;
    if resource_report().is_none() {
        // Without a CUDA compiler every lookup is the documented KernelsUnavailable error.
        assert!(matches!(module_for("vs_convert", 90), Err(Error::KernelsUnavailable { .. })));
        report_or_skip();
        return;
    }
    for cc in [80, 86, 89, 90, 100, 120] {
        assert_eq!(module_for("vs_convert", cc).unwrap().target.arch, "sm_80", "compute capability {cc}");
    }
    // Older than the PTX's target, or a module that does not exist: a named error, not a panic.
    assert!(matches!(module_for("vs_convert", 75), Err(Error::KernelsUnavailable { reason }) if reason.contains("7.5")));
    assert!(matches!(module_for("no_such_module", 90), Err(Error::KernelsUnavailable { .. })));
}

/// Many GPU servers run R535–R570 drivers (CUDA 12.2–12.8); a driver refuses PTX of a newer
/// ISA than it knows. R550 (CUDA 12.4) loads ISA 8.4, which the pinned NVRTC 12.4 emits.
#[test]
fn every_embedded_module_loads_on_cuda_12_4_drivers() {
    use sparse_attn::ptx::oldest_driver_for;
    if report_or_skip().is_none() {
        return;
    }
    for m in modules() {
        let isa = m.isa_version().unwrap_or_else(|| panic!("{} for {}: the PTX has no .version directive", m.name, m.target.arch));
        println!("{} {}: PTX ISA {}.{} from {}, loads on CUDA {:?} drivers and newer", m.name, m.target.arch, isa.0, isa.1, m.compiler, oldest_driver_for(isa));
        assert!(
            isa <= (8, 4),
            "{} for {} is PTX ISA {}.{} (from {}), which needs a newer driver than R550 / CUDA 12.4; \
             build with the pinned NVRTC 12.4 (scripts/install-cuda-toolchain.sh) or a CUDA 12.4 toolkit",
            m.name,
            m.target.arch,
            isa.0,
            isa.1,
            m.compiler
        );
    }
}
