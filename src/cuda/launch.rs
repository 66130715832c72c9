//! Loading embedded PTX into a context and launching a plan on a stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};

use crate::error::{Error, Result};
use crate::kernels::module_for;
use crate::plan::LaunchPlan;

type ModuleCache = Mutex<HashMap<(usize, &'static str), Arc<CudaModule>>>;

/// Modules already loaded, per (context address, module name): the driver JIT-compiles PTX
/// on load, which costs milliseconds, so each module is loaded once per context.
fn cache() -> &'static ModuleCache {
    static CACHE: OnceLock<ModuleCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The kernel `kernel` of module `module`, loading the PTX for the device's compute
/// capability on first use.
pub fn load_function(ctx: &Arc<CudaContext>, module: &'static str, kernel: &str) -> Result<CudaFunction> {
    let driver = |e: cudarc::driver::DriverError| Error::Driver(e.to_string());
    let (major, minor) = ctx.compute_capability().map_err(driver)?;
    let cc = (major * 10 + minor) as u32;
    let key = (Arc::as_ptr(ctx) as usize, module);
    let loaded = {
        let mut cache = cache().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match cache.get(&key) {
            Some(m) => m.clone(),
            None => {
                let ptx = module_for(module, cc)?.ptx;
                let m = ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(driver)?;
                cache.insert(key, m.clone());
                m
            }
        }
    };
    loaded.load_function(kernel).map_err(driver)
}

/// Enqueues `plan` on `stream`.
///
/// # Safety
/// Every device address inside `plan.params` must point into an allocation of the stream's
/// context that is large enough for what the kernel reads and writes (the plan builders
/// guarantee this for the buffers they were given) and must stay allocated, and not be
/// used by other work, until the launch completes on the stream.
pub unsafe fn launch(stream: &Arc<CudaStream>, plan: &LaunchPlan) -> Result<()> {
    let function = load_function(stream.context(), plan.module, plan.kernel)?;
    let mut params = plan.params.clone();
    let mut args = [params.as_mut_ptr() as *mut std::ffi::c_void];
    let [gx, gy, gz] = plan.grid;
    let [bx, by, bz] = plan.block;
    // SAFETY: the function handle comes from a live module; the single kernel argument is
    // the by-value param struct whose bytes outlive the call (cuLaunchKernel copies them);
    // the caller guarantees the device addresses inside it.
    unsafe {
        cudarc::driver::result::launch_kernel(
            function.cu_function(),
            (gx, gy, gz),
            (bx, by, bz),
            plan.shared_mem_bytes,
            stream.cu_stream(),
            &mut args,
        )
    }
    .map_err(|e| Error::Driver(format!("launching {}::{}: {e}", plan.module, plan.kernel)))
}
