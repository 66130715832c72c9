//! The driver's own rules, called through its C entry points in this process (the rlib's
//! copy of the driver: its state is separate from any loaded libcuda). Each test works in
//! a context of its own, so tests running in parallel do not share streams or errors.

use std::ffi::c_void;
use std::ptr::null_mut;

use crate::abi::{status, CUdeviceptr, Handle};
use crate::context::*;
use crate::memory::*;
use crate::module::*;
use crate::stream::*;

/// One thread writes `v` to `*p`.
const FILL_PTX: &str = "
.version 8.4
.target sm_80
.address_size 64
.visible .entry fill(.param .u64 p, .param .u32 v)
{
    .reg .b32 %r<2>;
    .reg .b64 %rd<3>;
    ld.param.u64 %rd1, [p];
    ld.param.u32 %r1, [v];
    cvta.to.global.u64 %rd2, %rd1;
    st.global.u32 [%rd2], %r1;
    ret;
}
\0";

fn ok(r: u32) {
    assert_eq!(r, status::SUCCESS);
}

/// A fresh created context, current on this thread.
fn context() -> Handle {
    ok(cuInit(0));
    let mut ctx = null_mut();
    // SAFETY: a valid out-pointer.
    ok(unsafe { cuCtxCreate_v2(&mut ctx, 0, 0) });
    ctx
}

fn alloc(bytes: usize) -> CUdeviceptr {
    let mut p = 0;
    // SAFETY: a valid out-pointer.
    ok(unsafe { cuMemAlloc_v2(&mut p, bytes) });
    p
}

fn read_u32(p: CUdeviceptr) -> u32 {
    let mut v = 0u32;
    // SAFETY: 4 writable bytes.
    ok(unsafe { cuMemcpyDtoH_v2(&mut v as *mut u32 as *mut c_void, p, 4) });
    v
}

fn stream(flags: u32) -> Handle {
    let mut s = null_mut();
    // SAFETY: a valid out-pointer.
    ok(unsafe { cuStreamCreate(&mut s, flags) });
    s
}

#[test]
fn the_legacy_stream_orders_blocking_streams_and_nothing_orders_the_others() {
    let ctx = context();
    let p = alloc(4);
    let (blocking, free) = (stream(0), stream(crate::abi::STREAM_NON_BLOCKING));
    ok(cuMemsetD32Async(p, 1, 1, blocking));
    ok(cuMemsetD32Async(p, 2, 1, null_mut()));
    ok(cuCtxSynchronize());
    assert_eq!(read_u32(p), 2, "the legacy stream waited for the blocking stream");
    ok(cuMemsetD32Async(p, 3, 1, free));
    ok(cuMemsetD32Async(p, 4, 1, null_mut()));
    ok(cuCtxSynchronize());
    assert_eq!(read_u32(p), 3, "unordered: the later-enqueued legacy work ran first");
    // An event orders them.
    let mut e = null_mut();
    // SAFETY: a valid out-pointer.
    ok(unsafe { cuEventCreate(&mut e, 0) });
    ok(cuMemsetD32Async(p, 5, 1, free));
    ok(cuEventRecord(e, free));
    ok(cuStreamWaitEvent(null_mut(), e, 0));
    ok(cuMemsetD32Async(p, 6, 1, null_mut()));
    ok(cuCtxSynchronize());
    assert_eq!(read_u32(p), 6);
    ok(cuEventDestroy_v2(e));
    ok(cuStreamDestroy_v2(blocking));
    ok(cuStreamDestroy_v2(free));
    assert_eq!(cuStreamDestroy_v2(free), status::INVALID_HANDLE);
    ok(cuCtxDestroy_v2(ctx));
}

#[test]
fn bad_pointers_sizes_and_handles_are_refused() {
    let ctx = context();
    let p = alloc(16);
    let host = [0u8; 32];
    // SAFETY: `host` is readable for 32 bytes; the device range is what is checked.
    unsafe {
        assert_eq!(cuMemcpyHtoD_v2(p, host.as_ptr() as *const c_void, 17), status::INVALID_VALUE, "past the end");
        assert_eq!(cuMemcpyHtoD_v2(p + 16, host.as_ptr() as *const c_void, 1), status::INVALID_VALUE, "one past");
        assert_eq!(cuMemcpyHtoD_v2(p, std::ptr::null(), 4), status::INVALID_VALUE, "null host pointer");
    }
    assert_eq!(cuMemsetD16_v2(p + 1, 0, 1), status::INVALID_VALUE, "misaligned");
    let mut q = 0;
    // SAFETY: valid out-pointers.
    unsafe {
        assert_eq!(cuMemAlloc_v2(&mut q, 0), status::INVALID_VALUE, "zero bytes");
        assert_eq!(cuMemAlloc_v2(null_mut(), 4), status::INVALID_VALUE);
    }
    ok(cuMemFreeAsync(p, null_mut()));
    assert_eq!(cuMemFreeAsync(p, null_mut()), status::INVALID_VALUE, "double free");
    assert_eq!(cuMemsetD8_v2(p, 0, 1), status::INVALID_VALUE, "use after free");
    assert_eq!(cuStreamSynchronize(0x77 as Handle), status::INVALID_HANDLE);
    assert_eq!(cuStreamSynchronize(crate::abi::STREAM_PER_THREAD as Handle), status::NOT_SUPPORTED);
    let mut f = 0.0f32;
    // SAFETY: a valid out-pointer; unknown handles are refused before anything is written.
    assert_eq!(unsafe { cuEventElapsedTime(&mut f, 0x99 as Handle, 0x99 as Handle) }, status::INVALID_HANDLE);
    ok(cuCtxDestroy_v2(ctx));
    assert_eq!(cuCtxSetCurrent(ctx), status::CONTEXT_IS_DESTROYED);
    assert_eq!(cuCtxSynchronize(), status::INVALID_CONTEXT, "no current context");
}

