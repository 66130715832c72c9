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
/// `LaunchPlan`'s fields are public, so nothing here can tell a plan built by this crate
/// from an arbitrary one; the caller guarantees all of the following.
/// - `plan.params` is exactly the bytes of the parameter struct that `plan.kernel` declares
///   (`VsConvertParams`, `AttnParams` or `TopkParams`), as one of the plan builders
///   ([`crate::plan::vs_convert`], [`crate::plan::attention`],
///   [`crate::plan::topk_attention`]) produced it: the driver copies `sizeof(struct)` bytes
///   from it, so a shorter vector is an out-of-bounds host read.
/// - `plan.grid`, `plan.block` and `plan.shared_mem_bytes` are the ones that builder
///   produced for those params: the kernels derive tensor positions from the block index
///   and trust the grid not to exceed the problem, and size their shared memory from it.
/// - Every device address inside `plan.params` points into an allocation of the stream's
///   context holding at least the elements the builder was told (`DeviceBuffer::len`), and
///   stays allocated, and not used by other work, until the launch completes on the stream.
///   The builders check those lengths against everything the kernel addresses; they cannot
///   check that the lengths are true.
pub unsafe fn launch(stream: &Arc<CudaStream>, plan: &LaunchPlan) -> Result<()> {
    let function = load_function(stream.context(), plan.module, plan.kernel)?;
    // As cudarc's own launch does: make the stream's context current on this thread (a
    // cached module skips the bind that loading does), and surface any error cudarc has
    // recorded, e.g. a failed wait on a buffer's pending write: launching after one would
    // race with that write.
    stream.context().bind_to_thread().map_err(|e| Error::Driver(e.to_string()))?;
    let mut params = plan.params.clone();
    let mut args = [params.as_mut_ptr() as *mut std::ffi::c_void];
    let [gx, gy, gz] = plan.grid;
    let [bx, by, bz] = plan.block;
    // SAFETY: the function handle comes from a live module; the single kernel argument is
    // the by-value param struct whose bytes outlive the call (cuLaunchKernel copies them),
    // and the caller guarantees that those bytes are the kernel's whole struct, that the
    // launch geometry is the planned one, and the device addresses inside it.
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

/// Errors unless `slice` was allocated in the context that `stream` runs in: the launch
/// functions' safety argument is that every address they pass belongs to that context.
pub(crate) fn check_context<T>(stream: &Arc<CudaStream>, tensor: &'static str, slice: &cudarc::driver::CudaSlice<T>) -> Result<()> {
    if slice.context().cu_ctx() == stream.context().cu_ctx() {
        return Ok(());
    }
    Err(Error::InvalidParameter {
        name: tensor,
        reason: format!(
            "allocated on device {} but the stream runs on device {}; every buffer must live in the stream's context",
            slice.ordinal(),
            stream.context().ordinal()
        ),
    })
}
