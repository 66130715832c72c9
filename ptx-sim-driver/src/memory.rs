//! Device memory: allocation and free (synchronous and stream-ordered), memsets and copies.
//!
//! Addresses are the simulator's, so every kernel access is checked against the live
//! allocations (memcheck). Copies and memsets are checked when they are enqueued, as the
//! driver does; a range that stream-ordered work freed before the copy ran is a sticky
//! CUDA_ERROR_ILLEGAL_ADDRESS when it runs.

use std::ffi::c_void;

use crate::abi::{device, status, CUdeviceptr, CUresult, Handle};
use crate::state::{entry, put, Allocation, Driver, Op, Res};

/// Fresh allocations hold this byte rather than zeros, as device memory holds whatever was
/// there: a kernel that reads an output it never wrote sees NaN (0xffff in f16 / bf16, and
/// 0xffffffff in f32), not a plausible 0.
const FRESH_BYTE: u8 = 0xff;

impl Driver {
    fn allocate(&mut self, bytes: usize) -> Res<CUdeviceptr> {
        let ctx = self.current()?;
        if bytes == 0 {
            return Err(status::INVALID_VALUE);
        }
        if self.allocated_bytes.saturating_add(bytes as u64) > device::TOTAL_MEMORY {
            return Err(status::OUT_OF_MEMORY);
        }
        let p = self.sim.alloc(bytes).map_err(|_| status::OUT_OF_MEMORY)?;
        // The fill is not part of any stream: the memory is the caller's once this returns.
        self.sim.write(p, &vec![FRESH_BYTE; bytes]).map_err(|_| status::UNKNOWN)?;
        self.allocations.insert(p.0, Allocation { ctx, len: bytes as u64, freeing: false });
        self.allocated_bytes += bytes as u64;
        Ok(p.0)
    }

    /// The start of a live allocation of the current context, about to be freed.
    fn free_target(&mut self, ptr: CUdeviceptr) -> Res<usize> {
        let ctx = self.current()?;
        match self.allocations.get_mut(&ptr) {
            Some(a) if !a.freeing => {
                a.freeing = true;
                Ok(ctx)
            }
            _ => Err(status::INVALID_VALUE),
        }
    }

    /// Checks a device range for a copy or memset now, when the driver would.
    fn check_range(&self, ptr: CUdeviceptr, bytes: usize) -> Res {
        if bytes == 0 {
            return Ok(());
        }
        self.range(ptr, bytes as u64).map(|_| ())
    }
}

/// `cuMemAlloc_v2`. Zero bytes is CUDA_ERROR_INVALID_VALUE, as in the driver.
///
/// # Safety
/// `dptr` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytes: usize) -> CUresult {
    entry(|d| {
        if dptr.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let p = d.allocate(bytes)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(dptr, p) }
    })
}

/// `cuMemAllocAsync`: the address is handed out at once (usable by work enqueued after
/// this call, on any stream).
///
/// # Safety
/// `dptr` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(dptr: *mut CUdeviceptr, bytes: usize, stream: Handle) -> CUresult {
    entry(|d| {
        d.stream(stream)?;
        if dptr.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let p = d.allocate(bytes)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(dptr, p) }
    })
}

/// `cuMemFree_v2`: the context's pending work runs first (the driver synchronises here).
#[no_mangle]
pub extern "C" fn cuMemFree_v2(ptr: CUdeviceptr) -> CUresult {
    entry(|d| {
        let ctx = d.free_target(ptr)?;
        let drained = d.drain(ctx);
        let a = d.allocations.remove(&ptr).expect("checked by free_target");
        d.allocated_bytes -= a.len;
        d.sim.free(ptx_sim::DevicePtr(ptr)).map_err(|_| status::UNKNOWN)?;
        drained
    })
}

/// `cuMemFreeAsync`: freed when `stream` reaches this point; work that runs later and
/// touches the memory faults.
#[no_mangle]
pub extern "C" fn cuMemFreeAsync(ptr: CUdeviceptr, stream: Handle) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        d.free_target(ptr)?;
        d.enqueue(s, Op::Free { ptr });
        Ok(())
    })
}

/// `cuMemGetInfo_v2`.
///
/// # Safety
/// `free` and `total` are null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    entry(|d| {
        d.current()?;
        // SAFETY: forwarded from the caller.
        unsafe {
            put(free, (device::TOTAL_MEMORY - d.allocated_bytes) as usize)?;
            put(total, device::TOTAL_MEMORY as usize)
        }
    })
}

fn memset(d: &mut Driver, dst: CUdeviceptr, value: u32, size: u8, count: usize, stream: Option<Handle>) -> Res {
    if !dst.is_multiple_of(size as u64) {
        return Err(status::INVALID_VALUE);
    }
    let bytes = count.checked_mul(size as usize).ok_or(status::INVALID_VALUE)?;
    let s = stream.map(|s| d.stream(s)).transpose()?;
    d.current()?;
    d.check_range(dst, bytes)?;
    let op = Op::Memset { dst, value, size, count };
    match s {
        Some(s) => {
            d.enqueue(s, op);
            Ok(())
        }
        None => d.run_now(op),
    }
}

/// `cuMemsetD8_v2`.
#[no_mangle]
pub extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, value: u8, count: usize) -> CUresult {
    entry(|d| memset(d, dst, value as u32, 1, count, None))
}

/// `cuMemsetD16_v2`: `dst` 2-byte aligned.
#[no_mangle]
pub extern "C" fn cuMemsetD16_v2(dst: CUdeviceptr, value: u16, count: usize) -> CUresult {
    entry(|d| memset(d, dst, value as u32, 2, count, None))
}

