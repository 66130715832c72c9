//! Initialisation, the device, and contexts: `cuInit`, `cuDriverGetVersion`, `cuDevice*`,
//! `cuDevicePrimaryCtx*`, `cuCtx*`.

use std::ffi::{c_char, c_uint};
use std::panic::catch_unwind;

use crate::abi::{self, device, status, CUdevice, CUresult, Handle};
use crate::state::{self, entry, lock, put, Driver, Res};

/// `cuInit`: flags must be 0.
#[no_mangle]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    catch_unwind(|| {
        if flags != 0 {
            return status::INVALID_VALUE;
        }
        lock().initialized = true;
        status::SUCCESS
    })
    .unwrap_or(status::UNKNOWN)
}

/// `cuDriverGetVersion` (works before `cuInit`, as the driver's does).
///
/// # Safety
/// `version` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(version: *mut i32) -> CUresult {
    // SAFETY: forwarded from the caller.
    state::code(unsafe { put(version, device::DRIVER_VERSION) })
}

fn check_device(dev: CUdevice) -> Res {
    if dev == 0 {
        Ok(())
    } else {
        Err(status::INVALID_DEVICE)
    }
}

/// `cuDeviceGetCount`: one simulated device.
///
/// # Safety
/// `count` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut i32) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|_| unsafe { put(count, 1) })
}

/// `cuDeviceGet`.
///
/// # Safety
/// `dev` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(dev: *mut CUdevice, ordinal: i32) -> CUresult {
    entry(|_| {
        check_device(ordinal)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(dev, ordinal) }
    })
}

/// `cuDeviceGetName`: "ptx-sim (simulated)", truncated to `len` bytes with its NUL.
///
/// # Safety
/// `name` is null or valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: i32, dev: CUdevice) -> CUresult {
    entry(|_| {
        check_device(dev)?;
        if name.is_null() || len <= 0 {
            return Err(status::INVALID_VALUE);
        }
        let n = device::NAME.len().min(len as usize - 1);
        // SAFETY: `name` is valid for `len` bytes (the caller's contract) and n < len.
        unsafe {
            std::ptr::copy_nonoverlapping(device::NAME.as_ptr() as *const c_char, name, n);
            name.add(n).write(0);
        }
        Ok(())
    })
}

/// `cuDeviceGetUuid`: a fixed UUID ("ptx-sim" in its first bytes).
///
/// # Safety
/// `uuid` is null or valid for 16 bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { device_uuid(uuid, dev) }
}

/// # Safety
/// `uuid` is null or valid for 16 bytes of writes.
unsafe fn device_uuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    entry(|_| {
        check_device(dev)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(uuid, *b"ptx-sim\0\0\0\0\0\0\0\0\x01") }
    })
}

/// `cuDeviceGetUuid_v2`: as [`cuDeviceGetUuid`].
///
/// # Safety
/// `uuid` is null or valid for 16 bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { device_uuid(uuid, dev) }
}

/// `cuDeviceTotalMem_v2`.
///
/// # Safety
/// `bytes` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    entry(|_| {
        check_device(dev)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(bytes, device::TOTAL_MEMORY as usize) }
    })
}

/// `cuDeviceGetAttribute`: the attributes of [`abi::device_attribute`]; any other is
/// CUDA_ERROR_NOT_SUPPORTED (logged once), never an invented value.
///
/// # Safety
/// `value` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(value: *mut i32, attr: i32, dev: CUdevice) -> CUresult {
    entry(|_| {
        check_device(dev)?;
        match abi::device_attribute(attr) {
            // SAFETY: forwarded from the caller.
            Some(v) => unsafe { put(value, v) },
            None => {
                crate::unsupported::log_once(&format!("device attribute {attr}"));
                Err(status::NOT_SUPPORTED)
            }
        }
    })
}

/// `cuDevicePrimaryCtxRetain`: the device's one primary context (created on first use,
/// the same handle for the process's lifetime), reference-counted.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut Handle, dev: CUdevice) -> CUresult {
    entry(|d| {
        check_device(dev)?;
        if pctx.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let ctx = match d.primary {
            Some(c) => c,
            None => {
                let c = d.new_context(true);
                d.primary = Some(c);
                c
            }
        };
        d.contexts.get_mut(&ctx).expect("primary context").retains += 1;
        // SAFETY: forwarded from the caller.
        unsafe { put(pctx, ctx as Handle) }
    })
}

