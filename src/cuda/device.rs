//! Finding a usable CUDA device without panicking on machines that have none.

use std::sync::Arc;

use cudarc::driver::sys::CUresult;
use cudarc::driver::{CudaContext, DriverError};

/// Why no GPU can be used; tests print it when they skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuUnavailable {
    reason: String,
    cuda_result: Option<CUresult>,
}

impl GpuUnavailable {
    fn new(reason: String) -> Self {
        GpuUnavailable { reason, cuda_result: None }
    }

    /// `what` failed with the driver error `e`. The message is formatted here, where a
    /// driver library is known to be loaded (formatting a `DriverError` asks it).
    fn driver(what: String, e: DriverError) -> Self {
        GpuUnavailable { reason: format!("{what}: {e}"), cuda_result: Some(e.0) }
    }

    /// The whole explanation, as printed.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The driver's status when a driver call failed (e.g. `CUDA_ERROR_NO_DEVICE`,
    /// `CUDA_ERROR_INSUFFICIENT_DRIVER`); `None` when there is no driver library or the
    /// device ordinal does not exist.
    pub fn cuda_result(&self) -> Option<CUresult> {
        self.cuda_result
    }
}

impl std::fmt::Display for GpuUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for GpuUnavailable {}

/// A context on device `ordinal`, or the reason there is none.
///
/// cudarc's `CudaContext::new` panics when libcuda cannot be loaded at all, so this checks
/// for the library first (with its own loader probe, which works whatever cudarc linking
/// feature the final binary chose); with the library but no device, cudarc returns an
/// error, whose driver status [`GpuUnavailable::cuda_result`] keeps.
pub fn gpu_context(ordinal: usize) -> Result<Arc<CudaContext>, GpuUnavailable> {
    if !super::driver_probe::driver_library_present() {
        return Err(GpuUnavailable::new("no CUDA driver library (libcuda) on this machine".into()));
    }
    let count = CudaContext::device_count().map_err(|e| GpuUnavailable::driver("CUDA driver found but unusable".into(), e))?;
    if (count as i64) <= ordinal as i64 {
        return Err(GpuUnavailable::new(format!("CUDA driver reports {count} device(s); device {ordinal} does not exist")));
    }
    CudaContext::new(ordinal).map_err(|e| GpuUnavailable::driver(format!("could not create a context on device {ordinal}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_gpu_the_reason_is_printed_and_no_panic_happens() {
        // Here (no GPU) this is an error; on a GPU machine a context. Either way no panic,
        // and an error always explains itself.
        if let Err(e) = gpu_context(0) {
            assert!(!e.reason().is_empty());
            assert_eq!(e.to_string(), e.reason());
        }
        // An ordinal no machine has is an error whatever the machine, and it carries a
        // driver status exactly when a driver call failed.
        let e = gpu_context(usize::MAX).expect_err("no machine has 2^64 devices");
        let driver_call_failed = e.reason().starts_with("CUDA driver found but unusable");
        assert_eq!(e.cuda_result().is_some(), driver_call_failed, "{e}");
        if !driver_call_failed {
            assert!(e.reason().contains("does not exist") || e.reason().contains("no CUDA driver library"), "{e}");
        }
    }
}
