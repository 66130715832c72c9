//! ptxas figures for both sides of the comparison, from one ptxas: the nvcc 13.0 set's
//! (scripts/install-cuda-toolchain.sh nvcc), which reads both this crate's PTX (ISA 8.4)
//! and FA2's (ISA 9.0). Without it, this crate's build-time report (ptxas 12.4) is used
//! and FA2's figures are not available.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What ptxas says about one kernel on one architecture.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resources {
    pub registers: u32,
    pub spill_bytes: u32,
    pub static_shared: u32,
}

/// The nvcc 13.0 set's ptxas, if installed.
pub fn ptxas() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = root.join(".cuda-toolchain/nvcc/nvidia/cu13/bin/ptxas");
    p.is_file().then_some(p)
}

/// Runs `ptxas -v` on `ptx` for `arch` (e.g. `sm_80`) and returns the figures of `kernel`.
pub fn measure(ptxas: &Path, ptx: &str, arch: &str, kernel: &str) -> Result<Resources, String> {
    let dir = std::env::temp_dir().join(format!("sparse-attn-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let input = dir.join("module.ptx");
    std::fs::write(&input, ptx).map_err(|e| e.to_string())?;
    let out = Command::new(ptxas)
        .arg("-v")
        .arg(format!("--gpu-name={arch}"))
        .arg(format!("--entry={kernel}"))
        .arg(&input)
        .arg("-o")
        .arg(dir.join("module.cubin"))
        .output()
        .map_err(|e| format!("running {}: {e}", ptxas.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    let log = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("ptxas failed on {kernel} for {arch}: {log}"));
    }
    Ok(parse(&log))
}

/// The figures from a one-kernel `ptxas -v` log.
fn parse(log: &str) -> Resources {
    let number_before = |line: &str, unit: &str| -> u32 {
        line.find(unit).and_then(|i| line[..i].split_whitespace().last()).and_then(|w| w.parse().ok()).unwrap_or(0)
    };
    let mut r = Resources::default();
    for line in log.lines() {
        if line.contains("bytes spill stores") {
            r.spill_bytes = number_before(line, "bytes spill stores") + number_before(line, "bytes spill loads");
        } else if line.contains("Used") && line.contains("registers") {
            r.registers = number_before(line, "registers");
            r.static_shared = number_before(line, "bytes smem");
        }
    }
    r
}

/// This crate's build-time report row for `kernel` on `arch` (ptxas 12.4).
pub fn from_build_report(kernel: &str, arch: &str) -> Option<Resources> {
    let report = sparse_attn::ptx::resource_report()?;
    report.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        (f.len() == 8 && f[1] == kernel && f[2] == arch).then(|| Resources {
            registers: f[3].parse().unwrap_or(0),
            spill_bytes: f[4].parse::<u32>().unwrap_or(0) + f[5].parse::<u32>().unwrap_or(0),
            static_shared: f[7].parse().unwrap_or(0),
        })
    })
}
