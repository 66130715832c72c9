//! Compiling one kernel module: its PTX once, for the oldest target, then ptxas on exactly
//! that PTX for every target to measure it.
//!
//! One PTX serves every target because the driver JIT-compiles PTX for the device it loads
//! on, and PTX for compute_80 runs on any newer GPU. The kernels use nothing newer than
//! sm_80 (mma.sync, cp.async, ldmatrix), and the front end's output for compute_90 was the
//! same text but its `.target` line for the attention modules (the fp16 headers pick a few
//! other conversion instructions in the small ones), so a second front-end run per target
//! bought nothing but build time and a second copy of the PTX in every binary. ptxas still
//! compiles the PTX for each target, as the driver will, so the report covers every GPU.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::files;
use crate::ptxas_log::{self, KernelResources};
use crate::toolchain::{Frontend, Toolchain};

/// One module's PTX and ptxas's account of it on each target.
pub struct Compiled {
    pub module: String,
    /// The compute capability the PTX was compiled for (its `.target`): the oldest target.
    pub cc: u32,
    /// The toolchain label, e.g. `NVRTC 12.4`.
    pub compiler: String,
    pub ptx_path: PathBuf,
    /// Per target, oldest first: its arch (`sm_90`) and ptxas's resources per kernel.
    pub targets: Vec<(String, Vec<KernelResources>)>,
}

/// Compiles `src` for compute capability `ccs[0]` (the oldest target; `ccs` is sorted) into
/// `out` and runs ptxas on it for each of `ccs`, unless the stamp there says the same
/// source, headers, targets and compiler produced them already.
pub fn module(toolchain: &Toolchain, src: &Path, ccs: &[u32], out: &Path, kernels_dir: &Path) -> Compiled {
    let module = src.file_stem().expect("a .cu file has a stem").to_string_lossy().into_owned();
    let archs: Vec<String> = ccs.iter().map(|cc| format!("sm_{cc}")).collect();
    let ptx_path = out.join(format!("{module}.ptx"));
    let log_paths: Vec<PathBuf> = archs.iter().map(|arch| out.join(format!("{module}.{arch}.ptxas.log"))).collect();
    let stamp_path = out.join(format!("{module}.stamp"));

    let source = std::fs::read_to_string(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    // Only the headers this module reads go into its stamp, so editing a header that
    // (say) the attention kernels include leaves vs_convert.cu alone.
    let header_hash = files::hash(&files::local_includes(src, kernels_dir), kernels_dir);
    let mut h = DefaultHasher::new();
    (&source, header_hash, &toolchain.id, ccs).hash(&mut h);
    let stamp = format!("{:016x}", h.finish());
    let outputs: Vec<&Path> = std::iter::once(ptx_path.as_path()).chain(log_paths.iter().map(PathBuf::as_path)).collect();
    let up_to_date = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) && outputs.iter().all(|p| p.exists());

    if !up_to_date {
        let cache = KernelCache::from_env(&module, &stamp);
        if !cache.as_ref().is_some_and(|c| c.restore(&outputs)) {
            write_ptx(toolchain, src, &source, ccs[0], kernels_dir, &ptx_path);
            // ptxas measures exactly the PTX that is embedded, for every target at once.
            std::thread::scope(|scope| {
                for (arch, log_path) in archs.iter().zip(&log_paths) {
                    let (ptx_path, cubin) = (&ptx_path, out.join(format!("{module}.{arch}.cubin")));
                    scope.spawn(move || {
                        let mut cmd = Command::new(&toolchain.ptxas);
                        cmd.arg("-v").arg(format!("--gpu-name={arch}")).arg(ptx_path).arg("-o").arg(&cubin);
                        let log = run_capture(&mut cmd).unwrap_or_else(|msg| panic!("ptxas failed on {} for {arch}:\n{msg}", ptx_path.display()));
                        std::fs::write(log_path, log).expect("writing the ptxas log into OUT_DIR");
                    });
                }
            });
            if let Some(c) = &cache {
                c.store(&outputs);
            }
        }
        std::fs::write(&stamp_path, &stamp).expect("writing the stamp into OUT_DIR");
    }
    let targets = archs
        .into_iter()
        .zip(&log_paths)
        .map(|(arch, path)| {
            let log = std::fs::read_to_string(path).expect("the ptxas log was just written or is up to date");
            (arch, ptxas_log::parse(&log))
        })
        .collect();
    Compiled { module, cc: ccs[0], compiler: toolchain.label.clone(), ptx_path, targets }
}

