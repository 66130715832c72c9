//! Build script: compiles every `kernels/*.cu` to PTX for the oldest target architecture
//! (the driver JIT-compiles it for newer GPUs), runs ptxas on exactly that PTX for every
//! target to record its resource usage there, and embeds the PTX in the crate.
//!
//! The compiler is, in this order: `$NVCC`; NVRTC from `$SPARSE_ATTN_NVRTC_DIR` (the folder
//! `scripts/install-cuda-toolchain.sh` fills); `$CUDA_HOME/bin/nvcc`; `nvcc` on `PATH`; NVRTC
//! from `.cuda-toolchain/nvrtc`. The compiler's version fixes the PTX ISA, and so the oldest
//! driver that loads the kernels: the pinned NVRTC 12.4 emits ISA 8.4 (R550 / CUDA 12.4
//! drivers and newer).
//!
//! Without a compiler the crate still builds, with no kernels (launch functions return
//! `Error::KernelsUnavailable`), unless `SPARSE_ATTN_REQUIRE_KERNELS=1` makes that an error.
//!
//! Targets come from `SPARSE_ATTN_CUDA_ARCHS` (comma-separated compute capabilities,
//! default `80,90`): the PTX is compiled for the oldest, and ptxas measures it on each. The
//! script re-runs only when a kernel source or header, the compiler (its file or the
//! variables that choose it) or the target list changes; within a run, a module is
//! recompiled only when its own source, a header it includes, the targets or the compiler
//! changed. With `SPARSE_ATTN_KERNEL_CACHE` set to a folder, a module compiled by
//! any build (another profile, feature set or target dir) is taken from there instead.

mod compile;
mod embed;
mod files;
mod nvrtc;
mod ptxas_log;
mod toolchain;

use std::path::PathBuf;

use compile::Compiled;

const DEFAULT_ARCHS: &str = "80,90";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernels_dir = root.join("kernels");
    for var in ["SPARSE_ATTN_CUDA_ARCHS", "SPARSE_ATTN_REQUIRE_KERNELS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // The folder itself, so that a new kernel or header re-runs the script too.
    println!("cargo:rerun-if-changed={}", kernels_dir.display());

    let sources = files::list(&kernels_dir, |p| p.extension().is_some_and(|e| e == "cu"));
    let archs = parse_archs(&std::env::var("SPARSE_ATTN_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.into()));
    // compile.rs's KernelCache: where compiled modules are shared between builds.
    println!("cargo:rerun-if-env-changed=SPARSE_ATTN_KERNEL_CACHE");

    let found = toolchain::find(&root);
    for var in &found.watched_env {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let Some(toolchain) = found.toolchain else {
        // Nothing missing is watched (cargo would re-run the script on every build), so a
        // compiler installed later is seen through the variables that point at it.
        let reason = match &found.missing {
            Some(missing) => format!("built without a CUDA compiler: {missing}"),
            None => "built without a CUDA compiler (set NVCC or CUDA_HOME, or set SPARSE_ATTN_NVRTC_DIR to the folder scripts/install-cuda-toolchain.sh prints, then rebuild)".to_string(),
        };
        if std::env::var("SPARSE_ATTN_REQUIRE_KERNELS").is_ok_and(|v| v == "1") {
            panic!("sparse-attn: SPARSE_ATTN_REQUIRE_KERNELS=1, but no CUDA compiler was found: {reason}");
        }
        println!("cargo:warning=sparse-attn: the crate carries no CUDA kernels: {reason}");
        embed::write(&out, &[], None, &reason);
        return;
    };
    for file in toolchain.files() {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let results: Vec<Compiled> = std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .iter()
            .map(|src| {
                let (toolchain, archs, out, kernels_dir) = (&toolchain, &archs, &out, &kernels_dir);
                scope.spawn(move || compile::module(toolchain, src, archs, out, kernels_dir))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });

    for (arch, k) in results.iter().flat_map(|c| &c.targets).flat_map(|(arch, kernels)| kernels.iter().map(move |k| (arch, k))) {
        if k.spill_stores > 0 || k.spill_loads > 0 {
            // A spill is a performance bug, not a build failure: tests/ptxas_report.rs fails on it.
            println!("cargo:warning=sparse-attn: {} ({arch}) spills {} bytes stored / {} loaded", k.name, k.spill_stores, k.spill_loads);
        }
    }
    let report_path = out.join("ptxas_report.tsv");
    std::fs::write(&report_path, ptxas_log::report(&results)).expect("writing the ptxas report into OUT_DIR");
    embed::write(&out, &results, Some(&report_path), "");
}

/// The target compute capabilities, sorted and without repeats: the first is the one the
/// PTX is compiled for.
fn parse_archs(list: &str) -> Vec<u32> {
    let mut archs: Vec<u32> = list
        .split(',')
        .map(|a| a.trim().trim_start_matches("sm_"))
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().unwrap_or_else(|_| panic!("SPARSE_ATTN_CUDA_ARCHS: `{a}` is not a compute capability like 80 or 90")))
        .collect();
    assert!(!archs.is_empty(), "SPARSE_ATTN_CUDA_ARCHS: no compute capability given (e.g. 80,90)");
    assert!(archs.iter().all(|&a| a >= 80), "SPARSE_ATTN_CUDA_ARCHS: the kernels need sm_80 or later (mma.sync bf16, cp.async)");
    archs.sort_unstable();
    archs.dedup();
    archs
}
