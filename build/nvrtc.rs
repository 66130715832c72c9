//! NVRTC, loaded at build time with the system loader: compiles one CUDA source to PTX.
//!
//! NVRTC is a library, not a program, so the build script opens it itself rather than
//! depending on a binding crate. Only the handful of entry points below are used.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;

type Program = *mut c_void;
type Status = c_int;
type CreateProgram = unsafe extern "C" fn(*mut Program, *const c_char, *const c_char, c_int, *const *const c_char, *const *const c_char) -> Status;
type DestroyProgram = unsafe extern "C" fn(*mut Program) -> Status;
type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status;
type GetSize = unsafe extern "C" fn(Program, *mut usize) -> Status;
type GetText = unsafe extern "C" fn(Program, *mut c_char) -> Status;
type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status;

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *const c_char;
}

/// An opened NVRTC library (kept open until the build script exits).
pub struct Nvrtc {
    create: CreateProgram,
    destroy: DestroyProgram,
    compile: CompileProgram,
    ptx_size: GetSize,
    ptx: GetText,
    log_size: GetSize,
    log: GetText,
    /// (major, minor), e.g. (12, 4).
    pub version: (i32, i32),
}

impl Nvrtc {
    /// Opens the library at `path` and resolves the entry points.
    pub fn load(path: &Path) -> Result<Self, String> {
        const RTLD_NOW: c_int = 2;
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| format!("{} holds a NUL byte", path.display()))?;
        // SAFETY: a NUL-terminated path; the handle is never closed, so the resolved
        // function pointers stay valid for the life of the build script.
        let handle = unsafe { dlopen(c_path.as_ptr(), RTLD_NOW) };
        if handle.is_null() {
            return Err(format!("cannot open {}: {}", path.display(), last_dl_error()));
        }
        let symbol = |name: &CStr| -> Result<*mut c_void, String> {
            // SAFETY: `handle` is a live library handle and `name` is NUL-terminated.
            let f = unsafe { dlsym(handle, name.as_ptr()) };
            if f.is_null() {
                Err(format!("{} has no {name:?}", path.display()))
            } else {
                Ok(f)
            }
        };
        // SAFETY: each symbol is the NVRTC C API function of that name, whose signature the
        // type aliases above copy from nvrtc.h.
        let lib = unsafe {
            let version: Version = std::mem::transmute::<*mut c_void, Version>(symbol(c"nvrtcVersion")?);
            let mut v = (0, 0);
            version(&mut v.0, &mut v.1);
            Nvrtc {
                create: std::mem::transmute::<*mut c_void, CreateProgram>(symbol(c"nvrtcCreateProgram")?),
                destroy: std::mem::transmute::<*mut c_void, DestroyProgram>(symbol(c"nvrtcDestroyProgram")?),
                compile: std::mem::transmute::<*mut c_void, CompileProgram>(symbol(c"nvrtcCompileProgram")?),
                ptx_size: std::mem::transmute::<*mut c_void, GetSize>(symbol(c"nvrtcGetPTXSize")?),
                ptx: std::mem::transmute::<*mut c_void, GetText>(symbol(c"nvrtcGetPTX")?),
                log_size: std::mem::transmute::<*mut c_void, GetSize>(symbol(c"nvrtcGetProgramLogSize")?),
                log: std::mem::transmute::<*mut c_void, GetText>(symbol(c"nvrtcGetProgramLog")?),
                version: v,
            }
        };
        Ok(lib)
    }

    /// Compiles `source` (named `name` in messages) with `options`; the PTX, or the log.
    pub fn compile(&self, source: &str, name: &str, options: &[String]) -> Result<String, String> {
        let source = CString::new(source).map_err(|_| format!("{name} holds a NUL byte"))?;
        let c_name = CString::new(name).map_err(|_| format!("{name} holds a NUL byte"))?;
        let options: Vec<CString> = options.iter().map(|o| CString::new(o.as_str()).expect("compiler options hold no NUL byte")).collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut program: Program = std::ptr::null_mut();
        // SAFETY: NVRTC's documented calling sequence; every string outlives the calls,
        // text buffers are sized by the matching size query, and the program is destroyed.
        unsafe {
            check((self.create)(&mut program, source.as_ptr(), c_name.as_ptr(), 0, std::ptr::null(), std::ptr::null()), "nvrtcCreateProgram")?;
            let status = (self.compile)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr());
            let log = self.text(program, self.log_size, self.log);
            let ptx = if status == 0 { self.text(program, self.ptx_size, self.ptx) } else { Err(String::new()) };
            (self.destroy)(&mut program);
            match ptx {
                Ok(ptx) => Ok(ptx),
                Err(_) => Err(format!("NVRTC {}.{} failed on {name} (status {status}):\n{}", self.version.0, self.version.1, log.unwrap_or_default())),
            }
        }
    }

    /// A text result of `program` (the log or the PTX).
    ///
    /// # Safety
    /// `program` is a live NVRTC program; `size` and `text` are a matching pair of getters.
    unsafe fn text(&self, program: Program, size: GetSize, text: GetText) -> Result<String, String> {
        let mut n = 0usize;
        // SAFETY: forwarded from the caller; the buffer holds the `n` bytes NVRTC reported.
        unsafe {
            check(size(program, &mut n), "size query")?;
            let mut buf = vec![0u8; n.max(1)];
            check(text(program, buf.as_mut_ptr() as *mut c_char), "text query")?;
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
        }
    }
}

fn check(status: Status, call: &str) -> Result<(), String> {
    if status == 0 {
        Ok(())
    } else {
        Err(format!("{call} returned NVRTC status {status}"))
    }
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated message owned by the loader.
    unsafe {
        let msg = dlerror();
        if msg.is_null() {
            "unknown loader error".into()
        } else {
            CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}
