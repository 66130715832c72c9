//! Loading an embedded PTX module, with an error that says which driver it needs.

use std::ffi::{c_void, CString};

use cudarc::driver::{result, sys, DriverError};

use crate::error::{Error, Result};
use crate::ptx::{oldest_driver_for, KernelModule};

/// Loads `module` into the current context.
///
/// # Safety
/// A CUDA context is current on this thread.
pub(super) unsafe fn load(module: &KernelModule) -> Result<sys::CUmodule> {
    let image = CString::new(module.ptx).map_err(|_| Error::KernelsUnavailable { reason: "embedded PTX holds a NUL byte".into() })?;
    // SAFETY: a context is current (the caller's contract); the image is a NUL-terminated
    // PTX string, which the driver copies before returning.
    unsafe { result::module::load_data(image.as_ptr() as *const c_void) }.map_err(|source| load_error(module, source))
}

/// The driver refused `module`: say what the module needs next to what the driver is.
fn load_error(module: &KernelModule, source: DriverError) -> Error {
    let isa = module.isa_version();
    let mut needs = match isa.and_then(oldest_driver_for) {
        Some((cuda, branch)) => format!("it needs a CUDA {cuda} ({branch}) driver or newer"),
        None => "its PTX ISA is newer than any driver this crate knows".to_string(),
    };
    let mut version = 0;
    // SAFETY: writes one int; valid with or without a context.
    if unsafe { sys::cuDriverGetVersion(&mut version) } == sys::CUresult::CUDA_SUCCESS {
        needs.push_str(&format!("; this driver supports CUDA {}.{}", version / 1000, version % 1000 / 10));
    }
    Error::ModuleLoad {
        module: module.name,
        compiler: module.compiler,
        isa: isa.map_or_else(|| "unknown".into(), |(major, minor)| format!("{major}.{minor}")),
        needs,
        source,
    }
}
