//! Block barriers and the `.sync` warp collectives (shfl, vote, redux, bar.warp.sync):
//! arrival, parking of early lanes, release, and the collective operations themselves.

use super::{Bits, Block, Warp};
use crate::error::Result;
use crate::ir::*;

impl Block<'_> {
    pub(super) fn barrier(&mut self, w: &mut Warp, pc: u32, active: u32, exec: u32, id: Operand, count: Option<Operand>) -> Result<()> {
        let next = pc + 1;
        if exec == 0 {
            w.advance(active, next);
            return Ok(());
        }
        let first = exec.trailing_zeros();
        let id = self.val(w, id, first);
        if id >= 16 {
            return Err(self.exec_err(w, first, pc, format!("barrier id {id} is outside 0..16")));
        }
        let nthreads = self.l.threads_per_block();
        let expected = match count {
            None => nthreads,
            Some(c) => {
                let c = self.val(w, c, first) as u32;
                if c == 0 || c > nthreads.div_ceil(32) * 32 || !c.is_multiple_of(32) {
                    return Err(self.exec_err(w, first, pc, format!("barrier thread count {c} must be a non-zero multiple of 32 up to the block size")));
                }
                c.min(nthreads)
            }
        };
        let line = self.l.kernel.code[pc as usize].line;
        // Lanes parked at the barrier resume after it; they keep their PC in `pcs`.
        if exec != w.live() {
            w.diverge();
        }
        w.blocked |= exec;
        w.advance(active, next);
        let b = &mut self.bars[id as usize];
        b.arrived += exec.count_ones();
        b.expected = expected;
        b.line = line;
        b.waiting[w.id as usize] |= exec;
        if b.arrived >= b.expected {
            let waiting = std::mem::replace(&mut b.waiting, vec![0; self.warps.len()]);
            b.arrived = 0;
            for (i, m) in waiting.into_iter().enumerate() {
                if i as u32 == w.id {
                    w.blocked &= !m;
                } else {
                    self.warps[i].blocked &= !m;
                }
            }
            self.bgen += 1;
        }
        Ok(())
    }

    /// Shared handling of the `.sync` warp collectives: wait for the member mask, then run
    /// `op` (None for bar.warp.sync) for every participating lane.
    pub(super) fn warp_collective(&mut self, w: &mut Warp, pc: u32, active: u32, exec: u32, mask: Operand, op: Option<&Op>) -> Result<()> {
        let next = pc + 1;
        if exec == 0 {
            w.advance(active, next);
            return Ok(());
        }
        let first = exec.trailing_zeros();
        let member = (self.val(w, mask, first) as u32) & w.valid;
        for l in Bits(exec) {
            let m = self.val(w, mask, l) as u32 & w.valid;
            if m & (1 << l) == 0 || m != member {
                return Err(self.exec_err(w, l, pc, format!("lane {l} executes a .sync collective with member mask {m:#010x} that does not name it or differs from lane {first}'s {member:#010x}")));
            }
        }
        if member & w.exited != 0 {
            let lane = (member & w.exited).trailing_zeros();
            return Err(self.exec_err(w, first, pc, format!("member lane {lane} of mask {member:#010x} has exited and can never arrive")));
        }
        // Lanes already parked at a matching collective (same instruction; any
        // bar.warp.sync for bar.warp.sync, which may differ per lane on sm_70+).
        let code = &self.l.kernel.code;
        let is_warp_bar = op.is_none();
        let mut waiting = 0u32;
        for l in Bits(w.coll_wait) {
            let p = w.lane_pc(l);
            let same = if is_warp_bar { matches!(code[p as usize].op, Op::BarWarp { .. }) } else { p == pc };
            if same {
                waiting |= 1 << l;
            }
        }
        let arrived = exec | waiting;
        if member & !arrived != 0 {
            w.diverge();
            w.coll_wait |= exec;
            w.blocked |= exec;
            w.advance(active & !exec, next);
            return Ok(());
        }
        // Everyone is here: release the parked lanes and execute for all of them.
        w.coll_wait &= !waiting;
        w.blocked &= !waiting;
        match op {
            None => {
                w.wgen += 1;
                // Parked lanes continue after their own bar.warp.sync.
                for l in Bits(waiting) {
                    let p = w.lane_pc(l);
                    w.advance(1 << l, p + 1);
                }
            }
            Some(op) => {
                self.collective_op(w, op, arrived);
                w.advance(waiting, next);
            }
        }
        w.advance(active, next);
        Ok(())
    }

    pub(super) fn collective_op(&mut self, w: &mut Warp, op: &Op, lanes: u32) {
        match *op {
            Op::Shfl { mode, d, p, a, b, c, .. } => {
                // Read every source before writing: `d` may be `a`.
                let mut src = [0u64; 32];
                for l in 0..32 {
                    src[l as usize] = self.val(w, a, l);
                }
                for l in Bits(lanes) {
                    let bval = (self.val(w, b, l) & 0x1F) as i32;
                    let cv = self.val(w, c, l) as u32;
                    let clamp = (cv & 0x1F) as i32;
                    let segmask = ((cv >> 8) & 0x1F) as i32;
                    let lane = l as i32;
                    // PTX ISA, shfl.sync: segment bounds come from the packed c operand.
                    let max_lane = (lane & segmask) | (clamp & !segmask);
                    let min_lane = lane & segmask;
                    let (mut j, pval) = match mode {
                        ShflMode::Up => (lane - bval, lane - bval >= max_lane),
                        ShflMode::Down => (lane + bval, lane + bval <= max_lane),
                        ShflMode::Bfly => (lane ^ bval, (lane ^ bval) <= max_lane),
                        ShflMode::Idx => {
                            let j = min_lane | (bval & !segmask);
                            (j, j <= max_lane)
                        }
                    };
                    if !pval {
                        j = lane;
                    }
                    w.set(d, l, src[(j & 31) as usize]);
                    if let Some(p) = p {
                        w.set(p, l, pval as u64);
                    }
                }
            }
            Op::Vote { mode, d, p, negate, .. } => {
                let mut ballot = 0u32;
                for l in Bits(lanes) {
                    if (self.val(w, p, l) & 1 != 0) != negate {
                        ballot |= 1 << l;
                    }
                }
                let v = match mode {
                    VoteMode::Ballot => ballot as u64,
                    VoteMode::All => (ballot == lanes) as u64,
                    VoteMode::Any => (ballot != 0) as u64,
                    VoteMode::Uni => (ballot == lanes || ballot == 0) as u64,
                };
                for l in Bits(lanes) {
                    w.set(d, l, v);
                }
            }
            Op::Redux { op, ty, d, a, .. } => {
                let vals: Vec<u64> = Bits(lanes).map(|l| self.val(w, a, l) & 0xFFFF_FFFF).collect();
                let signed = ty.is_signed();
                let key = |v: u64| if signed { v as u32 as i32 as i64 } else { v as i64 };
                let r = match op {
                    ReduxOp::Add => vals.iter().fold(0u64, |s, v| s.wrapping_add(*v)) & 0xFFFF_FFFF,
                    ReduxOp::Min => vals.iter().copied().min_by_key(|v| key(*v)).unwrap_or(0),
                    ReduxOp::Max => vals.iter().copied().max_by_key(|v| key(*v)).unwrap_or(0),
                    ReduxOp::And => vals.iter().fold(0xFFFF_FFFF, |s, v| s & v),
                    ReduxOp::Or => vals.iter().fold(0, |s, v| s | v),
                    ReduxOp::Xor => vals.iter().fold(0, |s, v| s ^ v),
                };
                for l in Bits(lanes) {
                    w.set(d, l, r);
                }
            }
            _ => {}
        }
    }
}
