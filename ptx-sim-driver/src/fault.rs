//! Fault reports: a kernel fault (memcheck, barrier, execution) or a copy to freed memory
//! becomes a sticky error; its report goes to stderr and is kept for
//! [`ptxSimDriverFaultReport`].

use std::ffi::c_char;
use std::sync::Mutex;

use crate::abi::{status, CUresult};
use crate::errors;

static LAST: Mutex<Option<String>> = Mutex::new(None);

fn keep(code: CUresult, report: String) -> CUresult {
    let line = format!("ptx-sim driver: {}: {report}", errors::name(code));
    eprintln!("{line}");
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some(line);
    code
}

/// A kernel's launch failed while running: the error a GPU would report for it.
pub(crate) fn report_kernel(kernel: &str, e: &ptx_sim::SimError) -> CUresult {
    use ptx_sim::SimError;
    let code = match e {
        SimError::Memory(f) if f.reason.starts_with("misaligned") => status::MISALIGNED_ADDRESS,
        SimError::Memory(_) => status::ILLEGAL_ADDRESS,
        _ => status::LAUNCH_FAILED,
    };
    // Memory, barrier and execution faults name the kernel, block, thread and PTX line
    // themselves; the others name at least the kernel.
    let text = e.to_string();
    let report = if text.contains(kernel) { text } else { format!("kernel {kernel}: {text}") };
    keep(code, report)
}

/// A deferred copy, memset or free met memory that is no longer allocated (freed by
/// stream-ordered work that ran first).
pub(crate) fn report_copy(what: &str, e: &ptx_sim::SimError) -> CUresult {
    keep(status::ILLEGAL_ADDRESS, format!("{what}: {e}"))
}

/// The last fault report of this process, NUL-terminated into `buf` (truncated to `len`
/// bytes with the NUL); returns the report's full length in bytes without the NUL, or 0
/// when there has been no fault. Call with `len` 0 to size the buffer.
///
/// # Safety
/// `buf` is null or valid for `len` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn ptxSimDriverFaultReport(buf: *mut c_char, len: usize) -> usize {
    std::panic::catch_unwind(|| {
        let last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let Some(report) = last.as_deref() else { return 0 };
        if !buf.is_null() && len > 0 {
            let n = report.len().min(len - 1);
            // SAFETY: `buf` is valid for `len` bytes (the caller's contract) and n < len.
            unsafe {
                std::ptr::copy_nonoverlapping(report.as_ptr() as *const c_char, buf, n);
                buf.add(n).write(0);
            }
        }
        report.len()
    })
    .unwrap_or(0)
}
