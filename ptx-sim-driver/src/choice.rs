//! The device switch of tests, demos and benches (`SPARSE_ATTN_DEVICE=cuda|sim|auto` in
//! sparse-attn): which CUDA driver a process binds. The caller reads its own setting and
//! passes it here; nothing in this crate reads the environment.

use std::ffi::{c_int, c_void};

use crate::select::{install, SelectError};

/// Which driver a process asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The real driver, or an error.
    Cuda,
    /// The simulated driver.
    Sim,
    /// A real GPU when one is usable, the simulator otherwise.
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = SelectError;
    fn from_str(s: &str) -> Result<Self, SelectError> {
        match s {
            "cuda" => Ok(DeviceChoice::Cuda),
            "sim" => Ok(DeviceChoice::Sim),
            "auto" => Ok(DeviceChoice::Auto),
            _ => Err(SelectError::new(format!("`{s}` is not a device choice (cuda, sim or auto)"))),
        }
    }
}

/// The driver a process ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// The real CUDA driver, with at least one device.
    Cuda,
    /// The simulated driver (ptx-sim).
    Sim,
}

impl std::fmt::Display for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Selected::Cuda => "a real GPU (CUDA driver)",
            Selected::Sim => "the simulated CUDA driver (ptx-sim)",
        })
    }
}

/// Applies `choice` before the first cudarc call: `Sim` installs the simulated driver,
/// `Cuda` checks that the real driver reports a device, `Auto` does the second if it can
/// and the first otherwise.
pub fn select(choice: DeviceChoice) -> Result<Selected, SelectError> {
    match choice {
        DeviceChoice::Sim => install().map(|_| Selected::Sim),
        DeviceChoice::Cuda => real_devices().and_then(|n| {
            if n > 0 {
                Ok(Selected::Cuda)
            } else {
                Err(SelectError::new("the CUDA driver reports no device".into()))
            }
        }),
        DeviceChoice::Auto => match real_devices() {
            Ok(n) if n > 0 => Ok(Selected::Cuda),
            _ => install().map(|_| Selected::Sim),
        },
    }
}

/// Asks the real driver (`libcuda.so.1`, as the system installs it) how many devices it
/// has, through the loader, without cudarc, so that the simulated driver can still be
/// chosen afterwards.
fn real_devices() -> Result<i32, SelectError> {
    const RTLD_NOW: c_int = 2;
    extern "C" {
        fn dlopen(filename: *const std::ffi::c_char, flags: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const std::ffi::c_char) -> *mut c_void;
    }
    // SAFETY: a NUL-terminated name. Loading the driver runs its initialisers, as any
    // CUDA program does; the handle stays open (a driver is not unloaded mid-process).
    let h = unsafe { dlopen(c"libcuda.so.1".as_ptr(), RTLD_NOW) };
    if h.is_null() {
        return Err(SelectError::new("no CUDA driver library (libcuda.so.1) on this machine".into()));
    }
    // SAFETY: a live handle and NUL-terminated names.
    let (init, count, ours) = unsafe { (dlsym(h, c"cuInit".as_ptr()), dlsym(h, c"cuDeviceGetCount".as_ptr()), dlsym(h, c"ptxSimDriverFaultReport".as_ptr())) };
    if !ours.is_null() {
        return Err(SelectError::new("libcuda.so.1 on the library path is the simulated driver".into()));
    }
    if init.is_null() || count.is_null() {
        return Err(SelectError::new("libcuda.so.1 lacks cuInit or cuDeviceGetCount".into()));
    }
    // SAFETY: the driver's entry points of these C signatures.
    type Init = unsafe extern "C" fn(u32) -> u32;
    type Count = unsafe extern "C" fn(*mut i32) -> u32;
    let (init, count) = unsafe { (std::mem::transmute::<*mut c_void, Init>(init), std::mem::transmute::<*mut c_void, Count>(count)) };
    let mut n = 0i32;
    // SAFETY: flags 0 and a valid out-pointer.
    let status = unsafe { init(0) };
    if status != 0 {
        return Err(SelectError::new(format!("cuInit failed with CUresult {status}")));
    }
    // SAFETY: a valid out-pointer, after cuInit.
    let status = unsafe { count(&mut n) };
    if status != 0 {
        return Err(SelectError::new(format!("cuDeviceGetCount failed with CUresult {status}")));
    }
    Ok(n)
}
