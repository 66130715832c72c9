//! racecheck: a shadow record per shared-memory byte of the last writer and the readers
//! since, each stamped with the block barrier generation and the warp's `bar.warp.sync`
//! generation. Two accesses by different threads, at least one a write, race unless a
//! barrier separates them (or a warp barrier, when both threads are in one warp).

/// Thread ids are stored plus one so zero means "none".
const NONE: u32 = 0;
/// More than one reader thread since the last ordering point.
const MANY: u32 = u32::MAX;

#[derive(Clone, Copy, Default)]
struct Cell {
    w_tid: u32,
    w_bgen: u32,
    w_wgen: u32,
    w_line: u32,
    r_tid: u32,
    r_bgen: u32,
    r_wgen: u32,
    r_line: u32,
}

/// A detected race: the kind, the other thread's linear id and its PTX line, and the byte.
pub(crate) struct RaceHit {
    pub kind: &'static str,
    pub other_tid: u32,
    pub other_line: u32,
    pub addr: u32,
}

/// Shadow state of one block's shared memory.
pub(crate) struct RaceShadow {
    cells: Vec<Cell>,
    /// Per byte: cp.async copies issued but not yet completed by a wait (count, issuing
    /// thread + 1, PTX line), allocated at the first cp.async.
    pending: Vec<(u16, u32, u32)>,
}

/// Who is accessing now.
#[derive(Clone, Copy)]
pub(crate) struct Accessor {
    pub tid: u32,
    pub bgen: u32,
    /// Current warp-barrier generation of the accessor's warp.
    pub wgen: u32,
    pub line: u32,
}

impl RaceShadow {
    pub(crate) fn new(bytes: usize) -> RaceShadow {
        RaceShadow { cells: vec![Cell::default(); bytes], pending: Vec::new() }
    }

    /// True when an earlier access by `tid` at generations (`bgen`, `wgen`) is ordered
    /// before the current access.
    fn ordered(tid: u32, bgen: u32, wgen: u32, now: Accessor) -> bool {
        tid == now.tid + 1 || bgen != now.bgen || ((tid - 1) / 32 == now.tid / 32 && wgen != now.wgen)
    }

    /// Marks `[off, off + len)` as the target of a cp.async that `now` just issued.
    pub(crate) fn async_issue(&mut self, off: u32, len: u32, now: Accessor) {
        if self.pending.is_empty() {
            self.pending = vec![(0, 0, 0); self.cells.len()];
        }
        for a in off..off.saturating_add(len) {
            if let Some(p) = self.pending.get_mut(a as usize) {
                *p = (p.0.saturating_add(1), now.tid + 1, now.line);
            }
        }
    }

    /// A cp.async to `[off, off + len)` completed (its wait ran).
    pub(crate) fn async_complete(&mut self, off: u32, len: u32) {
        for a in off..off.saturating_add(len) {
            if let Some(p) = self.pending.get_mut(a as usize) {
                p.0 = p.0.saturating_sub(1);
            }
        }
    }

    /// Records an access of `size` bytes at `off`; returns the first race found. Touching a
    /// byte that an outstanding cp.async will still write is a race too: whoever issued it
    /// has not waited for it yet (a missing `cp.async.wait_group`).
    pub(crate) fn access(&mut self, off: u32, size: u32, write: bool, now: Accessor) -> Option<RaceHit> {
        for a in off..off.saturating_add(size) {
            if let Some(&(n, tid, line)) = self.pending.get(a as usize) {
                if n > 0 {
                    let kind = if write { "write-before-cp.async-wait" } else { "read-before-cp.async-wait" };
                    return Some(RaceHit { kind, other_tid: tid - 1, other_line: line, addr: a });
                }
            }
            let Some(c) = self.cells.get_mut(a as usize) else { continue };
            if c.w_tid != NONE && !Self::ordered(c.w_tid, c.w_bgen, c.w_wgen, now) {
                let kind = if write { "write-after-write" } else { "read-after-write" };
                return Some(RaceHit { kind, other_tid: c.w_tid - 1, other_line: c.w_line, addr: a });
            }
            if write && c.r_tid != NONE {
                let conflict = if c.r_tid == MANY {
                    // Several readers: at least one differs from the writer, so any reader
                    // set from this barrier interval is a race.
                    c.r_bgen == now.bgen
                } else {
                    !Self::ordered(c.r_tid, c.r_bgen, c.r_wgen, now)
                };
                if conflict {
                    let other = if c.r_tid == MANY { u32::MAX } else { c.r_tid - 1 };
                    return Some(RaceHit { kind: "write-after-read", other_tid: other, other_line: c.r_line, addr: a });
                }
            }
            if write {
                *c = Cell { w_tid: now.tid + 1, w_bgen: now.bgen, w_wgen: now.wgen, w_line: now.line, ..Cell::default() };
            } else if c.r_tid == NONE || c.r_tid == now.tid + 1 || (c.r_tid != MANY && Self::ordered(c.r_tid, c.r_bgen, c.r_wgen, now)) {
                c.r_tid = now.tid + 1;
                c.r_bgen = now.bgen;
                c.r_wgen = now.wgen;
                c.r_line = now.line;
            } else {
                c.r_tid = MANY;
                c.r_bgen = now.bgen;
                c.r_line = now.line;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tid: u32, bgen: u32, wgen: u32) -> Accessor {
        Accessor { tid, bgen, wgen, line: 1 }
    }

    #[test]
    fn detects_and_orders() {
        let mut s = RaceShadow::new(16);
        assert!(s.access(0, 4, true, at(0, 0, 0)).is_none());
        // Another warp reads without a barrier: race.
        let hit = s.access(0, 4, false, at(40, 0, 0)).unwrap();
        assert_eq!(hit.kind, "read-after-write");
        assert_eq!(hit.other_tid, 0);
        // After a barrier the same read is fine.
        assert!(s.access(0, 4, false, at(40, 1, 0)).is_none());
        // Same warp, separated by a warp barrier: fine; without it: race.
        assert!(s.access(8, 4, true, at(1, 1, 0)).is_none());
        assert!(s.access(8, 4, false, at(2, 1, 1)).is_none());
        assert!(s.access(8, 4, true, at(3, 1, 1)).is_some());
        // Two readers then a writer in the same interval: write-after-read.
        assert!(s.access(12, 1, false, at(5, 2, 0)).is_none());
        assert!(s.access(12, 1, false, at(6, 2, 0)).is_none());
        assert_eq!(s.access(12, 1, true, at(5, 2, 0)).unwrap().kind, "write-after-read");
    }
}
