//! The host API: device memory, module loading and kernel launches.

use crate::counters::Counters;
use crate::error::{Result, SimError};
use crate::exec::{Block, Launch};
use crate::memory::GlobalMemory;
use crate::module::Module;
use crate::parse::{parse_module, GlobalAllocator};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A device address (what a kernel's pointer parameter holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePtr(pub u64);

impl DevicePtr {
    /// The address `bytes` further on (for passing a pointer into the middle of a buffer).
    pub fn offset(self, bytes: u64) -> DevicePtr {
        DevicePtr(self.0.wrapping_add(bytes))
    }
}

/// Grid and block shape of a launch, plus the dynamic shared memory it asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Blocks in x, y, z.
    pub grid: [u32; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Bytes of dynamic (`extern .shared`) memory per block.
    pub dynamic_shared_bytes: u32,
}

impl LaunchConfig {
    /// A one-dimensional launch without dynamic shared memory.
    pub fn linear(blocks: u32, threads: u32) -> LaunchConfig {
        LaunchConfig { grid: [blocks, 1, 1], block: [threads, 1, 1], dynamic_shared_bytes: 0 }
    }
}

/// Checking and execution options of a launch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchOptions {
    /// Report shared-memory races between barriers (slower: a shadow record per byte).
    pub racecheck: bool,
    /// Host threads that run blocks; 0 uses every available core.
    pub threads: usize,
    /// Warp-instructions one block may issue before the launch fails as a likely infinite
    /// loop (a kernel test must end, whatever its inputs); 0 means the default, 2^32.
    pub instruction_limit: u64,
}

/// The per-block warp-instruction limit used when `LaunchOptions::instruction_limit` is 0.
pub const DEFAULT_INSTRUCTION_LIMIT: u64 = 1 << 32;

/// Largest shared memory per block the simulator accepts (sm_90's opt-in maximum).
pub const MAX_SHARED_BYTES: u32 = 227 * 1024;

/// Scalar types that move between host slices and device memory (little-endian).
pub trait Element: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Appends the little-endian bytes.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads a value from `SIZE` little-endian bytes.
    fn get(b: &[u8]) -> Self;
}

macro_rules! element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::SIZE]);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
element!(u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, half::f16, half::bf16);

/// Kernel arguments in `.param` order, each as the raw bytes of that parameter.
#[derive(Clone, Debug, Default)]
pub struct Args {
    items: Vec<Vec<u8>>,
}

impl Args {
    /// No arguments yet.
    pub fn new() -> Args {
        Args::default()
    }
    /// A device pointer argument.
    pub fn ptr(mut self, p: DevicePtr) -> Args {
        self.items.push(p.0.to_le_bytes().to_vec());
        self
    }
    /// A scalar argument.
    pub fn val<T: Element>(mut self, v: T) -> Args {
        let mut b = Vec::with_capacity(T::SIZE);
        v.put(&mut b);
        self.items.push(b);
        self
    }
    /// An argument given as raw bytes (a struct passed by value).
    pub fn raw(mut self, bytes: &[u8]) -> Args {
        self.items.push(bytes.to_vec());
        self
    }
    /// The arguments as the byte slices `Device::launch` takes.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.items.iter().map(Vec::as_slice).collect()
    }
}

/// A simulated device: global memory plus launches of loaded modules.
#[derive(Default)]
pub struct Device {
    mem: Mutex<GlobalMemory>,
}

impl GlobalAllocator for GlobalMemory {
    fn alloc_global(&mut self, size: u64, align: u64, init: &[u8]) -> Result<u64> {
        let base = self.alloc(size.max(1), align)?;
        let mut bytes = init.to_vec();
        bytes.resize(size as usize, 0);
        self.write(base, &bytes)?;
        Ok(base)
    }
}

