//! Choosing the simulated driver in a process, before cudarc binds libcuda (the Rust side
//! of the crate, for tests; nothing here is exported to C).
//!
//! cudarc opens the driver once, asking the loader for `libcuda.so` first. The loader
//! answers a request with a library already loaded whose soname matches, and this
//! library's soname is `libcuda.so`: so after [`install`] loads it by path, cudarc binds
//! it. A process that links libcuda at start (or any other loader of `libcuda.so.1`)
//! takes a directory from [`library_dir`] on `LD_LIBRARY_PATH` instead.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the simulated driver could not be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError(String);

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SelectError {}

impl SelectError {
    pub(crate) fn new(reason: String) -> Self {
        SelectError(reason)
    }
}

const RTLD_NOW: c_int = 2;
const RTLD_NOLOAD: c_int = 4;
const RTLD_GLOBAL: c_int = 0x100;

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlerror() -> *mut c_char;
}

/// The file name cargo gives the cdylib (hashed copies in `deps/` start with the stem).
const STEM: &str = "libptx_sim_driver";

/// The newest build of the driver library next to the running executable (its folder,
/// the folder above, and that folder's `deps`), where cargo puts it when the executable's
/// package depends on ptx-sim-driver or the workspace builds it.
pub fn library_path() -> Result<PathBuf, SelectError> {
    let exe = std::env::current_exe().map_err(|e| SelectError(format!("cannot locate the running executable: {e}")))?;
    // Tests run from target/<profile>/deps, examples from target/<profile>/examples; the
    // library of a dependency is in deps, that of a workspace build in <profile>.
    let mut dirs: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(Path::to_path_buf).collect();
    if let Some(profile) = exe.parent().and_then(Path::parent) {
        dirs.push(profile.join("deps"));
    }
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for dir in &dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name == format!("{STEM}.so") || (name.starts_with(&format!("{STEM}-")) && name.ends_with(".so"));
            let modified = entry.metadata().and_then(|m| m.modified());
            if let (true, Ok(t)) = (ours, modified) {
                if best.as_ref().is_none_or(|(b, _)| t > *b) {
                    best = Some((t, entry.path()));
                }
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| {
        SelectError(format!(
            "no {STEM}.so next to {} (build the ptx-sim-driver crate: add it as a dev-dependency, or `cargo build -p ptx-sim-driver`)",
            exe.display()
        ))
    })
}

/// The handle of the installed library.
static INSTALLED: Mutex<Option<(usize, PathBuf)>> = Mutex::new(None);

fn last_dl_error() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by the loader.
    let e = unsafe { dlerror() };
    if e.is_null() {
        "unknown loader error".into()
    } else {
        // SAFETY: non-null, NUL-terminated.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// A handle to the simulated libcuda if this process loaded it.
fn loaded_driver() -> Option<*mut c_void> {
    [c"libcuda.so", c"libcuda.so.1"].iter().find_map(|name| {
        // SAFETY: a NUL-terminated name; RTLD_NOLOAD loads nothing and runs no initialiser.
        let h = unsafe { dlopen(name.as_ptr(), RTLD_NOW | RTLD_NOLOAD) };
        (!h.is_null() && is_simulated(h)).then_some(h)
    })
}

fn is_simulated(handle: *mut c_void) -> bool {
    // SAFETY: a live handle and a NUL-terminated symbol name.
    !unsafe { dlsym(handle, c"ptxSimDriverFaultReport".as_ptr()) }.is_null()
}

/// Makes this process's CUDA driver the simulated one, from [`library_path`]. Call it
/// before the first cudarc call; it fails if a real driver is already loaded. Calling it
/// again returns the same path.
pub fn install() -> Result<PathBuf, SelectError> {
    install_from(&library_path()?)
}

/// [`install`] with the library at `path`.
pub fn install_from(path: &Path) -> Result<PathBuf, SelectError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = installed.as_ref() {
        return Ok(p.clone());
    }
    // cudarc asks for `libcuda.so` first: if another driver answers to that name, cudarc
    // may already be bound to it. (A real `libcuda.so.1` that a probe loaded does not
    // matter: the name cudarc asks for first is this library's soname.)
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD loads nothing.
    let taken = unsafe { dlopen(c"libcuda.so".as_ptr(), RTLD_NOW | RTLD_NOLOAD) };
    if !taken.is_null() && !is_simulated(taken) {
        return Err(SelectError("a CUDA driver library is already loaded in this process: select the simulated one before the first CUDA call".into()));
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| SelectError(format!("{} holds a NUL byte", path.display())))?;
    // SAFETY: a NUL-terminated path. The library's initialisers are Rust statics only; the
    // handle is kept for the process's lifetime (cudarc keeps its own too).
    let h = unsafe { dlopen(c_path.as_ptr(), RTLD_NOW | RTLD_GLOBAL) };
    if h.is_null() {
        return Err(SelectError(format!("cannot load {}: {}", path.display(), last_dl_error())));
    }
    if !is_simulated(h) {
        return Err(SelectError(format!("{} is not the ptx-sim driver library", path.display())));
    }
    *installed = Some((h as usize, path.to_path_buf()));
    Ok(path.to_path_buf())
}

