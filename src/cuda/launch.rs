//! The one launch path of the GPU backend: from a raw `CUstream` and a [`LaunchPlan`] to
//! `cuLaunchKernel`. It loads the embedded PTX for the stream's device once per context,
//! opts a kernel in to more than 48 KiB of dynamic shared memory when its plan needs it,
//! and launches. Both the safe cudarc functions and the raw entry points end here.

use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Mutex, OnceLock};

use cudarc::driver::sys::{self, CUfunction_attribute_enum};
use cudarc::driver::result;

use crate::error::{Error, Result};
use crate::plan::{LaunchPlan, DEFAULT_SHARED_MEM_BYTES};
use crate::ptx::module_for;

/// A loaded kernel of one context. The driver's handles are plain pointers that stay valid
/// for the context's lifetime and may be used from any thread.
#[derive(Clone, Copy)]
struct Function {
    handle: sys::CUfunction,
    /// The dynamic shared memory this function has been opted in to.
    shared_opt_in: u32,
}
// SAFETY: CUmodule / CUfunction handles are context-wide driver objects, not thread-bound.
unsafe impl Send for Function {}
#[derive(Clone, Copy)]
struct Module(sys::CUmodule);
// SAFETY: as for Function.
unsafe impl Send for Module {}

/// Loaded modules and functions, keyed by the context's unique id (`cuCtxGetId`, never
/// reused within a process, so a destroyed context's handles are never looked up again).
/// The driver JIT-compiles PTX on load, which costs milliseconds: once per context.
#[derive(Default)]
struct Cache {
    modules: HashMap<(u64, &'static str), Module>,
    functions: HashMap<(u64, &'static str, String), Function>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The context `stream` belongs to, made current on this thread, and its unique id.
///
/// # Safety
/// `stream` is a live stream handle.
unsafe fn bind_stream_context(stream: sys::CUstream) -> Result<(sys::CUcontext, u64)> {
    let mut ctx: sys::CUcontext = std::ptr::null_mut();
    let mut id: std::ffi::c_ulonglong = 0;
    // SAFETY: the caller guarantees a live stream; the out-pointers are valid locals, and
    // the context a live stream reports is live.
    unsafe {
        sys::cuStreamGetCtx(stream, &mut ctx).result()?;
        result::ctx::set_current(ctx)?;
        sys::cuCtxGetId(ctx, &mut id).result()?;
    }
    Ok((ctx, id))
}

/// Compute capability (major * 10 + minor) of the current context's device.
fn current_compute_capability() -> Result<u32> {
    let mut device: sys::CUdevice = 0;
    // SAFETY: a context is current (bind_stream_context); the out-pointer is a valid local.
    unsafe { sys::cuCtxGetDevice(&mut device).result()? };
    let attr = |a| {
        // SAFETY: `device` was just returned by the driver.
        unsafe { result::device::get_attribute(device, a) }
    };
    let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok((major * 10 + minor) as u32)
}

/// The kernel of `plan` in the current context (id `ctx_id`), loaded and opted in to the
/// plan's shared memory.
fn function(ctx_id: u64, plan: &LaunchPlan) -> Result<sys::CUfunction> {
    let mut cache = cache().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let module = match cache.modules.get(&(ctx_id, plan.module())) {
        Some(&m) => m,
        None => {
            let embedded = module_for(plan.module(), current_compute_capability()?)?;
            // SAFETY: a context is current (bind_stream_context).
            let m = Module(unsafe { super::module_load::load(embedded) }?);
            cache.modules.insert((ctx_id, plan.module()), m);
            m
        }
    };
    let key = (ctx_id, plan.module(), plan.kernel().to_string());
    let mut f = match cache.functions.get(&key) {
        Some(&f) => f,
        None => {
            let name = CString::new(plan.kernel()).map_err(|_| Error::InvalidParameter { name: "kernel", reason: "name holds a NUL byte".into() })?;
            // SAFETY: the module is loaded in this context and never unloaded.
            let handle = unsafe { result::module::get_function(module.0, name) }?;
            Function { handle, shared_opt_in: DEFAULT_SHARED_MEM_BYTES }
        }
    };
    // Above 48 KiB of dynamic shared memory a kernel must opt in (head_dim 128 prefill uses 64 KiB).
    if plan.shared_mem_bytes() > f.shared_opt_in {
        let bytes = i32::try_from(plan.shared_mem_bytes()).map_err(|_| Error::InvalidParameter {
            name: "shared memory",
            reason: format!("{} bytes", plan.shared_mem_bytes()),
        })?;
        let attr = CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        // SAFETY: `f.handle` is a live function of the current context.
        unsafe { result::function::set_function_attribute(f.handle, attr, bytes) }?;
        f.shared_opt_in = plan.shared_mem_bytes();
    }
    cache.functions.insert(key, f);
    Ok(f.handle)
}

/// Enqueues `plan` on `stream`.
///
/// # Safety
/// - `stream` is a live stream handle.
/// - Every device address inside the plan's params points into an allocation of the
///   stream's context that holds at least the elements the planner was told
///   ([`crate::plan::DeviceBuffer::len`]), and stays allocated, and not written by other work,
///   until the launch completes on the stream. The planners check those lengths against
///   everything the kernel addresses; they cannot check that the lengths are true.
///
/// The plan itself is sound by construction: only `crate::plan` builds one, and its params,
/// grid and shared memory agree.
pub(crate) unsafe fn launch(stream: sys::CUstream, plan: &LaunchPlan) -> Result<()> {
    // SAFETY: the caller guarantees a live stream.
    let (_ctx, ctx_id) = unsafe { bind_stream_context(stream) }?;
    let function = function(ctx_id, plan)?;
    let mut params = plan.params().to_vec();
    let mut args = [params.as_mut_ptr() as *mut c_void];
    let [gx, gy, gz] = plan.grid();
    let [bx, by, bz] = plan.block();
    // SAFETY: the function is live in the stream's (current) context; the single kernel
    // argument is the by-value param struct, whose bytes outlive the call (cuLaunchKernel
    // copies them) and are exactly the struct the kernel declares (the plan's invariant);
    // the caller guarantees the addresses inside it.
    unsafe { result::launch_kernel(function, (gx, gy, gz), (bx, by, bz), plan.shared_mem_bytes(), stream, &mut args) }
        .map_err(Error::from)
}

/// Enqueues every step of `plan` in order on `stream`, stopping at the first error.
///
/// # Safety
/// Every address in the plan must belong to a live allocation of `stream`'s context that
/// holds what the plan's kernels address (as the planners check for buffers read through
/// `super::tensors`), until the launches have run.
pub(crate) unsafe fn launch_pipeline(stream: &std::sync::Arc<cudarc::driver::CudaStream>, plan: &crate::plan::pipeline::PipelinePlan) -> Result<()> {
    for step in &plan.steps {
        // SAFETY: the caller's contract covers every step.
        unsafe { launch(stream.cu_stream(), &step.plan) }?;
    }
    Ok(())
}
