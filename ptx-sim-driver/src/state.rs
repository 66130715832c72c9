//! The driver's state: one simulated device, its contexts, streams, events, modules,
//! functions and allocations, behind one lock; the thread's current-context stack; and the
//! entry-point wrapper every exported function runs in.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::abi::{status, CUresult, Handle};

/// The result of a driver operation: `Err` holds the `CUresult` to return.
pub(crate) type Res<T = ()> = Result<T, CUresult>;

/// Turns `Res` into the `CUresult` an entry point returns.
pub(crate) fn code(r: Res) -> CUresult {
    r.err().unwrap_or(status::SUCCESS)
}

/// A context: the primary one of the device or one from `cuCtxCreate`.
pub(crate) struct Context {
    /// Unique id (`cuCtxGetId`), never reused.
    pub id: u64,
    pub primary: bool,
    /// Primary context: retains outstanding; 0 means inactive.
    pub retains: u32,
    /// A created context that was destroyed (its handle answers CONTEXT_IS_DESTROYED).
    pub destroyed: bool,
    /// A kernel fault: every later call on the context returns it, as on a GPU.
    pub sticky: Option<CUresult>,
    /// Key of the context's legacy default stream (the null stream).
    pub legacy: usize,
}

/// Work deferred on a stream until a synchronisation point needs it.
pub(crate) enum Op {
    Launch(Box<Launch>),
    Memset { dst: u64, value: u32, size: u8, count: usize },
    /// Host bytes captured when the copy was enqueued (the caller may reuse its buffer).
    HtoD { dst: u64, data: Vec<u8> },
    DtoD { dst: u64, src: u64, bytes: usize },
    Free { ptr: u64 },
    /// Waits until `stream` has run its work up to sequence number `seq`.
    Wait { stream: usize, seq: u64 },
}

/// A kernel launch as enqueued: everything it needs, so unloading the module later does not
/// invalidate it.
pub(crate) struct Launch {
    pub module: Arc<ptx_sim::Module>,
    pub kernel: String,
    pub config: ptx_sim::LaunchConfig,
    pub args: Vec<Vec<u8>>,
}

pub(crate) struct Work {
    /// Global enqueue order.
    pub seq: u64,
    pub op: Op,
}

pub(crate) struct Stream {
    pub ctx: usize,
    /// Synchronises with the legacy stream (created without CU_STREAM_NON_BLOCKING).
    pub blocking: bool,
    pub legacy: bool,
    pub queue: VecDeque<Work>,
    /// Sequence number of the last work enqueued (0: none).
    pub last_seq: u64,
}

pub(crate) struct Event {
    pub ctx: usize,
    /// The stream and its work the last record captured.
    pub recorded: Option<(usize, u64)>,
}

pub(crate) struct LoadedModule {
    pub ctx: usize,
    pub module: Arc<ptx_sim::Module>,
}

pub(crate) struct Function {
    pub ctx: usize,
    pub module: Arc<ptx_sim::Module>,
    pub kernel: String,
    pub static_smem: u32,
    /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES.
    pub max_dynamic_smem: u32,
    pub carveout: i32,
}

pub(crate) struct Allocation {
    pub ctx: usize,
    pub len: u64,
    /// A stream-ordered free is enqueued (a second free is an error).
    pub freeing: bool,
}

/// Everything behind the lock.
pub(crate) struct Driver {
    pub initialized: bool,
    pub sim: ptx_sim::Device,
    next_handle: usize,
    next_seq: u64,
    next_ctx_id: u64,
    pub contexts: HashMap<usize, Context>,
    pub primary: Option<usize>,
    pub streams: HashMap<usize, Stream>,
    pub events: HashMap<usize, Event>,
    pub modules: HashMap<usize, LoadedModule>,
    pub functions: HashMap<usize, Function>,
    pub allocations: BTreeMap<u64, Allocation>,
    pub allocated_bytes: u64,
}

/// Handles are small integers from this base, so they never collide with the special
/// stream values 0, 1 and 2, and a stale or foreign pointer is unlikely to match one.
const HANDLE_BASE: usize = 0x5157_0000;

impl Driver {
    fn new() -> Driver {
        Driver {
            initialized: false,
            sim: ptx_sim::Device::new(),
            next_handle: HANDLE_BASE,
            next_seq: 1,
            next_ctx_id: 1,
            contexts: HashMap::new(),
            primary: None,
            streams: HashMap::new(),
            events: HashMap::new(),
            modules: HashMap::new(),
            functions: HashMap::new(),
            allocations: BTreeMap::new(),
            allocated_bytes: 0,
        }
    }

    pub fn handle(&mut self) -> usize {
        self.next_handle += 16;
        self.next_handle
    }

    pub fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// A new context with its legacy stream.
    pub fn new_context(&mut self, primary: bool) -> usize {
        let key = self.handle();
        let legacy = self.handle();
        let id = self.next_ctx_id;
        self.next_ctx_id += 1;
        self.streams.insert(legacy, Stream { ctx: key, blocking: true, legacy: true, queue: VecDeque::new(), last_seq: 0 });
        self.contexts.insert(key, Context { id, primary, retains: 0, destroyed: false, sticky: None, legacy });
        key
    }

