//! Choosing the CUDA compiler, first match wins: `$NVCC`; the NVRTC set in
//! `$SPARSE_ATTN_NVRTC_DIR`; `$CUDA_HOME/bin/nvcc`; `nvcc` on `PATH`; the NVRTC set in
//! `.cuda-toolchain/nvrtc` (what `scripts/install-cuda-toolchain.sh` installs). What is named
//! explicitly beats what is found.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nvrtc::Nvrtc;

/// The front end that turns CUDA C++ into PTX.
pub enum Frontend {
    Nvcc(PathBuf),
    Nvrtc { library: PathBuf, nvrtc: Nvrtc, headers: PathBuf },
}

/// A compiler plus the ptxas that checks and measures its output.
pub struct Toolchain {
    pub frontend: Frontend,
    pub ptxas: PathBuf,
    /// Everything that identifies the compiler's output (version text, paths), for the
    /// per-module stamps.
    pub id: String,
    /// Short name and version, e.g. `NVRTC 12.4` or `nvcc 13.0`; embedded per module.
    pub label: String,
}

impl Toolchain {
    /// The files whose change means a different compiler.
    pub fn files(&self) -> Vec<&Path> {
        let front = match &self.frontend {
            Frontend::Nvcc(nvcc) => nvcc.as_path(),
            Frontend::Nvrtc { library, .. } => library.as_path(),
        };
        vec![front, self.ptxas.as_path()]
    }
}

/// The search's result: the toolchain, and the variables whose change could change it.
pub struct Found {
    pub toolchain: Option<Toolchain>,
    pub watched_env: Vec<&'static str>,
    /// Why an explicitly named compiler could not be used.
    pub missing: Option<String>,
}

/// Where the pinned NVRTC set lives unless `SPARSE_ATTN_NVRTC_DIR` says otherwise.
const DEFAULT_NVRTC_DIR: &str = ".cuda-toolchain/nvrtc";

pub fn find(root: &Path) -> Found {
    let env_path = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut watched_env = vec!["NVCC", "CUDA_HOME", "SPARSE_ATTN_NVRTC_DIR"];

    if let Some(nvcc) = env_path("NVCC") {
        if !nvcc.is_file() {
            return Found { toolchain: None, watched_env, missing: Some(format!("NVCC={} is not a file", nvcc.display())) };
        }
        return Found { toolchain: Some(nvcc_toolchain(nvcc)), watched_env, missing: None };
    }
    // An NVRTC folder named explicitly beats an nvcc found implicitly: an engine whose
    // nvcc (for candle, say) is newer than its drivers can still embed ISA 8.4 PTX.
    // A folder that holds no set ends the search too (as a wrong NVCC does): the build then
    // says what is missing rather than quietly taking another compiler.
    if let Some(dir) = env_path("SPARSE_ATTN_NVRTC_DIR") {
        let toolchain = nvrtc_toolchain(&dir);
        let missing = toolchain.is_none().then(|| format!("SPARSE_ATTN_NVRTC_DIR={} holds no NVRTC set", dir.display()));
        return Found { toolchain, watched_env, missing };
    }
    if let Some(nvcc) = env_path("CUDA_HOME").map(|h| h.join("bin").join("nvcc")).filter(|p| p.is_file()) {
        return Found { toolchain: Some(nvcc_toolchain(nvcc)), watched_env, missing: None };
    }
    // From here on, what PATH holds decides; a PATH that differs between two builds
    // re-runs the script only in this case.
    watched_env.push("PATH");
    let on_path = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("nvcc")).find(|p| p.is_file()));
    if let Some(nvcc) = on_path {
        return Found { toolchain: Some(nvcc_toolchain(nvcc)), watched_env, missing: None };
    }
    Found { toolchain: nvrtc_toolchain(&root.join(DEFAULT_NVRTC_DIR)), watched_env, missing: None }
}

fn nvcc_toolchain(nvcc: PathBuf) -> Toolchain {
    let version = Command::new(&nvcc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| panic!("could not run {} --version: {e}", nvcc.display()));
    let release = version.split("release ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("unknown").to_string();
    Toolchain {
        ptxas: nvcc.with_file_name("ptxas"),
        id: format!("{}\n{version}", nvcc.display()),
        label: format!("nvcc {release}"),
        frontend: Frontend::Nvcc(nvcc),
    }
}

/// The wheel layout under `dir`: `nvidia/cuda_nvrtc/lib/libnvrtc.so.12`, the runtime
/// headers in `nvidia/cuda_runtime/include`, ptxas in `nvidia/cuda_nvcc/bin`.
fn nvrtc_toolchain(dir: &Path) -> Option<Toolchain> {
    let library = dir.join("nvidia/cuda_nvrtc/lib/libnvrtc.so.12");
    let headers = dir.join("nvidia/cuda_runtime/include");
    let ptxas = dir.join("nvidia/cuda_nvcc/bin/ptxas");
    if !(library.is_file() && headers.is_dir() && ptxas.is_file()) {
        return None;
    }
    let nvrtc = Nvrtc::load(&library).unwrap_or_else(|e| panic!("the NVRTC in {} does not load: {e}", dir.display()));
    let (major, minor) = nvrtc.version;
    Some(Toolchain {
        id: format!("nvrtc {major}.{minor} {}\n{}", library.display(), ptxas.display()),
        label: format!("NVRTC {major}.{minor}"),
        ptxas,
        frontend: Frontend::Nvrtc { library, nvrtc, headers },
    })
}
