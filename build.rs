//! Compiles every `kernels/*.cu` to PTX for each target architecture, runs `ptxas -v` on it,
//! records the resource usage, and embeds the PTX in the crate.
//!
//! nvcc is looked up in `$NVCC`, `$CUDA_HOME/bin`, `PATH`, then `.cuda-toolchain/` (what
//! `scripts/install-cuda-toolchain.sh` installs). Without nvcc the crate still builds, with
//! no kernels: launch functions then return `Error::KernelsUnavailable`.
//!
//! Targets come from `SPARSE_ATTN_CUDA_ARCHS` (comma-separated compute capabilities,
//! default `80,90`). A module is recompiled only when its own source, a header it includes
//! (directly or not), the target list or the compiler changes, so editing one kernel, or a
//! header only some kernels use, leaves the others alone.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_ARCHS: &str = "80,90";

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let kernels_dir = root.join("kernels");
    for var in ["NVCC", "CUDA_HOME", "SPARSE_ATTN_CUDA_ARCHS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=.cuda-toolchain/.installed");

    let sources = list_files(&kernels_dir, |p| p.extension().is_some_and(|e| e == "cu"));
    let headers = list_files_recursive(&kernels_dir, |p| p.extension().is_some_and(|e| e == "h" || e == "cuh"));
    for file in sources.iter().chain(&headers) {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let archs = parse_archs(&std::env::var("SPARSE_ATTN_CUDA_ARCHS").unwrap_or_else(|_| DEFAULT_ARCHS.into()));

    let Some(nvcc) = find_nvcc(&root) else {
        let reason = "built without nvcc (set NVCC or CUDA_HOME, or run scripts/install-cuda-toolchain.sh, then rebuild)";
        println!("cargo:warning=sparse-attn: no nvcc found; the crate carries no CUDA kernels: {reason}");
        write_embedded(&out, &[], None, reason);
        return;
    };
    let ptxas = nvcc.with_file_name("ptxas");
    let compiler_id = run_capture(Command::new(&nvcc).arg("--version")).unwrap_or_default();

    let jobs: Vec<(PathBuf, u32)> = sources.iter().flat_map(|s| archs.iter().map(move |&a| (s.clone(), a))).collect();
    let results: Vec<Compiled> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(src, arch)| {
                let (nvcc, ptxas, out, kernels_dir, compiler_id) = (&nvcc, &ptxas, &out, &kernels_dir, &compiler_id);
                // Only the headers this module reads go into its stamp, so editing a header
                // that (say) the attention kernels include leaves vs_convert.cu alone.
                let header_hash = hash_files(&local_includes(src, kernels_dir));
                scope.spawn(move || compile(nvcc, ptxas, src, *arch, out, kernels_dir, header_hash, compiler_id))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut report = String::from("module\tkernel\tarch\tregisters\tspill_store_bytes\tspill_load_bytes\tstack_bytes\tsmem_bytes\n");
    for c in &results {
        for k in &c.kernels {
            writeln!(
                report,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                c.module, k.name, c.arch, k.registers, k.spill_stores, k.spill_loads, k.stack, k.smem
            )
            .unwrap();
            if k.spill_stores > 0 || k.spill_loads > 0 {
                println!(
                    "cargo:warning=sparse-attn: {} ({}) spills {} bytes stored / {} loaded",
                    k.name, c.arch, k.spill_stores, k.spill_loads
                );
            }
        }
    }
    let report_path = out.join("ptxas_report.tsv");
    std::fs::write(&report_path, &report).unwrap();
    write_embedded(&out, &results, Some(&report_path), "");
}

struct Compiled {
    module: String,
    arch: String,
    cc: u32,
    ptx_path: PathBuf,
    kernels: Vec<KernelResources>,
}

#[derive(Default)]
struct KernelResources {
    name: String,
    registers: u32,
    spill_stores: u32,
    spill_loads: u32,
    stack: u32,
    smem: u32,
}

#[allow(clippy::too_many_arguments)]
fn compile(
    nvcc: &Path,
    ptxas: &Path,
    src: &Path,
    cc: u32,
    out: &Path,
    include: &Path,
    header_hash: u64,
    compiler_id: &str,
) -> Compiled {
    let module = src.file_stem().unwrap().to_string_lossy().into_owned();
    let arch = format!("sm_{cc}");
    let ptx_path = out.join(format!("{module}.{arch}.ptx"));
    let log_path = out.join(format!("{module}.{arch}.ptxas.log"));
    let stamp_path = out.join(format!("{module}.{arch}.stamp"));

    let mut h = DefaultHasher::new();
    (std::fs::read(src).unwrap(), header_hash, compiler_id, cc, nvcc).hash(&mut h);
    let stamp = format!("{:016x}", h.finish());
    let up_to_date = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) && ptx_path.exists() && log_path.exists();

    if !up_to_date {
        let mut cmd = Command::new(nvcc);
        cmd.args(["-ptx", "-O3", "-std=c++17", "--use_fast_math"])
            .arg(format!("--gpu-architecture=compute_{cc}"))
            .arg("-I")
            .arg(include)
            .arg("-o")
            .arg(&ptx_path)
            .arg(src);
        if let Err(msg) = run_capture(&mut cmd) {
            panic!("nvcc failed on {} for {arch}:\n{msg}", src.display());
        }
        let mut cmd = Command::new(ptxas);
        cmd.arg("-v").arg(format!("--gpu-name={arch}")).arg(&ptx_path).arg("-o").arg(out.join(format!("{module}.{arch}.cubin")));
        let log = run_capture(&mut cmd).unwrap_or_else(|msg| panic!("ptxas failed on {} for {arch}:\n{msg}", ptx_path.display()));
        std::fs::write(&log_path, log).unwrap();
        std::fs::write(&stamp_path, &stamp).unwrap();
        println!("cargo:warning=sparse-attn: nvcc compiled kernels/{module}.cu for {arch}");
    }
    let kernels = parse_ptxas_log(&std::fs::read_to_string(&log_path).unwrap());
    Compiled { module, arch, cc, ptx_path, kernels }
}