#[test]
fn launches_check_shared_memory_and_a_fault_is_sticky_for_its_context_only() {
    let ctx = context();
    let mut module = null_mut();
    let mut func = null_mut();
    // SAFETY: a NUL-terminated PTX string and valid out-pointers.
    unsafe {
        assert_eq!(cuModuleLoadData(&mut module, c"\x7fELF\x02\x01\x01".as_ptr() as *const c_void), status::NO_BINARY_FOR_GPU);
        assert_eq!(cuModuleLoadData(&mut module, c"not ptx".as_ptr() as *const c_void), status::INVALID_PTX);
        ok(cuModuleLoadData(&mut module, FILL_PTX.as_ptr() as *const c_void));
        assert_eq!(cuModuleGetFunction(&mut func, module, c"nope".as_ptr()), status::NOT_FOUND);
        ok(cuModuleGetFunction(&mut func, module, c"fill".as_ptr()));
    }
    let p = alloc(4);
    let launch = |ptr: CUdeviceptr, smem: u32| {
        let (mut a, mut v) = (ptr, 42u32);
        let mut args = [&mut a as *mut u64 as *mut c_void, &mut v as *mut u32 as *mut c_void];
        // SAFETY: one argument pointer per parameter, each of the parameter's size.
        unsafe { cuLaunchKernel(func, 1, 1, 1, 1, 1, 1, smem, null_mut(), args.as_mut_ptr(), null_mut()) }
    };
    assert_eq!(launch(p, 64 * 1024), status::INVALID_VALUE, "64 KiB without the opt-in");
    ok(cuFuncSetAttribute(func, crate::abi::func_attr::MAX_DYNAMIC_SHARED_SIZE_BYTES, 64 * 1024));
    assert_eq!(cuFuncSetAttribute(func, crate::abi::func_attr::MAX_DYNAMIC_SHARED_SIZE_BYTES, 228 * 1024), status::INVALID_VALUE);
    ok(launch(p, 64 * 1024));
    assert_eq!(read_u32(p), 42);
    // A wild pointer: the launch is accepted, the fault comes at the next synchronisation
    // and stays.
    ok(launch(p + (1 << 20), 0));
    assert_eq!(cuCtxSynchronize(), status::ILLEGAL_ADDRESS);
    assert_eq!(cuMemsetD8_v2(p, 0, 1), status::ILLEGAL_ADDRESS, "sticky");
    let mut report = vec![0 as std::ffi::c_char; 512];
    // SAFETY: 512 writable bytes.
    let n = unsafe { crate::fault::ptxSimDriverFaultReport(report.as_mut_ptr(), report.len()) };
    assert!(n > 0);
    let text: String = report.iter().take_while(|&&c| c != 0).map(|&c| c as u8 as char).collect();
    assert!(text.contains("CUDA_ERROR_ILLEGAL_ADDRESS"), "{text}");
    // Another context is not affected.
    let other = context();
    let q = alloc(4);
    ok(cuMemsetD32_v2(q, 7, 1));
    assert_eq!(read_u32(q), 7);
    ok(cuCtxDestroy_v2(other));
    ok(cuCtxSetCurrent(ctx));
    ok(cuModuleUnload(module));
    ok(cuCtxDestroy_v2(ctx));
}

#[test]
fn a_stream_ordered_free_on_another_context_survives_the_owner_being_destroyed() {
    // cudarc frees a buffer on the null stream of whatever context is current: here the
    // buffer of `owner` is freed on `current`'s legacy stream, then `owner` is destroyed
    // before that stream runs.
    let current = context();
    let owner = context();
    let p = alloc(64);
    ok(cuCtxSetCurrent(current));
    ok(cuMemFreeAsync(p, null_mut()));
    ok(cuCtxDestroy_v2(owner));
    ok(cuCtxSetCurrent(current));
    ok(cuCtxSynchronize());
    ok(cuCtxDestroy_v2(current));
}

#[test]
fn counters_round_trip_through_the_c_layout() {
    let mut c = ptx_sim::Counters::default();
    let fields = crate::work::to_array(&c).len();
    c.mma = 7;
    c.cp_async = 9;
    assert_eq!(crate::work::from_array(&crate::work::to_array(&c)), c);
    // SAFETY: a null buffer only asks for the field count.
    assert_eq!(unsafe { crate::work::ptxSimDriverCounters(null_mut(), 0, 0) }, fields);
}