/// `cuMemsetD32_v2`: `dst` 4-byte aligned.
#[no_mangle]
pub extern "C" fn cuMemsetD32_v2(dst: CUdeviceptr, value: u32, count: usize) -> CUresult {
    entry(|d| memset(d, dst, value, 4, count, None))
}

/// `cuMemsetD8Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD8Async(dst: CUdeviceptr, value: u8, count: usize, stream: Handle) -> CUresult {
    entry(|d| memset(d, dst, value as u32, 1, count, Some(stream)))
}

/// `cuMemsetD16Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD16Async(dst: CUdeviceptr, value: u16, count: usize, stream: Handle) -> CUresult {
    entry(|d| memset(d, dst, value as u32, 2, count, Some(stream)))
}

/// `cuMemsetD32Async`.
#[no_mangle]
pub extern "C" fn cuMemsetD32Async(dst: CUdeviceptr, value: u32, count: usize, stream: Handle) -> CUresult {
    entry(|d| memset(d, dst, value, 4, count, Some(stream)))
}

/// Host to device: the host bytes are copied when the call is made (the driver stages
/// pageable memory the same way), the device write is stream work.
///
/// # Safety
/// `src` is valid for `bytes` bytes of reads.
unsafe fn htod(d: &mut Driver, dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: Option<Handle>) -> Res {
    let s = stream.map(|s| d.stream(s)).transpose()?;
    d.current()?;
    if bytes == 0 {
        return Ok(());
    }
    if src.is_null() {
        return Err(status::INVALID_VALUE);
    }
    d.check_range(dst, bytes)?;
    // SAFETY: `src` is valid for `bytes` bytes (the caller's contract).
    let data = unsafe { std::slice::from_raw_parts(src as *const u8, bytes) }.to_vec();
    let op = Op::HtoD { dst, data };
    match s {
        Some(s) => {
            d.enqueue(s, op);
            Ok(())
        }
        None => d.run_now(op),
    }
}

/// Device to host. The host memory is pageable (this library has no pinned memory), so,
/// as with the driver, the copy completes before the call returns: the stream's work up to
/// here runs first.
///
/// # Safety
/// `dst` is valid for `bytes` bytes of writes.
unsafe fn dtoh(d: &mut Driver, dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: Option<Handle>) -> Res {
    let s = match stream {
        Some(s) => d.stream(s)?,
        None => {
            let ctx = d.current()?;
            d.contexts[&ctx].legacy
        }
    };
    if bytes == 0 {
        return Ok(());
    }
    if dst.is_null() {
        return Err(status::INVALID_VALUE);
    }
    d.check_range(src, bytes)?;
    // A blocking stream (and the legacy one) first waits for what the legacy semantics
    // order it after.
    d.enqueue(s, Op::Wait { stream: s, seq: 0 });
    d.finish(s)?;
    // SAFETY: `dst` is valid for `bytes` bytes of writes (the caller's contract).
    let out = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, bytes) };
    d.sim.read(ptx_sim::DevicePtr(src), out).map_err(|e| {
        let code = crate::fault::report_copy("device-to-host copy", &e);
        let ctx = d.streams[&s].ctx;
        if let Some(c) = d.contexts.get_mut(&ctx) {
            c.sticky.get_or_insert(code);
        }
        code
    })
}

fn dtod(d: &mut Driver, dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: Option<Handle>) -> Res {
    let s = stream.map(|s| d.stream(s)).transpose()?;
    d.current()?;
    if bytes == 0 {
        return Ok(());
    }
    d.check_range(dst, bytes)?;
    d.check_range(src, bytes)?;
    let op = Op::DtoD { dst, src, bytes };
    match s {
        Some(s) => {
            d.enqueue(s, op);
            Ok(())
        }
        None => d.run_now(op),
    }
}

/// `cuMemcpyHtoD_v2`.
///
/// # Safety
/// `src` is valid for `bytes` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|d| unsafe { htod(d, dst, src, bytes, None) })
}

/// `cuMemcpyHtoDAsync_v2`.
///
/// # Safety
/// `src` is valid for `bytes` bytes of reads.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(dst: CUdeviceptr, src: *const c_void, bytes: usize, stream: Handle) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|d| unsafe { htod(d, dst, src, bytes, Some(stream)) })
}

/// `cuMemcpyDtoH_v2`.
///
/// # Safety
/// `dst` is valid for `bytes` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|d| unsafe { dtoh(d, dst, src, bytes, None) })
}

/// `cuMemcpyDtoHAsync_v2`.
///
/// # Safety
/// `dst` is valid for `bytes` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: CUdeviceptr, bytes: usize, stream: Handle) -> CUresult {
    // SAFETY: forwarded from the caller.
    entry(|d| unsafe { dtoh(d, dst, src, bytes, Some(stream)) })
}

/// `cuMemcpyDtoD_v2`.
#[no_mangle]
pub extern "C" fn cuMemcpyDtoD_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> CUresult {
    entry(|d| dtod(d, dst, src, bytes, None))
}

/// `cuMemcpyDtoDAsync_v2`.
#[no_mangle]
pub extern "C" fn cuMemcpyDtoDAsync_v2(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize, stream: Handle) -> CUresult {
    entry(|d| dtod(d, dst, src, bytes, Some(stream)))
}

/// `cuMemcpyPeerAsync`: one device, one address space, so a device-to-device copy between
/// two live contexts.
#[no_mangle]
pub extern "C" fn cuMemcpyPeerAsync(dst: CUdeviceptr, dst_ctx: Handle, src: CUdeviceptr, src_ctx: Handle, bytes: usize, stream: Handle) -> CUresult {
    entry(|d| {
        d.usable(dst_ctx as usize)?;
        d.usable(src_ctx as usize)?;
        dtod(d, dst, src, bytes, Some(stream))
    })
}
