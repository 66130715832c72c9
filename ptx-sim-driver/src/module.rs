//! Modules, functions and launches: PTX is parsed by the simulator when it is loaded (the
//! driver's JIT step); binaries (cubin, fatbin) are refused with
//! CUDA_ERROR_NO_BINARY_FOR_GPU so that a loader that tries them first falls back to PTX.

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::Arc;

use crate::abi::{device, func_attr, status, CUresult, Handle};
use crate::state::{entry, put, Driver, Function, Launch, LoadedModule, Op, Res};

/// ELF (a cubin) and the two fatbinary magics.
fn is_binary(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF") || image.starts_with(&0xba55_ed50u32.to_le_bytes()) || image.starts_with(&0x4662_43b1u32.to_le_bytes())
}

impl Driver {
    fn load_image(&mut self, image: &[u8]) -> Res<usize> {
        let ctx = self.current()?;
        if is_binary(image) {
            return Err(status::NO_BINARY_FOR_GPU);
        }
        let text = CStr::from_bytes_until_nul(image).map_err(|_| status::INVALID_IMAGE)?;
        let text = text.to_str().map_err(|_| status::INVALID_PTX)?;
        let module = self.sim.load_ptx(text).map_err(|e| {
            eprintln!("ptx-sim driver: CUDA_ERROR_INVALID_PTX: {e}");
            status::INVALID_PTX
        })?;
        let key = self.handle();
        self.modules.insert(key, LoadedModule { ctx, module: Arc::new(module) });
        Ok(key)
    }
}

/// Reads a NUL-terminated image of unknown length: a PTX string, or a binary whose header
/// is enough to refuse it.
///
/// # Safety
/// `image` points to a NUL-terminated string or to a cubin / fatbin image.
unsafe fn image_bytes<'a>(image: *const c_void) -> Res<&'a [u8]> {
    if image.is_null() {
        return Err(status::INVALID_VALUE);
    }
    let p = image as *const u8;
    for i in 0..4 {
        // SAFETY: bytes up to the first NUL of a string, or the 4-byte magic of a binary,
        // are readable (the caller's contract); the loop stops at the NUL.
        if unsafe { *p.add(i) } == 0 {
            // SAFETY: the i + 1 bytes just read.
            return Ok(unsafe { std::slice::from_raw_parts(p, i + 1) });
        }
    }
    // SAFETY: the 4 bytes just read.
    let head = unsafe { std::slice::from_raw_parts(p, 4) };
    if is_binary(head) {
        return Ok(head);
    }
    // SAFETY: not a binary, so a NUL-terminated string (the caller's contract).
    Ok(unsafe { CStr::from_ptr(image as *const c_char) }.to_bytes_with_nul())
}

/// `cuModuleLoadData`.
///
/// # Safety
/// `module` is null or valid for a write; `image` is a NUL-terminated PTX string or a
/// cubin / fatbin image.
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut Handle, image: *const c_void) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { load_data(module, image) }
}

/// # Safety
/// As [`cuModuleLoadData`].
unsafe fn load_data(module: *mut Handle, image: *const c_void) -> CUresult {
    entry(|d| {
        if module.is_null() {
            return Err(status::INVALID_VALUE);
        }
        // SAFETY: forwarded from the caller.
        let bytes = unsafe { image_bytes(image) }?;
        let key = d.load_image(bytes)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(module, key as Handle) }
    })
}

/// `cuModuleLoadDataEx`: JIT options have nothing to tune in the simulator and are
/// ignored (no log buffer is written).
///
/// # Safety
/// As [`cuModuleLoadData`].
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(module: *mut Handle, image: *const c_void, _n: c_uint, _options: *mut c_void, _values: *mut *mut c_void) -> CUresult {
    // SAFETY: forwarded from the caller.
    unsafe { load_data(module, image) }
}