/// A folder shared by builds (`SPARSE_ATTN_KERNEL_CACHE`) that keeps each module's PTX and
/// ptxas logs under its stamp, which hashes the source, the headers it includes (by path and
/// content), the compiler and the targets. Every feature set and profile runs the build
/// script in its own OUT_DIR, so without it CI compiled the same modules several times
/// (tests with and without `sim`, benches, clippy, MSRV, the freshness check). A failed
/// store only costs the next build a compile.
struct KernelCache {
    dir: PathBuf,
    prefix: String,
}

impl KernelCache {
    fn from_env(module: &str, stamp: &str) -> Option<Self> {
        let dir = PathBuf::from(std::env::var_os("SPARSE_ATTN_KERNEL_CACHE").filter(|d| !d.is_empty())?);
        Some(Self { dir, prefix: format!("{module}.{stamp}") })
    }

    /// Where the cache keeps the OUT_DIR file `file` (`prefill.sm_90.ptxas.log` is kept as
    /// `prefill.<stamp>.sm_90.ptxas.log`).
    fn entry(&self, file: &Path) -> PathBuf {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rest = name.split_once('.').map_or("", |(_, rest)| rest);
        self.dir.join(format!("{}.{rest}", self.prefix))
    }

    /// Copies a cached module into OUT_DIR; false when any of its files is missing.
    fn restore(&self, files: &[&Path]) -> bool {
        files.iter().all(|f| self.entry(f).is_file()) && files.iter().all(|f| std::fs::copy(self.entry(f), f).is_ok())
    }

    /// Adds a compiled module, each file written under a private name and renamed into
    /// place, so a build running alongside never reads half a file. The PTX goes last:
    /// `restore` wants every file, so a module is taken only once its logs are in.
    fn store(&self, files: &[&Path]) {
        let _ = std::fs::create_dir_all(&self.dir);
        for from in files.iter().rev() {
            let to = self.entry(from);
            let tmp = to.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::copy(from, &tmp).is_err() || std::fs::rename(&tmp, &to).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
    }
}

/// Compiles `src` (whose text is `source`) for `compute_{cc}` and writes the PTX to `dest`.
fn write_ptx(toolchain: &Toolchain, src: &Path, source: &str, cc: u32, kernels_dir: &Path, dest: &Path) {
    let mut options = vec![
        format!("--gpu-architecture=compute_{cc}"),
        "-std=c++17".to_string(),
        "--use_fast_math".to_string(),
        format!("-I{}", kernels_dir.display()),
    ];
    match &toolchain.frontend {
        Frontend::Nvcc(nvcc) => {
            let mut cmd = Command::new(nvcc);
            cmd.args(["-ptx", "-O3"]).args(&options).arg("-o").arg(dest).arg(src);
            run_capture(&mut cmd).unwrap_or_else(|msg| panic!("nvcc failed on {} for compute_{cc}:\n{msg}", src.display()));
        }
        Frontend::Nvrtc { nvrtc, headers, .. } => {
            // NVRTC always optimises; it has no -O3 and reads no files but the includes.
            options.push(format!("-I{}", headers.display()));
            let ptx = nvrtc.compile(source, &src.display().to_string(), &options).unwrap_or_else(|msg| panic!("{msg}"));
            std::fs::write(dest, ptx).expect("writing PTX into OUT_DIR");
        }
    }
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