/// Frees everything `ctx` owns and clears its sticky error: what the driver does when a
/// primary context becomes inactive or is reset, or a context is destroyed.
fn tear_down(d: &mut Driver, ctx: usize) {
    let streams: Vec<usize> = d.streams.iter().filter(|(_, s)| s.ctx == ctx && !s.legacy).map(|(&k, _)| k).collect();
    for s in streams {
        d.streams.remove(&s);
    }
    if let Some(c) = d.contexts.get(&ctx) {
        if let Some(l) = d.streams.get_mut(&c.legacy) {
            l.queue.clear();
        }
    }
    d.events.retain(|_, e| e.ctx != ctx);
    d.modules.retain(|_, m| m.ctx != ctx);
    d.functions.retain(|_, f| f.ctx != ctx);
    // An allocation with a stream-ordered free pending is left to that free: it may sit
    // on another context's stream (allocations come from the device's pool, and cudarc
    // frees a buffer on whatever context is current), where it still runs.
    let owned: Vec<u64> = d.allocations.iter().filter(|(_, a)| a.ctx == ctx && !a.freeing).map(|(&p, _)| p).collect();
    for p in owned {
        if let Some(a) = d.allocations.remove(&p) {
            d.allocated_bytes -= a.len;
        }
        // The allocation is in the driver's table, so the simulator has it.
        let _ = d.sim.free(ptx_sim::DevicePtr(p));
    }
    if let Some(c) = d.contexts.get_mut(&ctx) {
        c.sticky = None;
    }
    d.renew_id(ctx);
}

/// `cuDevicePrimaryCtxRelease_v2`: the last release makes the primary context inactive
/// and frees its resources.
#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    entry(|d| {
        check_device(dev)?;
        let ctx = d.primary.ok_or(status::INVALID_CONTEXT)?;
        let c = d.contexts.get_mut(&ctx).expect("primary context");
        if c.retains == 0 {
            return Err(status::INVALID_CONTEXT);
        }
        c.retains -= 1;
        if c.retains == 0 {
            // Pending work completes first, as the driver waits for it.
            let _ = d.drain(ctx);
            tear_down(d, ctx);
        }
        Ok(())
    })
}

/// `cuDevicePrimaryCtxReset_v2`: frees the primary context's resources and clears a
/// sticky error (the way a process recovers from a kernel fault); the context stays
/// retained by those who retained it.
#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    entry(|d| {
        check_device(dev)?;
        if let Some(ctx) = d.primary {
            tear_down(d, ctx);
        }
        Ok(())
    })
}

/// `cuDevicePrimaryCtxGetState`: flags 0, active when retained.
///
/// # Safety
/// `flags` and `active` are null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(dev: CUdevice, flags: *mut c_uint, active: *mut i32) -> CUresult {
    entry(|d| {
        check_device(dev)?;
        let on = d.primary.and_then(|c| d.contexts.get(&c)).is_some_and(|c| c.retains > 0);
        // SAFETY: forwarded from the caller.
        unsafe {
            put(flags, 0)?;
            put(active, on as i32)
        }
    })
}

/// `cuCtxCreate_v2`: a new context, pushed onto the calling thread's stack.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v2(pctx: *mut Handle, _flags: c_uint, dev: CUdevice) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { create_context(pctx, dev) }
}

/// The body of the three `cuCtxCreate` versions.
///
/// # Safety
/// `pctx` is null or valid for a write.
unsafe fn create_context(pctx: *mut Handle, dev: CUdevice) -> CUresult {
    entry(|d| {
        check_device(dev)?;
        if pctx.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let ctx = d.new_context(false);
        state::push_current(ctx);
        // SAFETY: forwarded from the caller.
        unsafe { put(pctx, ctx as Handle) }
    })
}

/// `cuCtxCreate_v3`: [`cuCtxCreate_v2`]; execution-affinity parameters are not modelled.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v3(pctx: *mut Handle, _params: *mut u8, num_params: i32, _flags: c_uint, dev: CUdevice) -> CUresult {
    if num_params != 0 {
        crate::unsupported::log_once("cuCtxCreate_v3 with execution-affinity parameters");
        return status::NOT_SUPPORTED;
    }
    // SAFETY: forwarded from the caller.
    unsafe { create_context(pctx, dev) }
}

