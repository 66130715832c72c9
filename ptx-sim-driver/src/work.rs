//! What the simulator measures, through the driver: the work counters of every launch the
//! process ran (summed), and whether launches run racecheck. Exported as C functions so a
//! program that bound this library (through cudarc or otherwise) can ask for them;
//! [`crate::counters`] and [`crate::set_racecheck`] call them for Rust.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use ptx_sim::Counters;

static TOTAL: Mutex<Counters> = Mutex::new(Counters {
    warp_instructions: 0,
    thread_instructions: 0,
    alu: 0,
    sfu: 0,
    mma: 0,
    barriers: 0,
    control: 0,
    global_loads: 0,
    global_load_bytes: 0,
    global_stores: 0,
    global_store_bytes: 0,
    global_atomics: 0,
    shared_loads: 0,
    shared_load_bytes: 0,
    shared_stores: 0,
    shared_store_bytes: 0,
    shared_atomics: 0,
    shared_wavefronts: 0,
    shared_bank_conflicts: 0,
    local_accesses: 0,
    cp_async: 0,
});

static RACECHECK: AtomicBool = AtomicBool::new(false);

/// The counters as an array, in `ptx_sim::Counters` field order: the C layout of
/// [`ptxSimDriverCounters`].
pub(crate) const FIELDS: usize = 21;

pub(crate) fn to_array(c: &Counters) -> [u64; FIELDS] {
    [
        c.warp_instructions,
        c.thread_instructions,
        c.alu,
        c.sfu,
        c.mma,
        c.barriers,
        c.control,
        c.global_loads,
        c.global_load_bytes,
        c.global_stores,
        c.global_store_bytes,
        c.global_atomics,
        c.shared_loads,
        c.shared_load_bytes,
        c.shared_stores,
        c.shared_store_bytes,
        c.shared_atomics,
        c.shared_wavefronts,
        c.shared_bank_conflicts,
        c.local_accesses,
        c.cp_async,
    ]
}

pub(crate) fn from_array(a: &[u64; FIELDS]) -> Counters {
    Counters {
        warp_instructions: a[0],
        thread_instructions: a[1],
        alu: a[2],
        sfu: a[3],
        mma: a[4],
        barriers: a[5],
        control: a[6],
        global_loads: a[7],
        global_load_bytes: a[8],
        global_stores: a[9],
        global_store_bytes: a[10],
        global_atomics: a[11],
        shared_loads: a[12],
        shared_load_bytes: a[13],
        shared_stores: a[14],
        shared_store_bytes: a[15],
        shared_atomics: a[16],
        shared_wavefronts: a[17],
        shared_bank_conflicts: a[18],
        local_accesses: a[19],
        cp_async: a[20],
    }
}

/// Adds a finished launch's counters to the total.
pub(crate) fn record(c: &Counters) {
    TOTAL.lock().unwrap_or_else(|p| p.into_inner()).add(c);
}

/// The launch options every launch runs with.
pub(crate) fn launch_options() -> ptx_sim::LaunchOptions {
    ptx_sim::LaunchOptions { racecheck: RACECHECK.load(Ordering::Relaxed), ..Default::default() }
}

/// Writes the summed counters of every launch that ran so far (launches still deferred on
/// a stream are not counted until a synchronisation runs them) as `min(len, 21)` u64 in
/// `ptx_sim::Counters` field order; with `reset` non-zero the total restarts from zero.
/// Returns the number of fields there are (21).
///
/// # Safety
/// `out` is null or valid for `len` u64 writes.
#[no_mangle]
pub unsafe extern "C" fn ptxSimDriverCounters(out: *mut u64, len: usize, reset: i32) -> usize {
    std::panic::catch_unwind(|| {
        let mut total = TOTAL.lock().unwrap_or_else(|p| p.into_inner());
        let a = to_array(&total);
        if !out.is_null() {
            // SAFETY: `out` is valid for `len` writes (the caller's contract).
            unsafe { std::ptr::copy_nonoverlapping(a.as_ptr(), out, len.min(FIELDS)) };
        }
        if reset != 0 {
            *total = Counters::default();
        }
        FIELDS
    })
    .unwrap_or(0)
}

/// Turns racecheck (shared-memory races between barriers, reported like a memcheck fault
/// as CUDA_ERROR_LAUNCH_FAILED) on or off for launches that run from now on.
#[no_mangle]
pub extern "C" fn ptxSimDriverSetRacecheck(on: i32) {
    RACECHECK.store(on != 0, Ordering::Relaxed);
}
