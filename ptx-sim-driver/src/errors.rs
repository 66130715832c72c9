//! `cuGetErrorName` / `cuGetErrorString`: static NUL-terminated strings per `CUresult`.

use std::ffi::c_char;

use crate::abi::{status, CUresult};

/// (code, name, description) for every `CUresult` of `cuda.h` up to CUDA 13.0 that a caller
/// is likely to see; the strings end in NUL so their pointers can be handed out as they are.
const TABLE: &[(CUresult, &str, &str)] = &[
    (0, "CUDA_SUCCESS\0", "no error\0"),
    (1, "CUDA_ERROR_INVALID_VALUE\0", "invalid argument\0"),
    (2, "CUDA_ERROR_OUT_OF_MEMORY\0", "out of memory\0"),
    (3, "CUDA_ERROR_NOT_INITIALIZED\0", "initialization error\0"),
    (4, "CUDA_ERROR_DEINITIALIZED\0", "driver shutting down\0"),
    (100, "CUDA_ERROR_NO_DEVICE\0", "no CUDA-capable device is detected\0"),
    (101, "CUDA_ERROR_INVALID_DEVICE\0", "invalid device ordinal\0"),
    (200, "CUDA_ERROR_INVALID_IMAGE\0", "device kernel image is invalid\0"),
    (201, "CUDA_ERROR_INVALID_CONTEXT\0", "invalid device context\0"),
    (209, "CUDA_ERROR_NO_BINARY_FOR_GPU\0", "no kernel image is available for execution on the device\0"),
    (218, "CUDA_ERROR_INVALID_PTX\0", "a PTX JIT compilation failed\0"),
    (222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION\0", "the provided PTX was compiled with an unsupported toolchain.\0"),
    (301, "CUDA_ERROR_FILE_NOT_FOUND\0", "file not found\0"),
    (400, "CUDA_ERROR_INVALID_HANDLE\0", "invalid resource handle\0"),
    (401, "CUDA_ERROR_ILLEGAL_STATE\0", "the operation cannot be performed in the present state\0"),
    (500, "CUDA_ERROR_NOT_FOUND\0", "named symbol not found\0"),
    (600, "CUDA_ERROR_NOT_READY\0", "device not ready\0"),
    (700, "CUDA_ERROR_ILLEGAL_ADDRESS\0", "an illegal memory access was encountered\0"),
    (701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES\0", "too many resources requested for launch\0"),
    (702, "CUDA_ERROR_LAUNCH_TIMEOUT\0", "the launch timed out and was terminated\0"),
    (708, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE\0", "primary context active\0"),
    (709, "CUDA_ERROR_CONTEXT_IS_DESTROYED\0", "context is destroyed\0"),
    (715, "CUDA_ERROR_ILLEGAL_INSTRUCTION\0", "an illegal instruction was encountered\0"),
    (716, "CUDA_ERROR_MISALIGNED_ADDRESS\0", "misaligned address\0"),
    (719, "CUDA_ERROR_LAUNCH_FAILED\0", "unspecified launch failure\0"),
    (800, "CUDA_ERROR_NOT_PERMITTED\0", "operation not permitted\0"),
    (801, "CUDA_ERROR_NOT_SUPPORTED\0", "operation not supported\0"),
    (999, "CUDA_ERROR_UNKNOWN\0", "unknown error\0"),
];

fn lookup(code: CUresult) -> Option<&'static (CUresult, &'static str, &'static str)> {
    TABLE.iter().find(|(c, _, _)| *c == code)
}

/// The name of `code` without the NUL, for messages.
pub(crate) fn name(code: CUresult) -> &'static str {
    lookup(code).map_or("CUDA_ERROR_UNKNOWN", |(_, n, _)| n.trim_end_matches('\0'))
}

/// `cuGetErrorName`: a static string, or `CUDA_ERROR_INVALID_VALUE` (and NULL) for a code
/// it does not know, as the driver does.
///
/// # Safety
/// `out` is null or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorName(code: CUresult, out: *mut *const c_char) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { answer(code, out, |(_, n, _)| n) }
}

/// `cuGetErrorString`, like [`cuGetErrorName`] with the description.
///
/// # Safety
/// `out` is null or valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn cuGetErrorString(code: CUresult, out: *mut *const c_char) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { answer(code, out, |(_, _, s)| s) }
}

/// # Safety
/// `out` is null or valid for one pointer write.
unsafe fn answer(code: CUresult, out: *mut *const c_char, pick: fn(&'static (CUresult, &'static str, &'static str)) -> &'static str) -> CUresult {
    if out.is_null() {
        return status::INVALID_VALUE;
    }
    let (text, result) = match lookup(code) {
        Some(entry) => (pick(entry).as_ptr() as *const c_char, status::SUCCESS),
        None => (std::ptr::null(), status::INVALID_VALUE),
    };
    // SAFETY: `out` is non-null and valid for a write (the caller's contract).
    unsafe { out.write(text) };
    result
}