/// `cuCtxCreate_v4` (what cudarc's `CudaContext::new_non_primary` calls): creation
/// parameters (execution affinity, CiG) are not modelled, so only null is accepted.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxCreate_v4(pctx: *mut Handle, params: *mut u8, _flags: c_uint, dev: CUdevice) -> CUresult {
    if !params.is_null() {
        crate::unsupported::log_once("cuCtxCreate_v4 with creation parameters");
        return status::NOT_SUPPORTED;
    }
    // SAFETY: forwarded from the caller.
    unsafe { create_context(pctx, dev) }
}

/// `cuCtxDestroy_v2`: a created context (a primary one is refused); its pending work runs
/// first, then everything it owns is freed.
#[no_mangle]
pub extern "C" fn cuCtxDestroy_v2(ctx: Handle) -> CUresult {
    entry(|d| {
        let key = ctx as usize;
        if d.context(key)?.primary {
            return Err(status::INVALID_CONTEXT);
        }
        let _ = d.drain(key);
        tear_down(d, key);
        d.contexts.get_mut(&key).expect("checked above").destroyed = true;
        state::forget_current(key);
        Ok(())
    })
}

/// `cuCtxSetCurrent`: null unbinds.
#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: Handle) -> CUresult {
    entry(|d| {
        if ctx.is_null() {
            state::set_current(None);
            return Ok(());
        }
        d.context(ctx as usize)?;
        state::set_current(Some(ctx as usize));
        Ok(())
    })
}

/// `cuCtxGetCurrent`: null when none.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut Handle) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|_| unsafe { put(pctx, state::current_context().unwrap_or(0) as Handle) })
}

/// `cuCtxPushCurrent_v2`.
#[no_mangle]
pub extern "C" fn cuCtxPushCurrent_v2(ctx: Handle) -> CUresult {
    entry(|d| {
        d.context(ctx as usize)?;
        state::push_current(ctx as usize);
        Ok(())
    })
}

/// `cuCtxPopCurrent_v2`: `pctx` (may be null) receives the popped context.
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut Handle) -> CUresult {
    entry(|_| {
        let ctx = state::pop_current().ok_or(status::INVALID_CONTEXT)?;
        if !pctx.is_null() {
            // SAFETY: non-null, valid by the caller's contract.
            unsafe { pctx.write(ctx as Handle) };
        }
        Ok(())
    })
}

/// `cuCtxSynchronize`: runs every stream of the current context (the latest-enqueued
/// stream first), returning a kernel fault as a sticky error.
#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    entry(|d| {
        let ctx = d.current()?;
        d.drain(ctx)
    })
}

/// `cuCtxGetDevice`.
///
/// # Safety
/// `dev` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(dev: *mut CUdevice) -> CUresult {
    entry(|d| {
        let ctx = state::current_context().ok_or(status::INVALID_CONTEXT)?;
        d.context(ctx)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(dev, 0) }
    })
}

/// `cuCtxGetId`: the context's unique id (null: the current context).
///
/// # Safety
/// `id` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetId(ctx: Handle, id: *mut u64) -> CUresult {
    entry(|d| {
        let key = if ctx.is_null() { state::current_context().ok_or(status::INVALID_CONTEXT)? } else { ctx as usize };
        let c = d.context(key)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(id, c.id) }
    })
}

/// `cuCtxGetApiVersion`: 3020, the version of the `_v2` context API every context has.
///
/// # Safety
/// `version` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(ctx: Handle, version: *mut c_uint) -> CUresult {
    entry(|d| {
        let key = if ctx.is_null() { state::current_context().ok_or(status::INVALID_CONTEXT)? } else { ctx as usize };
        d.context(key)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(version, 3020) }
    })
}

/// `cuCtxGetFlags`: 0 (automatic scheduling).
///
/// # Safety
/// `flags` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    entry(|d| {
        d.current()?;
        // SAFETY: forwarded from the caller.
        unsafe { put(flags, 0) }
    })
}