/// `cuModuleLoad`: a PTX file (a cubin file is refused as in `cuModuleLoadData`).
///
/// # Safety
/// `module` is null or valid for a write; `path` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoad(module: *mut Handle, path: *const c_char) -> CUresult {
    entry(|d| {
        if module.is_null() || path.is_null() {
            return Err(status::INVALID_VALUE);
        }
        // SAFETY: a NUL-terminated string (the caller's contract).
        let path = unsafe { CStr::from_ptr(path) }.to_str().map_err(|_| status::INVALID_VALUE)?;
        let mut bytes = std::fs::read(path).map_err(|_| status::FILE_NOT_FOUND)?;
        bytes.push(0);
        let key = d.load_image(&bytes)?;
        // SAFETY: forwarded from the caller.
        unsafe { put(module, key as Handle) }
    })
}

/// `cuModuleUnload`: its functions become invalid handles; launches already enqueued keep
/// the code they need.
#[no_mangle]
pub extern "C" fn cuModuleUnload(module: Handle) -> CUresult {
    entry(|d| {
        let m = d.modules.remove(&(module as usize)).ok_or(status::INVALID_HANDLE)?;
        d.functions.retain(|_, f| !Arc::ptr_eq(&f.module, &m.module));
        Ok(())
    })
}

/// `cuModuleGetFunction`: CUDA_ERROR_NOT_FOUND for a name the module lacks.
///
/// # Safety
/// `func` is null or valid for a write; `name` is null or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(func: *mut Handle, module: Handle, name: *const c_char) -> CUresult {
    entry(|d| {
        if func.is_null() || name.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let m = d.modules.get(&(module as usize)).ok_or(status::INVALID_HANDLE)?;
        d.usable(m.ctx)?;
        // SAFETY: a NUL-terminated string (the caller's contract).
        let name = unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| status::NOT_FOUND)?;
        let static_smem = m.module.static_shared_bytes(name).ok_or(status::NOT_FOUND)?;
        let (ctx, module) = (m.ctx, m.module.clone());
        // The driver's default is 48 KiB less the kernel's static shared memory. ptx-sim's
        // static figure also counts module-scope `.shared` variables the kernel never
        // references (ptxas gives those only to kernels that use them), so subtracting it
        // would refuse launches a GPU accepts; the default here is the whole 48 KiB.
        let max_dynamic_smem = device::SMEM_DEFAULT as u32;
        let key = d.handle();
        d.functions.insert(key, Function { ctx, module, kernel: name.to_string(), static_smem, max_dynamic_smem, carveout: -1 });
        // SAFETY: forwarded from the caller.
        unsafe { put(func, key as Handle) }
    })
}

/// `cuFuncGetAttribute`: the attributes the simulator knows (maximum threads, static and
/// maximum dynamic shared memory, the carveout, PTX / binary version 9.0, cache mode);
/// registers, local and constant sizes are a compiler's, which the simulator does not
/// model: CUDA_ERROR_NOT_SUPPORTED.
///
/// # Safety
/// `value` is null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(value: *mut i32, attr: i32, func: Handle) -> CUresult {
    entry(|d| {
        let f = d.functions.get(&(func as usize)).ok_or(status::INVALID_HANDLE)?;
        let v = match attr {
            func_attr::MAX_THREADS_PER_BLOCK => 1024,
            func_attr::SHARED_SIZE_BYTES => f.static_smem as i32,
            func_attr::PTX_VERSION | func_attr::BINARY_VERSION => device::CC.0 * 10 + device::CC.1,
            func_attr::CACHE_MODE_CA => 0,
            func_attr::MAX_DYNAMIC_SHARED_SIZE_BYTES => f.max_dynamic_smem as i32,
            func_attr::PREFERRED_SHARED_MEMORY_CARVEOUT => f.carveout,
            _ => {
                crate::unsupported::log_once(&format!("function attribute {attr}"));
                return Err(status::NOT_SUPPORTED);
            }
        };
        // SAFETY: forwarded from the caller.
        unsafe { put(value, v) }
    })
}