/// Whether the CUDA driver this process loaded is the simulated one.
pub fn is_installed() -> bool {
    loaded_driver().is_some()
}

/// Fills `dir` with `libcuda.so.1` and `libcuda.so` links to the library at `lib`, for a
/// child process's `LD_LIBRARY_PATH` (a process that links libcuda at start, or a
/// language other than Rust). Returns `dir`.
pub fn library_dir(lib: &Path, dir: &Path) -> Result<PathBuf, SelectError> {
    let err = |e: std::io::Error| SelectError(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    for name in ["libcuda.so.1", "libcuda.so"] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(lib, &link).map_err(err)?;
        #[cfg(not(unix))]
        std::fs::copy(lib, &link).map_err(err)?;
    }
    Ok(dir.to_path_buf())
}

/// The last fault report of the simulated driver in this process (kernel, block, thread,
/// PTX line and address of a memcheck fault), or `None` when there was none or the
/// simulated driver is not loaded.
pub fn fault_report() -> Option<String> {
    let f = driver_symbol(c"ptxSimDriverFaultReport")?;
    // SAFETY: the symbol is `ptxSimDriverFaultReport` of fault.rs, of this signature.
    let report: unsafe extern "C" fn(*mut c_char, usize) -> usize = unsafe { std::mem::transmute(f) };
    // SAFETY: a null buffer of length 0 only asks for the length.
    let len = unsafe { report(std::ptr::null_mut(), 0) };
    if len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len + 1];
    // SAFETY: `buf` holds len + 1 bytes.
    unsafe { report(buf.as_mut_ptr() as *mut c_char, buf.len()) };
    buf.truncate(len);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The symbol `name` of the loaded simulated driver.
fn driver_symbol(name: &CStr) -> Option<*mut c_void> {
    let h = loaded_driver()?;
    // SAFETY: a live handle and a NUL-terminated name.
    let f = unsafe { dlsym(h, name.as_ptr()) };
    (!f.is_null()).then_some(f)
}

/// The simulator's work counters summed over the launches the simulated driver ran in
/// this process (deferred launches count once a synchronisation ran them); `reset`
/// restarts the total. `None` when the simulated driver is not loaded.
pub fn counters(reset: bool) -> Option<ptx_sim::Counters> {
    let f = driver_symbol(c"ptxSimDriverCounters")?;
    // SAFETY: `ptxSimDriverCounters` of work.rs has this signature.
    let f = unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut u64, usize, i32) -> usize>(f) };
    let mut a = [0u64; crate::work::FIELDS];
    // SAFETY: `a` holds FIELDS u64.
    unsafe { f(a.as_mut_ptr(), a.len(), reset as i32) };
    Some(crate::work::from_array(&a))
}

/// Turns racecheck on or off for the simulated driver's later launches; false when the
/// simulated driver is not loaded.
pub fn set_racecheck(on: bool) -> bool {
    let Some(f) = driver_symbol(c"ptxSimDriverSetRacecheck") else { return false };
    // SAFETY: `ptxSimDriverSetRacecheck` of work.rs has this signature.
    let f = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn(i32)>(f) };
    f(on as i32);
    true
}
