//! Device global memory and the address map.
//!
//! Global allocations live at high addresses with unmapped gaps between them, so an access
//! that runs off one allocation never lands in another. Shared, local and parameter memory
//! have their own small address spaces (as in PTX); their generic addresses are those
//! offsets plus a window base, which is what `cvta` adds and removes.
//!
//! Blocks run on several host threads at once and may touch the same global words (that is
//! what atomics are for), so every global access goes through a Rust atomic of the access
//! size with relaxed ordering: no data race in the Rust sense, and plain loads and stores
//! still compile to ordinary moves.

use crate::error::{Result, SimError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

/// Generic-address window of shared memory.
pub(crate) const SHARED_WINDOW: u64 = 0x1000_0000_0000;
/// Generic-address window of local memory.
pub(crate) const LOCAL_WINDOW: u64 = 0x2000_0000_0000;
/// Generic-address window of the kernel parameter buffer.
pub(crate) const PARAM_WINDOW: u64 = 0x3000_0000_0000;
/// Size of each window above.
pub(crate) const WINDOW_SIZE: u64 = 1 << 40;
/// First global address handed out.
const GLOBAL_START: u64 = 0x7000_0000_0000;
/// Largest single allocation (host memory backs every byte).
pub(crate) const MAX_ALLOCATION: u64 = 1 << 34;
/// Unmapped bytes between two allocations.
const GUARD: u64 = 1 << 16;

/// One global allocation. Storage is words of `AtomicU64` so the base is 8-byte aligned and
/// every naturally aligned access of 1 to 8 bytes stays inside one word.
pub(crate) struct Allocation {
    pub base: u64,
    pub len: u64,
    words: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Allocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Allocation({:#x}, {} bytes)", self.base, self.len)
    }
}

impl Allocation {
    fn new(base: u64, len: u64) -> Allocation {
        let words = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
        Allocation { base, len, words }
    }

    fn ptr(&self) -> *mut u8 {
        self.words.as_ptr() as *mut u8
    }

    /// Loads `size` (1, 2, 4 or 8) bytes at offset `off`, zero-extended.
    ///
    /// The caller has checked `off + size <= len` and `off % size == 0`.
    #[inline]
    pub(crate) fn load(&self, off: u64, size: u32) -> u64 {
        debug_assert!(off + size as u64 <= self.len && off.is_multiple_of(size as u64));
        // SAFETY: the offset is in bounds and naturally aligned (checked by the caller and
        // by the debug assertion), the storage is atomic words so shared mutation is allowed,
        // and the pointer is valid for the lifetime of `self`.
        unsafe {
            let p = self.ptr().add(off as usize);
            match size {
                1 => AtomicU8::from_ptr(p).load(Relaxed) as u64,
                2 => AtomicU16::from_ptr(p as *mut u16).load(Relaxed) as u64,
                4 => AtomicU32::from_ptr(p as *mut u32).load(Relaxed) as u64,
                _ => AtomicU64::from_ptr(p as *mut u64).load(Relaxed),
            }
        }
    }

    /// Stores the low `size` bytes of `v` at offset `off` (same preconditions as `load`).
    #[inline]
    pub(crate) fn store(&self, off: u64, size: u32, v: u64) {
        debug_assert!(off + size as u64 <= self.len && off.is_multiple_of(size as u64));
        // SAFETY: as in `load`.
        unsafe {
            let p = self.ptr().add(off as usize);
            match size {
                1 => AtomicU8::from_ptr(p).store(v as u8, Relaxed),
                2 => AtomicU16::from_ptr(p as *mut u16).store(v as u16, Relaxed),
                4 => AtomicU32::from_ptr(p as *mut u32).store(v as u32, Relaxed),
                _ => AtomicU64::from_ptr(p as *mut u64).store(v, Relaxed),
            }
        }
    }

    /// Atomically replaces the 4- or 8-byte value at `off` with `f(old)`; returns `old`.
    pub(crate) fn rmw(&self, off: u64, size: u32, f: impl Fn(u64) -> u64) -> u64 {
        debug_assert!(off + size as u64 <= self.len && off.is_multiple_of(size as u64));
        // SAFETY: as in `load`.
        unsafe {
            let p = self.ptr().add(off as usize);
            if size == 4 {
                let a = AtomicU32::from_ptr(p as *mut u32);
                let mut old = a.load(Relaxed);
                loop {
                    match a.compare_exchange_weak(old, f(old as u64) as u32, Relaxed, Relaxed) {
                        Ok(_) => return old as u64,
                        Err(x) => old = x,
                    }
                }
            } else {
                let a = AtomicU64::from_ptr(p as *mut u64);
                let mut old = a.load(Relaxed);
                loop {
                    match a.compare_exchange_weak(old, f(old), Relaxed, Relaxed) {
                        Ok(_) => return old,
                        Err(x) => old = x,
                    }
                }
            }
        }
    }

    /// Host copy in: whole aligned words where possible (uploads can be large), bytes at
    /// the unaligned ends.
    fn write_bytes(&self, off: u64, data: &[u8]) {
        let mut i = 0usize;
        while i < data.len() {
            let at = off + i as u64;
            if at.is_multiple_of(8) && data.len() - i >= 8 {
                let mut w = [0u8; 8];
                w.copy_from_slice(&data[i..i + 8]);
                self.store(at, 8, u64::from_le_bytes(w));
                i += 8;
            } else {
                self.store(at, 1, data[i] as u64);
                i += 1;
            }
        }
    }

    /// Host copy out, word-wise like `write_bytes`.
    fn read_bytes(&self, off: u64, out: &mut [u8]) {
        let mut i = 0usize;
        while i < out.len() {
            let at = off + i as u64;
            if at.is_multiple_of(8) && out.len() - i >= 8 {
                out[i..i + 8].copy_from_slice(&self.load(at, 8).to_le_bytes());
                i += 8;
            } else {
                out[i] = self.load(at, 1) as u8;
                i += 1;
            }
        }
    }
}

/// All live global allocations.
#[derive(Default)]
pub(crate) struct GlobalMemory {
    allocs: BTreeMap<u64, Arc<Allocation>>,
    next: u64,
}

impl GlobalMemory {
    pub(crate) fn alloc(&mut self, len: u64, align: u64) -> Result<u64> {
        if self.next == 0 {
            self.next = GLOBAL_START;
        }
        if len > MAX_ALLOCATION {
            return Err(SimError::Host(format!("allocation of {len} bytes exceeds the simulator's limit of {MAX_ALLOCATION}")));
        }
        let align = align.clamp(256, 1 << 20);
        let base = self.next.div_ceil(align) * align;
        let end = base.checked_add(len).filter(|e| *e < u64::MAX / 2).ok_or_else(|| SimError::Host(format!("allocation of {len} bytes is too large")))?;
        self.next = end + GUARD;
        self.allocs.insert(base, Arc::new(Allocation::new(base, len)));
        Ok(base)
    }

    pub(crate) fn free(&mut self, base: u64) -> Result<()> {
        self.allocs.remove(&base).map(|_| ()).ok_or_else(|| SimError::Host(format!("free of {base:#x}, which is not the start of a live allocation")))
    }

    fn find_range(&self, addr: u64, len: u64) -> Result<(&Allocation, u64)> {
        let (_, a) = self
            .allocs
            .range(..=addr)
            .next_back()
            .ok_or_else(|| SimError::Host(format!("address {addr:#x} is not in any allocation")))?;
        let off = addr - a.base;
        if off.checked_add(len).is_none_or(|e| e > a.len) {
            return Err(SimError::Host(format!(
                "{len} bytes at {addr:#x} run past the allocation at {:#x} of {} bytes",
                a.base, a.len
            )));
        }
        Ok((a, off))
    }

    pub(crate) fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        let (a, off) = self.find_range(addr, data.len() as u64)?;
        a.write_bytes(off, data);
        Ok(())
    }

    pub(crate) fn read(&self, addr: u64, out: &mut [u8]) -> Result<()> {
        let (a, off) = self.find_range(addr, out.len() as u64)?;
        a.read_bytes(off, out);
        Ok(())
    }

    /// A snapshot of the allocation list for one launch (sorted by base).
    pub(crate) fn view(&self) -> GlobalView {
        GlobalView { allocs: self.allocs.values().cloned().collect() }
    }
}

/// The allocations a launch can reach, sorted by base address.
pub(crate) struct GlobalView {
    allocs: Vec<Arc<Allocation>>,
}

impl GlobalView {
    /// The allocation holding `[addr, addr + size)` and the offset into it.
    #[inline]
    pub(crate) fn find(&self, addr: u64, size: u32) -> Option<(&Allocation, u64)> {
        let i = self.allocs.partition_point(|a| a.base <= addr);
        let a = self.allocs.get(i.checked_sub(1)?)?;
        let off = addr - a.base;
        if off + size as u64 <= a.len {
            Some((a, off))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_copies_round_trip_at_any_alignment() {
        let mut m = GlobalMemory::default();
        let base = m.alloc(100, 256).unwrap();
        let data: Vec<u8> = (0..37u8).map(|i| i.wrapping_mul(7) ^ 0x5A).collect();
        for off in [0u64, 1, 3, 8, 13, 63] {
            m.write(base + off, &data).unwrap();
            let mut back = vec![0u8; data.len()];
            m.read(base + off, &mut back).unwrap();
            assert_eq!(back, data, "offset {off}");
        }
        assert!(m.write(base + 90, &data).is_err(), "runs past the end");
        assert!(m.read(base - 1, &mut [0u8; 1]).is_err(), "before the start");
        let second = m.alloc(16, 256).unwrap();
        assert!(second >= base + 100 + GUARD, "allocations are separated by a guard gap");
        let view = m.view();
        assert!(view.find(base + 99, 1).is_some());
        assert!(view.find(base + 99, 2).is_none());
        assert!(view.find(base + 100, 1).is_none());
        m.free(base).unwrap();
        assert!(m.free(base).is_err());
    }
}