    /// A live context by handle.
    pub fn context(&self, ctx: usize) -> Res<&Context> {
        match self.contexts.get(&ctx) {
            None => Err(status::INVALID_CONTEXT),
            Some(c) if c.destroyed || (c.primary && c.retains == 0) => Err(status::CONTEXT_IS_DESTROYED),
            Some(c) => Ok(c),
        }
    }

    /// A fresh unique id for `ctx`: a primary context that became inactive or was reset is
    /// a new context when it is used again (the same handle, as in the driver, but a new
    /// `cuCtxGetId`, so caches keyed by the id do not keep the old one's modules).
    pub fn renew_id(&mut self, ctx: usize) {
        let id = self.next_ctx_id;
        self.next_ctx_id += 1;
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.id = id;
        }
    }

    /// The calling thread's current context, live and without a sticky error.
    pub fn current(&self) -> Res<usize> {
        let ctx = current_context().ok_or(status::INVALID_CONTEXT)?;
        self.usable(ctx)?;
        Ok(ctx)
    }

    /// `ctx` if it is live and has no sticky error.
    pub fn usable(&self, ctx: usize) -> Res<usize> {
        match self.context(ctx)?.sticky {
            Some(e) => Err(e),
            None => Ok(ctx),
        }
    }

    /// The stream a handle names: null and CU_STREAM_LEGACY are the current context's
    /// legacy stream.
    pub fn stream(&self, h: Handle) -> Res<usize> {
        let key = h as usize;
        if key == 0 || key == crate::abi::STREAM_LEGACY {
            let ctx = self.current()?;
            return Ok(self.contexts[&ctx].legacy);
        }
        if key == crate::abi::STREAM_PER_THREAD {
            crate::unsupported::log_once("the per-thread default stream (CU_STREAM_PER_THREAD)");
            return Err(status::NOT_SUPPORTED);
        }
        let s = self.streams.get(&key).filter(|s| !s.legacy).ok_or(status::INVALID_HANDLE)?;
        self.usable(s.ctx)?;
        Ok(key)
    }

    /// The live allocation holding `[ptr, ptr + bytes)`.
    pub fn range(&self, ptr: u64, bytes: u64) -> Res<(u64, &Allocation)> {
        let (&base, a) = self.allocations.range(..=ptr).next_back().ok_or(status::INVALID_VALUE)?;
        let end = ptr.checked_add(bytes).ok_or(status::INVALID_VALUE)?;
        if end > base + a.len || a.freeing {
            return Err(status::INVALID_VALUE);
        }
        Ok((base, a))
    }
}

fn driver_cell() -> &'static Mutex<Driver> {
    static DRIVER: OnceLock<Mutex<Driver>> = OnceLock::new();
    DRIVER.get_or_init(|| Mutex::new(Driver::new()))
}

/// The driver state, locked. A panic inside an entry point is caught, and every state
/// change is completed before anything that can fail, so a poisoned lock is still usable.
pub(crate) fn lock() -> MutexGuard<'static, Driver> {
    driver_cell().lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    /// The thread's context stack; the top is the current context.
    static CONTEXT_STACK: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn current_context() -> Option<usize> {
    CONTEXT_STACK.with(|s| s.borrow().last().copied())
}

/// `cuCtxSetCurrent`: replaces the top of the stack (pushes onto an empty one); null pops.
pub(crate) fn set_current(ctx: Option<usize>) {
    CONTEXT_STACK.with(|s| {
        let mut s = s.borrow_mut();
        match ctx {
            None => {
                s.pop();
            }
            Some(c) => match s.last_mut() {
                Some(top) => *top = c,
                None => s.push(c),
            },
        }
    })
}

pub(crate) fn push_current(ctx: usize) {
    CONTEXT_STACK.with(|s| s.borrow_mut().push(ctx))
}

pub(crate) fn pop_current() -> Option<usize> {
    CONTEXT_STACK.with(|s| s.borrow_mut().pop())
}

/// Drops `ctx` from this thread's stack wherever it appears (a destroyed context).
pub(crate) fn forget_current(ctx: usize) {
    CONTEXT_STACK.with(|s| s.borrow_mut().retain(|&c| c != ctx))
}

/// Runs an entry point's body: panics become CUDA_ERROR_UNKNOWN (a panic must not unwind
/// into C), and every call but `cuInit` and the queries that need no state fails with
/// CUDA_ERROR_NOT_INITIALIZED before `cuInit`.
pub(crate) fn entry(body: impl FnOnce(&mut Driver) -> Res) -> CUresult {
    catch_unwind(AssertUnwindSafe(|| {
        let mut d = lock();
        if !d.initialized {
            return status::NOT_INITIALIZED;
        }
        code(body(&mut d))
    }))
    .unwrap_or(status::UNKNOWN)
}

/// Writes `value` through an out-pointer, or INVALID_VALUE when it is null.
///
/// # Safety
/// `out` is null or valid for one write of `T`.
pub(crate) unsafe fn put<T>(out: *mut T, value: T) -> Res {
    if out.is_null() {
        return Err(status::INVALID_VALUE);
    }
    // SAFETY: non-null, and valid for a write by the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}
