//! Streams and events. Work is deferred (see `sched.rs`); queries and synchronisations run
//! what they wait for, so a loop that polls a query always ends.

use std::collections::VecDeque;
use std::ffi::c_uint;

use crate::abi::{status, CUresult, Handle, STREAM_NON_BLOCKING};
use crate::state::{entry, put, Event, Op, Stream};

/// `cuStreamCreate`: flags 0 (synchronises with the legacy stream) or
/// CU_STREAM_NON_BLOCKING.
///
/// # Safety
/// `ph` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuStreamCreate(ph: *mut Handle, flags: c_uint) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { create_stream(ph, flags) }
}

/// The body of both stream constructors (exported functions never call each other, so
/// another library's symbols of the same names cannot interpose).
///
/// # Safety
/// `ph` is null or valid for a write.
unsafe fn create_stream(ph: *mut Handle, flags: c_uint) -> CUresult {
    entry(|d| {
        let ctx = d.current()?;
        if ph.is_null() || flags & !STREAM_NON_BLOCKING != 0 {
            return Err(status::INVALID_VALUE);
        }
        let key = d.handle();
        d.streams.insert(key, Stream { ctx, blocking: flags & STREAM_NON_BLOCKING == 0, legacy: false, queue: VecDeque::new(), last_seq: 0 });
        // SAFETY: forwarded from the caller.
        unsafe { put(ph, key as Handle) }
    })
}

/// `cuStreamCreateWithPriority`: the priority is a scheduling hint, which the simulator's
/// adversarial order overrides.
///
/// # Safety
/// `ph` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuStreamCreateWithPriority(ph: *mut Handle, flags: c_uint, _priority: i32) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { create_stream(ph, flags) }
}

/// `cuStreamDestroy_v2`: pending work still runs (here, now), as the driver completes it.
#[no_mangle]
pub extern "C" fn cuStreamDestroy_v2(stream: Handle) -> CUresult {
    entry(|d| {
        let key = stream as usize;
        if d.streams.get(&key).is_none_or(|s| s.legacy) {
            return Err(status::INVALID_HANDLE);
        }
        let ran = d.finish(key);
        d.streams.remove(&key);
        ran
    })
}

/// `cuStreamSynchronize`.
#[no_mangle]
pub extern "C" fn cuStreamSynchronize(stream: Handle) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        d.finish(s)
    })
}

/// `cuStreamQuery`: runs the stream's work and reports it complete (or its fault).
#[no_mangle]
pub extern "C" fn cuStreamQuery(stream: Handle) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        d.finish(s)
    })
}

/// `cuStreamWaitEvent`: later work on `stream` waits for the work the event captured.
/// An event never recorded is complete.
#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(stream: Handle, event: Handle, flags: c_uint) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        if flags != 0 {
            return Err(status::INVALID_VALUE);
        }
        let e = d.events.get(&(event as usize)).ok_or(status::INVALID_HANDLE)?;
        if let Some((on, seq)) = e.recorded {
            if !d.done(on, seq) {
                d.enqueue(s, Op::Wait { stream: on, seq });
            }
        }
        Ok(())
    })
}

/// `cuStreamGetCtx`: the stream's context (null and CU_STREAM_LEGACY: the current one).
///
/// # Safety
/// `pctx` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetCtx(stream: Handle, pctx: *mut Handle) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(pctx, d.streams[&s].ctx as Handle) }
    })
}

/// `cuStreamGetFlags`.
///
/// # Safety
/// `flags` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuStreamGetFlags(stream: Handle, flags: *mut c_uint) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        let f = if d.streams[&s].blocking { 0 } else { STREAM_NON_BLOCKING };
        // SAFETY: forwarded from the caller.
        unsafe { put(flags, f) }
    })
}

/// `cuEventCreate`: any flags (timing is never available; see [`cuEventElapsedTime`]).
///
/// # Safety
/// `ph` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuEventCreate(ph: *mut Handle, _flags: c_uint) -> CUresult {
    entry(|d| {
        let ctx = d.current()?;
        if ph.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let key = d.handle();
        d.events.insert(key, Event { ctx, recorded: None });
        // SAFETY: forwarded from the caller.
        unsafe { put(ph, key as Handle) }
    })
}

/// `cuEventRecord`: captures the work enqueued on `stream` so far. The stream must be of
/// the event's context.
#[no_mangle]
pub extern "C" fn cuEventRecord(event: Handle, stream: Handle) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        let (sctx, last) = (d.streams[&s].ctx, d.streams[&s].last_seq);
        let e = d.events.get_mut(&(event as usize)).ok_or(status::INVALID_HANDLE)?;
        if e.ctx != sctx {
            return Err(status::INVALID_HANDLE);
        }
        e.recorded = Some((s, last));
        Ok(())
    })
}

/// Runs the work an event captured.
fn complete(event: Handle) -> CUresult {
    entry(|d| {
        let e = d.events.get(&(event as usize)).ok_or(status::INVALID_HANDLE)?;
        d.usable(e.ctx)?;
        match e.recorded {
            Some((s, seq)) => d.run_until(s, seq),
            None => Ok(()),
        }
    })
}

/// `cuEventSynchronize`.
#[no_mangle]
pub extern "C" fn cuEventSynchronize(event: Handle) -> CUresult {
    complete(event)
}

/// `cuEventQuery`: runs the captured work and reports it complete (or its fault).
#[no_mangle]
pub extern "C" fn cuEventQuery(event: Handle) -> CUresult {
    complete(event)
}

/// `cuEventDestroy_v2`: waits already enqueued keep their place.
#[no_mangle]
pub extern "C" fn cuEventDestroy_v2(event: Handle) -> CUresult {
    entry(|d| d.events.remove(&(event as usize)).map(|_| ()).ok_or(status::INVALID_HANDLE))
}

/// `cuEventElapsedTime`: CUDA_ERROR_NOT_SUPPORTED, since a simulator has no GPU time to
/// report (after the handles are checked).
///
/// # Safety
/// `ms` is null or valid for a write (it is never written).
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime(_ms: *mut f32, start: Handle, end: Handle) -> CUresult {
    elapsed(start, end)
}

fn elapsed(start: Handle, end: Handle) -> CUresult {
    entry(|d| {
        for e in [start, end] {
            d.events.get(&(e as usize)).ok_or(status::INVALID_HANDLE)?;
        }
        Err(status::NOT_SUPPORTED)
    })
}

/// `cuEventElapsedTime_v2` (CUDA 13): as [`cuEventElapsedTime`].
///
/// # Safety
/// As [`cuEventElapsedTime`].
#[no_mangle]
pub unsafe extern "C" fn cuEventElapsedTime_v2(_ms: *mut f32, start: Handle, end: Handle) -> CUresult {
    elapsed(start, end)
}
