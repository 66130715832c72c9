//! The C types and constants of the CUDA driver API that this library implements, with the
//! numeric values of `cuda.h` (the test `tests/sim_driver.rs` checks them against cudarc's
//! bindings). Defined here rather than taken from cudarc so that the library does not pin
//! cudarc's linking and version features for the crates that build it.

use std::ffi::c_void;

/// `CUresult`: a C enum, passed as a 32-bit integer.
pub type CUresult = u32;
/// `CUdevice`: a device ordinal.
pub type CUdevice = i32;
/// `CUdeviceptr`: a device address.
pub type CUdeviceptr = u64;
/// An opaque handle (`CUcontext`, `CUstream`, `CUevent`, `CUmodule`, `CUfunction`).
pub type Handle = *mut c_void;

/// The `CUresult` values this library returns.
#[allow(missing_docs)]
pub mod status {
    use super::CUresult;
    pub const SUCCESS: CUresult = 0;
    pub const INVALID_VALUE: CUresult = 1;
    pub const OUT_OF_MEMORY: CUresult = 2;
    pub const NOT_INITIALIZED: CUresult = 3;
    pub const NO_DEVICE: CUresult = 100;
    pub const INVALID_DEVICE: CUresult = 101;
    pub const INVALID_IMAGE: CUresult = 200;
    pub const INVALID_CONTEXT: CUresult = 201;
    pub const NO_BINARY_FOR_GPU: CUresult = 209;
    pub const INVALID_PTX: CUresult = 218;
    pub const FILE_NOT_FOUND: CUresult = 301;
    pub const INVALID_HANDLE: CUresult = 400;
    pub const NOT_FOUND: CUresult = 500;
    pub const NOT_READY: CUresult = 600;
    pub const ILLEGAL_ADDRESS: CUresult = 700;
    pub const PRIMARY_CONTEXT_ACTIVE: CUresult = 708;
    pub const CONTEXT_IS_DESTROYED: CUresult = 709;
    pub const MISALIGNED_ADDRESS: CUresult = 716;
    pub const LAUNCH_FAILED: CUresult = 719;
    pub const NOT_SUPPORTED: CUresult = 801;
    pub const UNKNOWN: CUresult = 999;
}

/// `CU_STREAM_LEGACY`: the legacy default stream, like the null stream.
pub const STREAM_LEGACY: usize = 0x1;
/// `CU_STREAM_PER_THREAD`: the per-thread default stream (not modelled).
pub const STREAM_PER_THREAD: usize = 0x2;
/// `CU_STREAM_NON_BLOCKING`: a stream that does not synchronise with the legacy stream.
pub const STREAM_NON_BLOCKING: u32 = 0x1;

/// `CUfunction_attribute` values.
#[allow(missing_docs)]
pub mod func_attr {
    pub const MAX_THREADS_PER_BLOCK: i32 = 0;
    pub const SHARED_SIZE_BYTES: i32 = 1;
    pub const PTX_VERSION: i32 = 5;
    pub const BINARY_VERSION: i32 = 6;
    pub const CACHE_MODE_CA: i32 = 7;
    pub const MAX_DYNAMIC_SHARED_SIZE_BYTES: i32 = 8;
    pub const PREFERRED_SHARED_MEMORY_CARVEOUT: i32 = 9;
}

/// The simulated device: an sm_90-class GPU (H100 / H200 figures where the simulator has
/// no opinion of its own).
pub mod device {
    /// Compute capability.
    pub const CC: (i32, i32) = (9, 0);
    /// Streaming multiprocessors.
    pub const SMS: i32 = 132;
    /// Shared memory a block may opt in to (227 KiB, `ptx_sim::MAX_SHARED_BYTES`).
    pub const SMEM_OPTIN: i32 = ptx_sim::MAX_SHARED_BYTES as i32;
    /// Shared memory a block gets without opting in.
    pub const SMEM_DEFAULT: i32 = 48 * 1024;
    /// Device memory the driver hands out in all (host memory backs every byte).
    pub const TOTAL_MEMORY: u64 = 16 << 30;
    /// The name `cuDeviceGetName` reports.
    pub const NAME: &str = "ptx-sim (simulated)";
    /// `cuDriverGetVersion`: CUDA 13.0, whose PTX ISA (9.0) the simulator reads.
    pub const DRIVER_VERSION: i32 = 13000;
}

/// `CUdevice_attribute` -> value, for the attributes the simulated device answers. Every
/// other attribute returns `CUDA_ERROR_NOT_SUPPORTED` rather than an invented value.
pub fn device_attribute(attr: i32) -> Option<i32> {
    use device::*;
    Some(match attr {
        1 => 1024,                   // MAX_THREADS_PER_BLOCK
        2 | 3 => 1024,               // MAX_BLOCK_DIM_X, _Y
        4 => 64,                     // MAX_BLOCK_DIM_Z
        5 => i32::MAX,               // MAX_GRID_DIM_X
        6 | 7 => 65535,              // MAX_GRID_DIM_Y, _Z
        8 => SMEM_DEFAULT,           // MAX_SHARED_MEMORY_PER_BLOCK
        9 => 65536,                  // TOTAL_CONSTANT_MEMORY
        10 => 32,                    // WARP_SIZE
        12 => 65536,                 // MAX_REGISTERS_PER_BLOCK
        15 => 1,                     // GPU_OVERLAP
        16 => SMS,                   // MULTIPROCESSOR_COUNT
        17 => 0,                     // KERNEL_EXEC_TIMEOUT
        18 => 0,                     // INTEGRATED
        19 => 0,                     // CAN_MAP_HOST_MEMORY: no host-mapped memory here
        20 => 0,                     // COMPUTE_MODE: default
        31 => 1,                     // CONCURRENT_KERNELS
        32 => 0,                     // ECC_ENABLED
        33..=35 => 0,                // PCI_BUS_ID, PCI_DEVICE_ID, TCC_DRIVER
        39 => 2048,                  // MAX_THREADS_PER_MULTIPROCESSOR
        41 => 1,                     // UNIFIED_ADDRESSING: one address space for all contexts
        50 => 0,                     // PCI_DOMAIN_ID
        75 => CC.0,                  // COMPUTE_CAPABILITY_MAJOR
        76 => CC.1,                  // COMPUTE_CAPABILITY_MINOR
        81 => SMEM_OPTIN + 1024,     // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR (228 KiB)
        82 => 65536,                 // MAX_REGISTERS_PER_MULTIPROCESSOR
        83 => 0,                     // MANAGED_MEMORY
        88 => 0,                     // PAGEABLE_MEMORY_ACCESS
        95 => 0,                     // COOPERATIVE_LAUNCH: not modelled
        97 => SMEM_OPTIN,            // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        106 => 32,                   // MAX_BLOCKS_PER_MULTIPROCESSOR
        111 => 1024,                 // RESERVED_SHARED_MEMORY_PER_BLOCK
        115 => 1,                    // MEMORY_POOLS_SUPPORTED: stream-ordered alloc / free
        120 => 0,                    // CLUSTER_LAUNCH: not modelled
        _ => return None,
    })
}