impl Device {
    /// A device with empty memory.
    pub fn new() -> Device {
        Device::default()
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, GlobalMemory> {
        // A panic while holding the lock cannot leave memory inconsistent (every operation
        // is a single bounds-checked copy), so a poisoned lock is still usable.
        self.mem.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parses PTX text (as nvcc emits it) into a module; `.global` / `.const` variables
    /// are allocated in this device's memory.
    pub fn load_ptx(&self, text: &str) -> Result<Module> {
        parse_module(text, &mut *self.mem())
    }

    /// Allocates `bytes` of zeroed global memory (256-byte aligned).
    pub fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.mem().alloc(bytes as u64, 256).map(DevicePtr)
    }

    /// Frees an allocation made by `alloc` or `upload`.
    pub fn free(&self, p: DevicePtr) -> Result<()> {
        self.mem().free(p.0)
    }

    /// Copies host bytes to device memory at `p`.
    pub fn write(&self, p: DevicePtr, data: &[u8]) -> Result<()> {
        self.mem().write(p.0, data)
    }

    /// Copies device memory at `p` into `out`.
    pub fn read(&self, p: DevicePtr, out: &mut [u8]) -> Result<()> {
        self.mem().read(p.0, out)
    }

    /// Allocates a buffer holding `data`.
    pub fn upload<T: Element>(&self, data: &[T]) -> Result<DevicePtr> {
        let mut bytes = Vec::with_capacity(data.len() * T::SIZE);
        for v in data {
            v.put(&mut bytes);
        }
        let p = self.alloc(bytes.len())?;
        self.write(p, &bytes)?;
        Ok(p)
    }

    /// Reads `n` elements starting at `p`.
    pub fn download<T: Element>(&self, p: DevicePtr, n: usize) -> Result<Vec<T>> {
        let mut bytes = vec![0u8; n * T::SIZE];
        self.read(p, &mut bytes)?;
        Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
    }

    /// Runs `kernel` of `module` over the grid and returns its work counters. `args` holds
    /// one byte slice per `.param`, each exactly that parameter's size. The first fault
    /// (memcheck, barrier, racecheck, ...) of the lowest-numbered failing block is returned.
    pub fn launch(&self, module: &Module, kernel: &str, cfg: &LaunchConfig, args: &[&[u8]], opts: &LaunchOptions) -> Result<Counters> {
        let k = module.kernels.get(kernel).ok_or_else(|| SimError::UnknownKernel(kernel.to_string()))?;
        let cfg_err = |message: String| SimError::Config { kernel: kernel.to_string(), message };
        if cfg.grid.contains(&0) || cfg.block.contains(&0) {
            return Err(cfg_err(format!("grid {:?} and block {:?} must have no zero dimension", cfg.grid, cfg.block)));
        }
        let nthreads = cfg.block.iter().map(|&d| d as u64).product::<u64>();
        if nthreads > 1024 || cfg.block[2] > 64 {
            return Err(cfg_err(format!("block {:?} exceeds 1024 threads (or 64 in z)", cfg.block)));
        }
        if cfg.grid[1] > 65535 || cfg.grid[2] > 65535 {
            return Err(cfg_err(format!("grid {:?} exceeds 65535 in y or z", cfg.grid)));
        }
        if args.len() != k.params.len() {
            return Err(SimError::Arguments { kernel: kernel.to_string(), message: format!("{} arguments given, the kernel has {} parameters", args.len(), k.params.len()) });
        }
        let mut params = vec![0u8; k.param_bytes as usize];
        for (i, (p, a)) in k.params.iter().zip(args).enumerate() {
            if a.len() != p.size as usize {
                return Err(SimError::Arguments {
                    kernel: kernel.to_string(),
                    message: format!("argument {i} ({}) has {} bytes, the parameter has {}", p.name, a.len(), p.size),
                });
            }
            params[p.offset as usize..p.offset as usize + a.len()].copy_from_slice(a);
        }
        let view = self.mem().view();
        let instruction_limit = if opts.instruction_limit == 0 { DEFAULT_INSTRUCTION_LIMIT } else { opts.instruction_limit };
        let launch = Launch {
            kernel: k,
            global: &view,
            params: &params,
            grid: cfg.grid,
            block: cfg.block,
            dyn_smem: cfg.dynamic_shared_bytes,
            racecheck: opts.racecheck,
            instruction_limit,
        };
        let smem = launch.smem_bytes() as u64;
        if smem > MAX_SHARED_BYTES as u64 || (cfg.dynamic_shared_bytes as u64 + k.static_smem as u64) > MAX_SHARED_BYTES as u64 {
            return Err(cfg_err(format!("{smem} bytes of shared memory per block exceed {MAX_SHARED_BYTES}")));
        }
        run_grid(&launch, opts.threads)
    }
}

fn block_index(grid: [u32; 3], i: u64) -> [u32; 3] {
    let (gx, gy) = (grid[0] as u64, grid[1] as u64);
    [(i % gx) as u32, ((i / gx) % gy) as u32, (i / (gx * gy)) as u32]
}

/// Runs every block, in parallel over host threads. Blocks are claimed in index order and
/// a block that started always finishes, so the reported error is always that of the
/// lowest-numbered failing block, whatever the thread count.
fn run_grid(launch: &Launch, threads: usize) -> Result<Counters> {
    let nblocks = launch.grid.iter().map(|&d| d as u64).product::<u64>();
    let avail = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = if threads == 0 { avail } else { threads }.min(nblocks as usize).max(1);
    let next = AtomicU64::new(0);
    let first_err = AtomicU64::new(u64::MAX);
    let errors: Mutex<Vec<(u64, SimError)>> = Mutex::new(Vec::new());
    let total: Mutex<Counters> = Mutex::new(Counters::default());
    let work = || {
        let mut local = Counters::default();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= nblocks || i > first_err.load(Ordering::Relaxed) {
                break;
            }
            let mut b = Block::new(launch, block_index(launch.grid, i));
            match b.run() {
                Ok(()) => local.add(&b.counters),
                Err(e) => {
                    first_err.fetch_min(i, Ordering::Relaxed);
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                }
            }
        }
        total.lock().unwrap_or_else(|p| p.into_inner()).add(&local);
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(e);
    }
    Ok(total.into_inner().unwrap_or_else(|p| p.into_inner()))
}
