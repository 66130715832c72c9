//! Whether a CUDA driver library can be loaded, asked of the system loader directly.
//!
//! cudarc panics when it cannot load libcuda, and its own probe (`is_culib_present`)
//! exists only under its `dynamic-loading` feature, which an engine may have replaced by
//! `dynamic-linking`. Asking the loader ourselves works under every cudarc feature set.
//! Under dynamic linking the library is already mapped, so the probe finds it.

/// The names the driver library goes by, most specific first.
#[cfg(unix)]
const DRIVER_LIBRARIES: &[&std::ffi::CStr] = &[c"libcuda.so.1", c"libcuda.so"];

/// True when the loader can open the CUDA driver library.
#[cfg(unix)]
pub(crate) fn driver_library_present() -> bool {
    DRIVER_LIBRARIES.iter().any(|name| library_loads(name))
}

/// Whether `dlopen` opens the shared library `name` (searched as the loader searches).
#[cfg(unix)]
fn library_loads(name: &std::ffi::CStr) -> bool {
    // RTLD_LAZY: resolve nothing now; this only asks whether the library loads.
    const RTLD_LAZY: std::ffi::c_int = 1;
    extern "C" {
        fn dlopen(filename: *const std::ffi::c_char, flags: std::ffi::c_int) -> *mut std::ffi::c_void;
        fn dlclose(handle: *mut std::ffi::c_void) -> std::ffi::c_int;
    }
    // SAFETY: `name` is NUL-terminated; a non-null handle is closed at once. Loading a
    // library runs its initialisers; libcuda's are safe to run in any process (cudarc
    // loads it the same way).
    unsafe {
        let handle = dlopen(name.as_ptr(), RTLD_LAZY);
        if handle.is_null() {
            return false;
        }
        dlclose(handle);
        true
    }
}

/// True when the loader can open the CUDA driver library (`nvcuda.dll`).
#[cfg(windows)]
pub(crate) fn driver_library_present() -> bool {
    extern "system" {
        fn LoadLibraryA(name: *const std::ffi::c_char) -> *mut std::ffi::c_void;
        fn FreeLibrary(module: *mut std::ffi::c_void) -> i32;
    }
    // SAFETY: a NUL-terminated name; a non-null module handle is released at once.
    unsafe {
        let module = LoadLibraryA(c"nvcuda.dll".as_ptr());
        if module.is_null() {
            return false;
        }
        FreeLibrary(module);
        true
    }
}

/// No known driver library name on this platform: let cudarc try (and report).
#[cfg(not(any(unix, windows)))]
pub(crate) fn driver_library_present() -> bool {
    true
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::library_loads;

    #[test]
    fn the_loader_probe_tells_present_from_absent_libraries() {
        assert!(library_loads(c"libc.so.6"), "libc is mapped in every Linux process");
        assert!(!library_loads(c"libsparse-attn-no-such-library.so.1"));
    }
}