/// `cuFuncSetAttribute`: the maximum dynamic shared memory (up to the 227 KiB opt-in
/// limit less the static part) and the carveout (-1 to 100).
#[no_mangle]
pub extern "C" fn cuFuncSetAttribute(func: Handle, attr: i32, value: i32) -> CUresult {
    entry(|d| {
        let f = d.functions.get_mut(&(func as usize)).ok_or(status::INVALID_HANDLE)?;
        match attr {
            func_attr::MAX_DYNAMIC_SHARED_SIZE_BYTES => {
                let limit = device::SMEM_OPTIN as u32 - f.static_smem.min(device::SMEM_OPTIN as u32);
                match u32::try_from(value) {
                    Ok(v) if v <= limit => f.max_dynamic_smem = v,
                    _ => return Err(status::INVALID_VALUE),
                }
            }
            func_attr::PREFERRED_SHARED_MEMORY_CARVEOUT => {
                if !(-1..=100).contains(&value) {
                    return Err(status::INVALID_VALUE);
                }
                f.carveout = value;
            }
            _ => {
                crate::unsupported::log_once(&format!("setting function attribute {attr}"));
                return Err(status::NOT_SUPPORTED);
            }
        }
        Ok(())
    })
}

/// `cuFuncSetCacheConfig`: a preference the simulator has no cache to apply to; the handle
/// and value are checked.
#[no_mangle]
pub extern "C" fn cuFuncSetCacheConfig(func: Handle, config: i32) -> CUresult {
    entry(|d| {
        d.functions.get(&(func as usize)).ok_or(status::INVALID_HANDLE)?;
        if !(0..=3).contains(&config) {
            return Err(status::INVALID_VALUE);
        }
        Ok(())
    })
}

/// `cuLaunchKernel`: checks the launch as the driver does (function and stream of the
/// current context, dimensions, shared memory against the function's attribute), copies
/// each argument, sized by the kernel's `.param` list, and enqueues the launch. The
/// `extra` form is not supported.
///
/// # Safety
/// `params` is null or points to one pointer per kernel parameter, each valid for reads
/// of that parameter's size.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    func: Handle,
    gx: c_uint,
    gy: c_uint,
    gz: c_uint,
    bx: c_uint,
    by: c_uint,
    bz: c_uint,
    shared: c_uint,
    stream: Handle,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    entry(|d| {
        let s = d.stream(stream)?;
        let ctx = d.current()?;
        let f = d.functions.get(&(func as usize)).ok_or(status::INVALID_HANDLE)?;
        if f.ctx != ctx || d.streams[&s].ctx != ctx {
            return Err(status::INVALID_HANDLE);
        }
        if !extra.is_null() {
            crate::unsupported::log_once("cuLaunchKernel with `extra` arguments");
            return Err(status::NOT_SUPPORTED);
        }
        let (grid, block) = ([gx, gy, gz], [bx, by, bz]);
        let threads = block.iter().map(|&b| b as u64).product::<u64>();
        if grid.contains(&0) || block.contains(&0) || threads > 1024 || bx > 1024 || by > 1024 || bz > 64 || gx > i32::MAX as u32 || gy > 65535 || gz > 65535 {
            return Err(status::INVALID_VALUE);
        }
        if shared > f.max_dynamic_smem || f.static_smem as u64 + shared as u64 > device::SMEM_OPTIN as u64 {
            return Err(status::INVALID_VALUE);
        }
        let decl = f.module.params(&f.kernel).ok_or(status::INVALID_HANDLE)?;
        if !decl.is_empty() && params.is_null() {
            return Err(status::INVALID_VALUE);
        }
        let mut args = Vec::with_capacity(decl.len());
        for (i, p) in decl.iter().enumerate() {
            // SAFETY: `params` holds one pointer per parameter (the caller's contract).
            let arg = unsafe { *params.add(i) } as *const u8;
            if arg.is_null() {
                return Err(status::INVALID_VALUE);
            }
            // SAFETY: each argument is valid for its parameter's size (the caller's contract).
            args.push(unsafe { std::slice::from_raw_parts(arg, p.size as usize) }.to_vec());
        }
        let launch = Launch {
            module: f.module.clone(),
            kernel: f.kernel.clone(),
            config: ptx_sim::LaunchConfig { grid, block, dynamic_shared_bytes: shared },
            args,
        };
        d.enqueue(s, Op::Launch(Box::new(launch)));
        Ok(())
    })
}
