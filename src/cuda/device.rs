//! Finding a usable CUDA device without panicking on machines that have none.

use std::sync::Arc;

use cudarc::driver::CudaContext;

/// Why no GPU can be used; tests print it when they skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUnavailable(pub String);

impl std::fmt::Display for GpuUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A context on device `ordinal`, or the reason there is none.
///
/// cudarc's `CudaContext::new` panics when libcuda cannot be loaded at all, so this checks
/// for the library first (with its own loader probe, which works whatever cudarc linking
/// feature the final binary chose); with the library but no device, cudarc returns an error.
pub fn gpu_context(ordinal: usize) -> Result<Arc<CudaContext>, GpuUnavailable> {
    if !super::driver_probe::driver_library_present() {
        return Err(GpuUnavailable("no CUDA driver library (libcuda) on this machine".into()));
    }
    let count = CudaContext::device_count().map_err(|e| GpuUnavailable(format!("CUDA driver found but unusable: {e}")))?;
    if (count as i64) <= ordinal as i64 {
        return Err(GpuUnavailable(format!("CUDA driver reports {count} device(s); device {ordinal} does not exist")));
    }
    CudaContext::new(ordinal).map_err(|e| GpuUnavailable(format!("could not create a context on device {ordinal}: {e}")))
}
