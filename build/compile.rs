//! Compiling one kernel module for one target, and measuring it with ptxas.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::files;
use crate::ptxas_log::{self, KernelResources};
use crate::toolchain::{Frontend, Toolchain};

/// One module's PTX for one target, and ptxas's account of it.
pub struct Compiled {
    pub module: String,
    pub arch: String,
    pub cc: u32,
    /// The toolchain label, e.g. `NVRTC 12.4`.
    pub compiler: String,
    pub ptx_path: PathBuf,
    pub kernels: Vec<KernelResources>,
}

/// Compiles `src` for compute capability `cc` into `out`, unless the stamp there says the
/// same source, headers, target and compiler produced the PTX already.
pub fn module(toolchain: &Toolchain, src: &Path, cc: u32, out: &Path, kernels_dir: &Path) -> Compiled {
    let module = src.file_stem().expect("a .cu file has a stem").to_string_lossy().into_owned();
    let arch = format!("sm_{cc}");
    let ptx_path = out.join(format!("{module}.{arch}.ptx"));
    let log_path = out.join(format!("{module}.{arch}.ptxas.log"));
    let stamp_path = out.join(format!("{module}.{arch}.stamp"));

    let source = std::fs::read_to_string(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    // Only the headers this module reads go into its stamp, so editing a header that
    // (say) the attention kernels include leaves vs_convert.cu alone.
    let header_hash = files::hash(&files::local_includes(src, kernels_dir), kernels_dir);
    let mut h = DefaultHasher::new();
    (&source, header_hash, &toolchain.id, cc).hash(&mut h);
    let stamp = format!("{:016x}", h.finish());
    let up_to_date = std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) && ptx_path.exists() && log_path.exists();

    if !up_to_date {
        let cache = KernelCache::from_env(&module, &arch, &stamp);
        if !cache.as_ref().is_some_and(|c| c.restore(&ptx_path, &log_path)) {
            write_ptx(toolchain, src, &source, cc, kernels_dir, &ptx_path);
            // ptxas measures exactly the PTX that is embedded.
            let mut cmd = Command::new(&toolchain.ptxas);
            cmd.arg("-v").arg(format!("--gpu-name={arch}")).arg(&ptx_path).arg("-o").arg(out.join(format!("{module}.{arch}.cubin")));
            let log = run_capture(&mut cmd).unwrap_or_else(|msg| panic!("ptxas failed on {} for {arch}:\n{msg}", ptx_path.display()));
            std::fs::write(&log_path, log).expect("writing the ptxas log into OUT_DIR");
            if let Some(c) = &cache {
                c.store(&ptx_path, &log_path);
            }
        }
        std::fs::write(&stamp_path, &stamp).expect("writing the stamp into OUT_DIR");
    }
    let log = std::fs::read_to_string(&log_path).expect("the ptxas log was just written or is up to date");
    Compiled { module, arch, cc, compiler: toolchain.label.clone(), ptx_path, kernels: ptxas_log::parse(&log) }
}

/// A folder shared by builds (`SPARSE_ATTN_KERNEL_CACHE`) that keeps each module's PTX and
/// ptxas log under its stamp, which hashes the source, the headers it includes (by path and
/// content), the compiler and the target. Every feature set and profile runs the build
/// script in its own OUT_DIR, so without it CI compiled the same modules several times
/// (tests with and without `sim`, benches, clippy, MSRV, the freshness check). A failed
/// store only costs the next build a compile.
struct KernelCache {
    ptx: PathBuf,
    log: PathBuf,
}

impl KernelCache {
    fn from_env(module: &str, arch: &str, stamp: &str) -> Option<Self> {
        let dir = PathBuf::from(std::env::var_os("SPARSE_ATTN_KERNEL_CACHE").filter(|d| !d.is_empty())?);
        let name = |ext: &str| dir.join(format!("{module}.{arch}.{stamp}.{ext}"));
        Some(Self { ptx: name("ptx"), log: name("ptxas.log") })
    }

    /// Copies a cached module into OUT_DIR; false when there is none.
    fn restore(&self, ptx: &Path, log: &Path) -> bool {
        self.ptx.is_file() && self.log.is_file() && std::fs::copy(&self.log, log).is_ok() && std::fs::copy(&self.ptx, ptx).is_ok()
    }

    /// Adds a compiled module, each file written under a private name and renamed into
    /// place, so a build running alongside never reads half a file.
    fn store(&self, ptx: &Path, log: &Path) {
        if let Some(dir) = self.ptx.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        for (from, to) in [(ptx, &self.ptx), (log, &self.log)] {
            let tmp = to.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::copy(from, &tmp).is_err() || std::fs::rename(&tmp, to).is_err() {
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
