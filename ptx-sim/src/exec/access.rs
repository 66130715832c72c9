//! Memory instructions of the interpreter: address resolution with memcheck, racecheck
//! hooks, loads, stores, atomics, ldmatrix and cp.async, and their counters.

use super::{Bits, Block, Warp};
use crate::alu;
use crate::counters::shared_wavefronts;
use crate::error::{MemoryFault, RaceFault, Result, SimError};
use crate::ir::*;
use crate::memory::{Allocation, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use crate::race::Accessor;
use crate::tensor;

#[derive(Default)]
pub(super) struct AsyncCopy {
    dst: u32,
    len: u8,
    data: [u8; 16],
}

/// One thread's outstanding cp.async copies.
#[derive(Default)]
pub(super) struct AsyncState {
    uncommitted: Vec<AsyncCopy>,
    groups: std::collections::VecDeque<Vec<AsyncCopy>>,
}

/// Where an access lands.
enum Target<'g> {
    Global(&'g Allocation, u64),
    Shared(u32),
    Local(usize),
    Param(usize),
}

impl Target<'_> {
    /// The same space, `bytes` further on: element `i` of a vector access.
    fn advanced(&self, bytes: u32) -> Self {
        match *self {
            Target::Global(al, off) => Target::Global(al, off + bytes as u64),
            Target::Shared(o) => Target::Shared(o + bytes),
            Target::Local(o) => Target::Local(o + bytes as usize),
            Target::Param(o) => Target::Param(o + bytes as usize),
        }
    }
}

impl<'a> Block<'a> {
    // Every field of the fault report, taken from the access being checked.
    #[allow(clippy::too_many_arguments)]
    fn mem_err(&self, w: &Warp, lane: u32, pc: u32, space: Space, addr: u64, size: u32, reason: String) -> SimError {
        SimError::Memory(Box::new(MemoryFault {
            site: self.site(w, lane, pc),
            instr: self.l.kernel.instr_text(pc as usize),
            space: space.name(),
            addr,
            size,
            reason,
        }))
    }