/// Reads ptxas -v output: per entry function, its registers, spills, stack and shared memory.
fn parse_ptxas_log(log: &str) -> Vec<KernelResources> {
    let mut kernels: Vec<KernelResources> = Vec::new();
    let number_before = |line: &str, unit: &str| -> u32 {
        let idx = line.find(unit).unwrap_or(0);
        line[..idx].split_whitespace().last().and_then(|w| w.parse().ok()).unwrap_or(0)
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            kernels.push(KernelResources { name, ..Default::default() });
        } else if let Some(k) = kernels.last_mut() {
            if line.contains("bytes spill stores") {
                k.stack = number_before(line, "bytes stack frame");
                k.spill_stores = number_before(line, "bytes spill stores");
                k.spill_loads = number_before(line, "bytes spill loads");
            } else if line.contains("Used") && line.contains("registers") {
                k.registers = number_before(line, "registers");
                if line.contains("bytes smem") {
                    k.smem = number_before(line, "bytes smem");
                }
            }
        }
    }
    kernels
}

fn write_embedded(out: &Path, compiled: &[Compiled], report: Option<&Path>, reason: &str) {
    let mut code = String::from("static EMBEDDED_MODULES: &[KernelModule] = &[\n");
    for c in compiled {
        writeln!(
            code,
            "    KernelModule {{ name: {:?}, target: Target {{ arch: {:?}, compute_capability: {} }}, ptx: include_str!({:?}) }},",
            c.module,
            c.arch,
            c.cc,
            c.ptx_path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    match report {
        Some(p) => writeln!(code, "static RESOURCE_REPORT: Option<&str> = Some(include_str!({:?}));", p.display().to_string()),
        None => writeln!(code, "static RESOURCE_REPORT: Option<&str> = None;"),
    }
    .unwrap();
    writeln!(code, "const NO_KERNELS_REASON: &str = {reason:?};").unwrap();
    std::fs::write(out.join("kernels_embedded.rs"), code).unwrap();
}

fn find_nvcc(root: &Path) -> Option<PathBuf> {
    let env_path = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut candidates: Vec<PathBuf> = Vec::new();
    candidates.extend(env_path("NVCC"));
    candidates.extend(env_path("CUDA_HOME").map(|h| h.join("bin").join("nvcc")));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.push(root.join(".cuda-toolchain/nvidia/cu13/bin/nvcc"));
    candidates.into_iter().find(|p| p.is_file())
}

fn parse_archs(list: &str) -> Vec<u32> {
    let archs: Vec<u32> = list
        .split(',')
        .map(|a| a.trim().trim_start_matches("sm_"))
        .filter(|a| !a.is_empty())
        .map(|a| a.parse().unwrap_or_else(|_| panic!("SPARSE_ATTN_CUDA_ARCHS: `{a}` is not a compute capability like 80 or 90")))
        .collect();
    assert!(archs.iter().all(|&a| a >= 80), "SPARSE_ATTN_CUDA_ARCHS: the kernels need sm_80 or later (mma.sync bf16, cp.async)");
    archs
}

fn run_capture(cmd: &mut Command) -> Result<String, String> {
    let output = cmd.output().map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} exited with {}:\n{text}", output.status))
    }
}

fn list_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && keep(p)).collect())
        .unwrap_or_default();
    files.sort();
    files
}

fn list_files_recursive(dir: &Path, keep: impl Fn(&Path) -> bool + Copy) -> Vec<PathBuf> {
    let mut files = list_files(dir, keep);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for sub in rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()) {
            files.extend(list_files_recursive(&sub, keep));
        }
    }
    files.sort();
    files
}

/// The project headers `src` includes, transitively: every `#include "..."` resolved
/// against the including file's folder, then `include_dir` (nvcc's `-I`). Angle-bracket
/// and unresolvable includes are system headers, covered by the compiler id. Sorted, so
/// the hash does not depend on discovery order.
fn local_includes(src: &Path, include_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(file) = pending.pop() {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.trim_start().strip_prefix("#include") else { continue };
            let Some(name) = rest.trim().strip_prefix('"').and_then(|r| r.split('"').next()) else { continue };
            let candidates = [file.parent().map(|d| d.join(name)), Some(include_dir.join(name))];
            if let Some(path) = candidates.into_iter().flatten().find(|p| p.is_file()) {
                let path = path.canonicalize().unwrap_or(path);
                if !found.contains(&path) {
                    found.push(path.clone());
                    pending.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

fn hash_files(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        (f, std::fs::read(f).unwrap_or_default()).hash(&mut h);
    }
    h.finish()
}
