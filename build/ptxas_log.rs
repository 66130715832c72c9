//! Reading `ptxas -v` output and writing the resource report the crate embeds.

use std::fmt::Write as _;

use crate::compile::Compiled;

/// One entry function's resources, as ptxas reports them for one target.
#[derive(Default)]
pub struct KernelResources {
    pub name: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack: u32,
    pub smem: u32,
}

/// Per entry function of a `ptxas -v` log: registers, spills, stack and static shared memory.
pub fn parse(log: &str) -> Vec<KernelResources> {
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

/// The report as TSV: a header line, then one row per kernel and target.
pub fn report(results: &[Compiled]) -> String {
    let mut report = String::from("module\tkernel\tarch\tregisters\tspill_store_bytes\tspill_load_bytes\tstack_bytes\tsmem_bytes\n");
    for c in results {
        for (arch, kernels) in &c.targets {
            for k in kernels {
                let _ = writeln!(
                    report,
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    c.module, k.name, arch, k.registers, k.spill_stores, k.spill_loads, k.stack, k.smem
                );
            }
        }
    }
    report
}