    /// Bounds- and alignment-checks an access and says where it lands.
    // The access (space, address, size, alignment, direction) plus the warp, lane and pc a
    // fault report names; called once per lane on the hot path, so no struct is built.
    #[allow(clippy::too_many_arguments)]
    fn resolve(&self, w: &Warp, lane: u32, pc: u32, space: Space, addr: u64, size: u32, align: u32, write: bool) -> Result<Target<'a>> {
        if !addr.is_multiple_of(align as u64) {
            return Err(self.mem_err(w, lane, pc, space, addr, size, format!("misaligned: needs {align}-byte alignment")));
        }
        let (space_eff, a) = match space {
            Space::Generic => {
                if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Shared, addr - SHARED_WINDOW)
                } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Local, addr - LOCAL_WINDOW)
                } else if (PARAM_WINDOW..PARAM_WINDOW + WINDOW_SIZE).contains(&addr) {
                    (Space::Param, addr - PARAM_WINDOW)
                } else {
                    (Space::Global, addr)
                }
            }
            s => (s, addr),
        };
        let end = a.checked_add(size as u64);
        match space_eff {
            Space::Global | Space::Const | Space::Generic => match self.l.global.find(a, size) {
                Some((alloc, off)) => Ok(Target::Global(alloc, off)),
                None => Err(self.mem_err(w, lane, pc, space, addr, size, "out of bounds: not inside any live allocation".into())),
            },
            Space::Shared => {
                let n = self.shared.len() as u64;
                if end.is_none_or(|e| e > n) {
                    return Err(self.mem_err(w, lane, pc, space, addr, size, format!("out of bounds: the block has {n} bytes of shared memory")));
                }
                Ok(Target::Shared(a as u32))
            }
            Space::Local => {
                let n = self.l.kernel.local_bytes as u64;
                if end.is_none_or(|e| e > n) {
                    return Err(self.mem_err(w, lane, pc, space, addr, size, format!("out of bounds: each thread has {n} bytes of local memory")));
                }
                Ok(Target::Local(self.lin(w, lane) * n as usize + a as usize))
            }
            Space::Param => {
                let n = self.l.params.len() as u64;
                if write {
                    return Err(self.mem_err(w, lane, pc, space, addr, size, "kernel parameters are read-only".into()));
                }
                if end.is_none_or(|e| e > n) {
                    return Err(self.mem_err(w, lane, pc, space, addr, size, format!("out of bounds: the kernel has {n} bytes of parameters")));
                }
                Ok(Target::Param(a as usize))
            }
        }
    }

    fn race_check(&mut self, w: &Warp, lane: u32, pc: u32, off: u32, size: u32, write: bool) -> Result<()> {
        let Some(shadow) = self.race.as_mut() else { return Ok(()) };
        let now = Accessor { tid: w.id * 32 + lane, bgen: self.bgen, wgen: w.wgen, line: self.l.kernel.code[pc as usize].line };
        if let Some(hit) = shadow.access(off, size, write, now) {
            let [bx, by, _] = self.l.block;
            let t = hit.other_tid;
            let other_thread = if t == u32::MAX { [u32::MAX; 3] } else { [t % bx, (t / bx) % by, t / (bx * by)] };
            return Err(SimError::Race(Box::new(RaceFault {
                site: self.site(w, lane, pc),
                instr: self.l.kernel.instr_text(pc as usize),
                kind: hit.kind,
                addr: hit.addr as u64,
                other_thread,
                other_line: hit.other_line,
            })));
        }
        Ok(())
    }

    fn read_target(&self, t: &Target, size: u32) -> u64 {
        let bytes = |s: &[u8], o: usize| {
            let mut v = [0u8; 8];
            v[..size as usize].copy_from_slice(&s[o..o + size as usize]);
            u64::from_le_bytes(v)
        };
        match *t {
            Target::Global(a, off) => a.load(off, size),
            Target::Shared(o) => bytes(&self.shared, o as usize),
            Target::Local(o) => bytes(&self.local, o),
            Target::Param(o) => bytes(self.l.params, o),
        }
    }

    fn write_target(&mut self, t: &Target, size: u32, v: u64) {
        let b = v.to_le_bytes();
        match *t {
            Target::Global(a, off) => a.store(off, size, v),
            Target::Shared(o) => self.shared[o as usize..o as usize + size as usize].copy_from_slice(&b[..size as usize]),
            Target::Local(o) => self.local[o..o + size as usize].copy_from_slice(&b[..size as usize]),
            Target::Param(_) => {}
        }
    }

    fn is_shared(t: &Target) -> bool {
        matches!(t, Target::Shared(_))
    }

    fn count_access(&mut self, kind: u8, write: bool, lanes: &[(u32, u64)], size: u32) {
        let c = &mut self.counters;
        let bytes = lanes.len() as u64 * size as u64;
        match (kind, write) {
            (0, false) => {
                c.global_loads += 1;
                c.global_load_bytes += bytes;
            }
            (0, true) => {
                c.global_stores += 1;
                c.global_store_bytes += bytes;
            }
            (1, w) => {
                if w {
                    c.shared_stores += 1;
                    c.shared_store_bytes += bytes;
                } else {
                    c.shared_loads += 1;
                    c.shared_load_bytes += bytes;
                }
                let (total, extra) = shared_wavefronts(lanes, size);
                c.shared_wavefronts += total;
                c.shared_bank_conflicts += extra;
            }
            (2, _) => c.local_accesses += 1,
            _ => {}
        }
    }

    fn kind_of(t: &Target) -> u8 {
        match t {
            Target::Global(..) => 0,
            Target::Shared(_) => 1,
            Target::Local(_) => 2,
            // Parameters live in the constant bank: not memory traffic.
            Target::Param(_) => 3,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn load(&mut self, w: &mut Warp, pc: u32, exec: u32, space: Space, ty: Ty, n: u8, ds: [Option<u32>; 4], addr: Addr) -> Result<()> {
        let esize = ty.bytes();
        let total = esize * n as u32;
        let mut lanes: [(u32, u64); 32] = [(0, 0); 32];
        let mut nl = 0;
        let mut kind = 0;
        for l in Bits(exec) {
            let a = addr.base.map_or(0, |r| w.r(r, l)).wrapping_add(addr.offset as u64);
            let t = self.resolve(w, l, pc, space, a, total, total, false)?;
            kind = Self::kind_of(&t);
            if let Target::Shared(o) = t {
                self.race_check(w, l, pc, o, total, false)?;
                lanes[nl] = (l, o as u64);
            } else {
                lanes[nl] = (l, a);
            }
            nl += 1;
            for (i, d) in ds.iter().take(n as usize).enumerate() {
                let ti = t.advanced(i as u32 * esize);
                let mut v = self.read_target(&ti, esize);
                if ty.is_signed() && esize < 8 {
                    v = alu::sext(v, esize * 8) as u64;
                }
                if let Some(d) = d {
                    w.set(*d, l, v);
                }
            }
        }
        if nl > 0 {
            self.count_access(kind, false, &lanes[..nl], total);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn store(&mut self, w: &mut Warp, pc: u32, exec: u32, space: Space, ty: Ty, n: u8, srcs: [Operand; 4], addr: Addr) -> Result<()> {
        let esize = ty.bytes();
        let total = esize * n as u32;
        let mut lanes: [(u32, u64); 32] = [(0, 0); 32];
        let mut nl = 0;
        let mut kind = 0;
        for l in Bits(exec) {
            let a = addr.base.map_or(0, |r| w.r(r, l)).wrapping_add(addr.offset as u64);
            let t = self.resolve(w, l, pc, space, a, total, total, true)?;
            kind = Self::kind_of(&t);
            if let Target::Shared(o) = t {
                self.race_check(w, l, pc, o, total, true)?;
                lanes[nl] = (l, o as u64);
            } else {
                lanes[nl] = (l, a);
            }
            nl += 1;
            for (i, s) in srcs.iter().take(n as usize).enumerate() {
                let v = self.val(w, *s, l);
                let ti = t.advanced(i as u32 * esize);
                self.write_target(&ti, esize, v);
            }
        }
        if nl > 0 {
            self.count_access(kind, true, &lanes[..nl], total);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn atom(&mut self, w: &mut Warp, pc: u32, exec: u32, space: Space, op: AtomOp, ty: Ty, d: Option<u32>, addr: Addr, b: Operand, c: Operand) -> Result<()> {
        let size = ty.bytes();
        if size != 4 && size != 8 {
            return Err(self.exec_err(w, exec.trailing_zeros(), pc, format!("atomics of {size} bytes are not supported")));
        }
        let mut shared = false;
        for l in Bits(exec) {
            let a = addr.base.map_or(0, |r| w.r(r, l)).wrapping_add(addr.offset as u64);
            let t = self.resolve(w, l, pc, space, a, size, size, true)?;
            let (bv, cv) = (self.val(w, b, l), self.val(w, c, l));
            let f = |old: u64| atom_apply(op, ty, old, bv, cv);
            let old = match t {
                Target::Global(al, off) => al.rmw(off, size, f),
                _ => {
                    shared |= Self::is_shared(&t);
                    let old = self.read_target(&t, size);
                    self.write_target(&t, size, f(old));
                    old
                }
            };
            if let Some(d) = d {
                w.set(d, l, old);
            }
        }
        if shared {
            self.counters.shared_atomics += 1;
        } else {
            self.counters.global_atomics += 1;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn ldmatrix(&mut self, w: &mut Warp, pc: u32, num: u8, trans: bool, ds: [u32; 4], addr: Addr, space: Space) -> Result<()> {
        // Lanes 8i..8i+7 give the row addresses of matrix i (PTX ISA, "Warp-level matrix load instruction: ldmatrix").
        let mut rows = [[0u8; 16]; 32];
        let mut lanes: [(u32, u64); 32] = [(0, 0); 32];
        let nrows = 8 * num as u32;
        for l in 0..nrows {
            let a = addr.base.map_or(0, |r| w.r(r, l)).wrapping_add(addr.offset as u64);
            let t = self.resolve(w, l, pc, space, a, 16, 16, false)?;
            let Target::Shared(o) = t else {
                return Err(self.mem_err(w, l, pc, space, a, 16, "ldmatrix rows must be in shared memory".into()));
            };
            self.race_check(w, l, pc, o, 16, false)?;
            rows[l as usize].copy_from_slice(&self.shared[o as usize..o as usize + 16]);
            lanes[l as usize] = (l, o as u64);
        }
        for (i, d) in ds.iter().take(num as usize).enumerate() {
            for l in 0..32u32 {
                let v = tensor::ldmatrix_lane(&rows[i * 8..i * 8 + 8], l, trans);
                w.set(*d, l, v as u64);
            }
        }
        // Each matrix is eight 16-byte rows: one 128-byte wavefront when conflict free.
        let c = &mut self.counters;
        c.shared_loads += 1;
        c.shared_load_bytes += 16 * nrows as u64;
        for m in 0..num as usize {
            let (total, extra) = shared_wavefronts(&lanes[m * 8..m * 8 + 8], 16);
            c.shared_wavefronts += total;
            c.shared_bank_conflicts += extra;
        }
        Ok(())
    }

    fn ensure_async(&mut self) {
        if self.asyncs.is_empty() {
            let n = self.warps.len() * 32;
            self.asyncs.resize_with(n, AsyncState::default);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn cp_async(&mut self, w: &mut Warp, pc: u32, exec: u32, bytes: u32, dst: Addr, src: Addr, src_size: Option<Operand>, ignore_src: Option<(Operand, bool)>) -> Result<()> {
        self.ensure_async();
        let mut loaded = 0u64;
        let mut lanes: [(u32, u64); 32] = [(0, 0); 32];
        let mut nl = 0;
        for l in Bits(exec) {
            let da = dst.base.map_or(0, |r| w.r(r, l)).wrapping_add(dst.offset as u64);
            let sa = src.base.map_or(0, |r| w.r(r, l)).wrapping_add(src.offset as u64);
            let mut n = match src_size {
                None => bytes,
                Some(o) => self.val(w, o, l) as u32,
            };
            if let Some((p, neg)) = ignore_src {
                if (self.val(w, p, l) & 1 != 0) != neg {
                    n = 0;
                }
            }
            if n > bytes {
                return Err(self.exec_err(w, l, pc, format!("cp.async src-size {n} exceeds the copy size {bytes}")));
            }
            let Target::Shared(off) = self.resolve(w, l, pc, Space::Shared, da, bytes, bytes, true)? else {
                unreachable!("shared space resolves to shared")
            };
            lanes[nl] = (l, off as u64);
            nl += 1;
            let mut copy = AsyncCopy { dst: off, len: bytes as u8, data: [0; 16] };
            if n > 0 {
                // The zero-fill form reads only src-size bytes, so only those must be valid.
                let t = self.resolve(w, l, pc, Space::Global, sa, n, bytes, false)?;
                for i in 0..n {
                    let ti = match t {
                        Target::Global(al, o) => Target::Global(al, o + i as u64),
                        _ => unreachable!("global space resolves to global"),
                    };
                    copy.data[i as usize] = self.read_target(&ti, 1) as u8;
                }
            }
            loaded += n as u64;
            if let Some(shadow) = self.race.as_mut() {
                let now = Accessor { tid: w.id * 32 + l, bgen: self.bgen, wgen: w.wgen, line: self.l.kernel.code[pc as usize].line };
                shadow.async_issue(off, bytes, now);
            }
            let t = self.lin(w, l);
            self.asyncs[t].uncommitted.push(copy);
        }
        let c = &mut self.counters;
        c.cp_async += 1;
        c.global_loads += 1;
        c.global_load_bytes += loaded;
        // The shared-memory side is counted here, per warp-level instruction, because this
        // is the one place where the warp's destination pattern exists; the data lands at
        // the wait (see counters.rs, "cp.async" under `shared_wavefronts`). Zero-filled
        // bytes are written too.
        if nl > 0 {
            self.count_access(1, true, &lanes[..nl], bytes);
        }
        Ok(())
    }

    /// Closes each lane's pending copies into a new group (an empty group is allowed).
    pub(super) fn cp_async_commit(&mut self, w: &Warp, exec: u32) {
        self.ensure_async();
        for l in Bits(exec) {
            let t = self.lin(w, l);
            let a = &mut self.asyncs[t];
            let g = std::mem::take(&mut a.uncommitted);
            a.groups.push_back(g);
        }
    }

    /// Completes all but the newest `keep` committed groups of each lane (all pending copies
    /// when `keep` is None, for wait_all): the shared-memory writes happen now.
    pub(super) fn cp_async_wait(&mut self, w: &mut Warp, pc: u32, exec: u32, keep: Option<u32>) -> Result<()> {
        if self.asyncs.is_empty() {
            return Ok(());
        }
        for l in Bits(exec) {
            let t = self.lin(w, l);
            let st = &mut self.asyncs[t];
            if keep.is_none() {
                let g = std::mem::take(&mut st.uncommitted);
                st.groups.push_back(g);
            }
            let keep = keep.unwrap_or(0) as usize;
            let mut done = Vec::new();
            while st.groups.len() > keep {
                if let Some(g) = st.groups.pop_front() {
                    done.extend(g);
                }
            }
            for cp in done {
                if let Some(shadow) = self.race.as_mut() {
                    shadow.async_complete(cp.dst, cp.len as u32);
                }
                self.race_check(w, l, pc, cp.dst, cp.len as u32, true)?;
                let o = cp.dst as usize;
                self.shared[o..o + cp.len as usize].copy_from_slice(&cp.data[..cp.len as usize]);
            }
        }
        // Not counted as shared stores here: each cp.async counted its own when issued.
        Ok(())
    }
}

/// The new value of an atomic read-modify-write.
fn atom_apply(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let m = alu::mask(bits);
    match op {
        AtomOp::Add => match ty {
            Ty::F32 => (f32::from_bits(old as u32) + f32::from_bits(b as u32)).to_bits() as u64,
            Ty::F64 => (f64::from_bits(old) + f64::from_bits(b)).to_bits(),
            _ => old.wrapping_add(b) & m,
        },
        AtomOp::Min | AtomOp::Max => {
            let less = match ty {
                Ty::F32 => f32::from_bits(b as u32) < f32::from_bits(old as u32),
                Ty::F64 => f64::from_bits(b) < f64::from_bits(old),
                _ if ty.is_signed() => alu::sext(b, bits) < alu::sext(old, bits),
                _ => (b & m) < (old & m),
            };
            let take_b = if op == AtomOp::Min { less } else { !less && b & m != old & m };
            if take_b {
                b & m
            } else {
                old
            }
        }
        AtomOp::And => old & b & m,
        AtomOp::Or => (old | b) & m,
        AtomOp::Xor => (old ^ b) & m,
        AtomOp::Exch => b & m,
        AtomOp::Cas => {
            if old & m == b & m {
                c & m
            } else {
                old
            }
        }
        AtomOp::Inc => {
            if old & m >= b & m {
                0
            } else {
                (old + 1) & m
            }
        }
        AtomOp::Dec => {
            if old & m == 0 || old & m > b & m {
                b & m
            } else {
                (old - 1) & m
            }
        }
    }
}
