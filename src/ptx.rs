//! The PTX registry: what build.rs compiled from `kernels/*.cu`, per target, and its ptxas
//! resource report.

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

/// The PTX of one `kernels/<name>.cu` for one target.
#[derive(Debug, Clone, Copy)]
pub struct KernelModule {
    /// File stem, e.g. `vs_convert`.
    pub name: &'static str,
    /// The architecture nvcc compiled this PTX for; it loads on devices of that compute
    /// capability or newer.
    pub target: Target,
    /// The PTX text, as nvcc emitted it.
    pub ptx: &'static str,
}

/// Every embedded module; empty when the crate was built without nvcc.
pub fn modules() -> &'static [KernelModule] {
    EMBEDDED_MODULES
}

/// The module `name` to load on a device of compute capability `cc` (major * 10 + minor):
/// the newest target not above the device.
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

/// The ptxas resource report (a TSV, one row per kernel and target) written at build time,
/// or `None` when the crate was built without nvcc.
pub fn resource_report() -> Option<&'static str> {
    RESOURCE_REPORT
}
