//! The PTX registry: what build/main.rs compiled from `kernels/*.cu` (one PTX per module, for
//! the oldest target, which the driver JIT-compiles for the GPU it loads on) and its ptxas
//! resource report on every target.

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/kernels_embedded.rs"));

/// A GPU architecture the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// e.g. `sm_80`.
    pub arch: &'static str,
    /// Compute capability as `major * 10 + minor`.
    pub compute_capability: u32,
}

/// The PTX of one `kernels/<name>.cu`.
#[derive(Debug, Clone, Copy)]
pub struct KernelModule {
    /// File stem, e.g. `vs_convert`.
    pub name: &'static str,
    /// The architecture the PTX was compiled for (its `.target`); it loads on devices of
    /// that compute capability or newer.
    pub target: Target,
    /// The compiler that produced the PTX, e.g. `NVRTC 12.4` or `nvcc 13.0`.
    pub compiler: &'static str,
    /// The PTX text, as loaded by the driver and run by the simulator.
    pub ptx: &'static str,
}

impl KernelModule {
    /// The PTX ISA version the module declares (its `.version` directive), as
    /// `(major, minor)`. The driver refuses a module whose ISA is newer than it knows.
    pub fn isa_version(&self) -> Option<(u32, u32)> {
        isa_version(self.ptx)
    }
}

/// The `.version major.minor` directive of a PTX text.
pub fn isa_version(ptx: &str) -> Option<(u32, u32)> {
    let line = ptx.lines().map(str::trim).find(|l| l.starts_with(".version"))?;
    let (major, minor) = line.strip_prefix(".version")?.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The oldest CUDA driver that loads PTX of ISA `isa`, as (CUDA version, driver branch),
/// e.g. `("12.4", "R550")`, from NVIDIA's release notes; `None` past the table's end.
pub fn oldest_driver_for(isa: (u32, u32)) -> Option<(&'static str, &'static str)> {
    const TABLE: &[((u32, u32), &str, &str)] = &[
        ((8, 0), "12.0", "R525"),
        ((8, 1), "12.1", "R530"),
        ((8, 2), "12.2", "R535"),
        ((8, 3), "12.3", "R545"),
        ((8, 4), "12.4", "R550"),
        ((8, 5), "12.5", "R555"),
        ((8, 6), "12.6", "R560"),
        ((8, 7), "12.8", "R570"),
        ((8, 8), "12.9", "R575"),
        ((9, 0), "13.0", "R580"),
    ];
    TABLE.iter().find(|(v, _, _)| *v >= isa).map(|&(_, cuda, branch)| (cuda, branch))
}

/// Every embedded module; empty when the crate was built without a CUDA compiler.
pub fn modules() -> &'static [KernelModule] {
    EMBEDDED_MODULES
}

/// The module `name` to load on a device of compute capability `cc` (major * 10 + minor):
/// the newest embedded target not above the device (today the one PTX, compiled for sm_80).
pub fn module_for(name: &str, cc: u32) -> Result<&'static KernelModule> {
    if EMBEDDED_MODULES.is_empty() {
        return Err(Error::KernelsUnavailable { reason: NO_KERNELS_REASON.to_string() });
    }
    EMBEDDED_MODULES
        .iter()
        .filter(|m| m.name == name && m.target.compute_capability <= cc)
        .max_by_key(|m| m.target.compute_capability)
        .ok_or_else(|| Error::KernelsUnavailable {
            reason: format!("no PTX for module `{name}` at compute capability {}.{}", cc / 10, cc % 10),
        })
}

/// The ptxas resource report (a TSV, one row per kernel and target GPU) written at build time,
/// or `None` when the crate was built without a CUDA compiler.
pub fn resource_report() -> Option<&'static str> {
    RESOURCE_REPORT
}

#[cfg(test)]
mod tests {
    use super::{isa_version, oldest_driver_for};

    #[test]
    fn the_isa_version_is_read_from_the_version_directive() {
        assert_eq!(isa_version("//\n// Generated\n\n.version 8.4\n.target sm_80\n"), Some((8, 4)));
        assert_eq!(isa_version(".version 9.0\n"), Some((9, 0)));
        assert_eq!(isa_version(".target sm_80\n"), None);
        assert_eq!(isa_version(".version eight\n"), None);
    }

    #[test]
    fn each_isa_maps_to_the_driver_that_introduced_it() {
        assert_eq!(oldest_driver_for((8, 2)), Some(("12.2", "R535")));
        assert_eq!(oldest_driver_for((8, 4)), Some(("12.4", "R550")));
        assert_eq!(oldest_driver_for((8, 7)), Some(("12.8", "R570")));
        assert_eq!(oldest_driver_for((9, 0)), Some(("13.0", "R580")));
        // Older ISAs load on every driver of the table; unknown newer ones on none of it.
        assert_eq!(oldest_driver_for((7, 8)), Some(("12.0", "R525")));
        assert_eq!(oldest_driver_for((9, 5)), None);
    }
}
