//! The SIMT interpreter for one thread block.
//!
//! Registers are stored per warp as structure-of-arrays (`regs[reg * 32 + lane]`), and each
//! instruction runs for the active lanes of a warp in one loop. Divergence follows Volta's
//! independent thread scheduling with per-lane program counters: the warp issues the
//! instruction at the smallest PC among its runnable lanes, for exactly the lanes at that
//! PC, so lanes reconverge as soon as their PCs meet. While every live lane shares one PC
//! (the common case) the warp keeps a single PC and skips the per-lane scan.
//!
//! `.sync` collectives (shfl, vote, redux, bar.warp.sync) wait until every lane of their
//! member mask has arrived; lanes that arrive early are parked at the instruction. Block
//! barriers park lanes until the expected number of threads has arrived. When nothing can
//! run and something is parked, the launch fails with a report instead of hanging.

use crate::alu;
use crate::float;
use crate::counters::Counters;
use crate::error::{Result, SimError, Site};
use crate::ir::*;
use crate::memory::{GlobalView, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW};
use crate::module::Kernel;
use crate::race::RaceShadow;
use crate::tensor;

mod access;
mod sync;

use access::AsyncState;

/// Everything fixed for a launch.
pub(crate) struct Launch<'a> {
    pub kernel: &'a Kernel,
    pub global: &'a GlobalView,
    pub params: &'a [u8],
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dyn_smem: u32,
    pub racecheck: bool,
    /// Warp-instructions a block may issue (a guard against kernels that never end).
    pub instruction_limit: u64,
}

impl Launch<'_> {
    pub(crate) fn threads_per_block(&self) -> u32 {
        self.block[0] * self.block[1] * self.block[2]
    }
    pub(crate) fn smem_bytes(&self) -> u32 {
        let k = self.kernel;
        let dyn_base = k.static_smem.div_ceil(k.dyn_smem_align.max(1)) * k.dyn_smem_align.max(1);
        if self.dyn_smem > 0 {
            dyn_base + self.dyn_smem
        } else {
            k.static_smem
        }
    }
}

#[derive(Default)]
struct Warp {
    id: u32,
    regs: Vec<u64>,
    /// Per-lane PCs, meaningful only while `uniform` is false.
    pcs: [u32; 32],
    /// The PC of every live lane while `uniform` is true.
    pc: u32,
    uniform: bool,
    /// Lanes that exist (the last warp of a block may be partial).
    valid: u32,
    exited: u32,
    /// Lanes parked at a block barrier or a warp collective.
    blocked: u32,
    /// The subset of `blocked` parked at a warp collective (PC = that instruction).
    coll_wait: u32,
    /// bar.warp.sync generation (racecheck ordering inside a warp).
    wgen: u32,
    tid: [[u32; 3]; 32],
    clock: u64,
    /// Per-lane return addresses of device-function calls (empty until the first call).
    stacks: Vec<Vec<u32>>,
}

impl Warp {
    #[inline(always)]
    fn live(&self) -> u32 {
        self.valid & !self.exited
    }

    #[inline(always)]
    fn runnable(&self) -> u32 {
        self.valid & !self.exited & !self.blocked
    }

    fn diverge(&mut self) {
        if self.uniform {
            self.pcs = [self.pc; 32];
            self.uniform = false;
        }
    }

    fn lane_pc(&self, lane: u32) -> u32 {
        if self.uniform {
            self.pc
        } else {
            self.pcs[lane as usize]
        }
    }

    /// Moves `lanes` to `pc`.
    #[inline(always)]
    fn advance(&mut self, lanes: u32, pc: u32) {
        if lanes == 0 {
            return;
        }
        if self.uniform {
            if lanes == self.live() {
                self.pc = pc;
                return;
            }
            self.diverge();
        }
        for l in Bits(lanes) {
            self.pcs[l as usize] = pc;
        }
        self.try_converge();
    }

    fn try_converge(&mut self) {
        let live = self.live();
        if live == 0 {
            return;
        }
        let first = self.pcs[live.trailing_zeros() as usize];
        if Bits(live).all(|l| self.pcs[l as usize] == first) {
            self.uniform = true;
            self.pc = first;
        }
    }

    /// The smallest PC among runnable lanes, and the runnable lanes at it.
    fn pick(&self, runnable: u32) -> (u32, u32) {
        let mut best = u32::MAX;
        let mut mask = 0;
        for l in Bits(runnable) {
            let p = self.pcs[l as usize];
            if p < best {
                best = p;
                mask = 1 << l;
            } else if p == best {
                mask |= 1 << l;
            }
        }
        (best, mask)
    }

    #[inline(always)]
    fn r(&self, reg: u32, lane: u32) -> u64 {
        self.regs[(reg * 32 + lane) as usize]
    }

    #[inline(always)]
    fn set(&mut self, reg: u32, lane: u32, v: u64) {
        self.regs[(reg * 32 + lane) as usize] = v;
    }
}

/// Iterates the set bits of a lane mask.
#[derive(Clone, Copy)]
pub(crate) struct Bits(pub u32);

impl Iterator for Bits {
    type Item = u32;
    #[inline(always)]
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            None
        } else {
            let l = self.0.trailing_zeros();
            self.0 &= self.0 - 1;
            Some(l)
        }
    }
}

#[derive(Default, Clone)]
struct Barrier {
    arrived: u32,
    expected: u32,
    line: u32,
    /// Per warp, the lanes parked here.
    waiting: Vec<u32>,
}

/// One block being executed.
pub(crate) struct Block<'a> {
    l: &'a Launch<'a>,
    ctaid: [u32; 3],
    shared: Vec<u8>,
    local: Vec<u8>,
    warps: Vec<Warp>,
    bars: Vec<Barrier>,
    bgen: u32,
    race: Option<RaceShadow>,
    asyncs: Vec<AsyncState>,
    pub(crate) counters: Counters,
}

/// Deepest device-function call nesting (recursion is rejected at load; this bounds a
/// corrupted return path).
const MAX_CALL_DEPTH: usize = 64;

/// Instructions a warp runs before the scheduler moves on, so that a warp spinning on a
/// flag another warp will set cannot starve it.
const QUANTUM: u32 = 1 << 14;

impl<'a> Block<'a> {
    pub(crate) fn new(l: &'a Launch<'a>, ctaid: [u32; 3]) -> Block<'a> {
        let nthreads = l.threads_per_block();
        let nwarps = nthreads.div_ceil(32);
        let nregs = l.kernel.nregs as usize;
        let [bx, by, _] = l.block;
        let warps = (0..nwarps)
            .map(|w| {
                let mut tid = [[0u32; 3]; 32];
                for (lane, t) in tid.iter_mut().enumerate() {
                    let lin = w * 32 + lane as u32;
                    *t = [lin % bx, (lin / bx) % by, lin / (bx * by)];
                }
                let n = (nthreads - w * 32).min(32);
                Warp {
                    id: w,
                    regs: vec![0; nregs * 32],
                    uniform: true,
                    valid: if n == 32 { u32::MAX } else { (1u32 << n) - 1 },
                    tid,
                    ..Warp::default()
                }
            })
            .collect();
        let smem = l.smem_bytes() as usize;
        Block {
            l,
            ctaid,
            // Uninitialised memory reads as 0xFF bytes (a NaN for floats), so a kernel that
            // relies on zeroed shared or local memory fails its tests here too.
            shared: vec![0xFF; smem],
            local: vec![0xFF; l.kernel.local_bytes as usize * nthreads as usize],
            warps,
            bars: vec![Barrier { waiting: vec![0; nwarps as usize], ..Barrier::default() }; 16],
            bgen: 0,
            race: if l.racecheck { Some(RaceShadow::new(smem)) } else { None },
            asyncs: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// Runs the block to completion.
    pub(crate) fn run(&mut self) -> Result<()> {
        loop {
            let mut progressed = false;
            if self.counters.warp_instructions > self.l.instruction_limit {
                let w = &self.warps[0];
                return Err(SimError::Execution {
                    site: Site { kernel: self.l.kernel.name.clone(), block: self.ctaid, thread: [0; 3], line: 0 },
                    instr: String::new(),
                    message: format!("the block issued more than {} warp-instructions: an endless loop? (raise LaunchOptions::instruction_limit if not); warp 0 is at PTX line {}", self.l.instruction_limit, self.l.kernel.code.get(w.lane_pc(w.live().trailing_zeros().min(31)) as usize).map_or(0, |i| i.line)),
                });
            }
            for i in 0..self.warps.len() {
                if self.warps[i].runnable() != 0 {
                    let mut w = std::mem::take(&mut self.warps[i]);
                    let r = self.run_warp(&mut w);
                    self.warps[i] = w;
                    r?;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if self.warps.iter().all(|w| w.live() == 0) {
            return Ok(());
        }
        Err(self.diagnose_stall())
    }

    fn thread_of(&self, w: &Warp, lane: u32) -> [u32; 3] {
        w.tid[lane as usize]
    }

    fn site(&self, w: &Warp, lane: u32, pc: u32) -> Site {
        Site {
            kernel: self.l.kernel.name.clone(),
            block: self.ctaid,
            thread: self.thread_of(w, lane),
            line: self.l.kernel.code.get(pc as usize).map_or(0, |i| i.line),
        }
    }

    fn exec_err(&self, w: &Warp, lane: u32, pc: u32, message: String) -> SimError {
        SimError::Execution { site: self.site(w, lane, pc), instr: self.l.kernel.instr_text(pc as usize), message }
    }

    fn diagnose_stall(&self) -> SimError {
        let k = self.l.kernel;
        for b in &self.bars {
            if b.arrived > 0 {
                // Name one thread that will never arrive.
                let mut who = String::new();
                'outer: for w in &self.warps {
                    for lane in Bits(w.valid) {
                        let here = b.waiting[w.id as usize] & (1 << lane) != 0;
                        if !here {
                            let [x, y, z] = w.tid[lane as usize];
                            who = if w.exited & (1 << lane) != 0 {
                                format!("; thread ({x},{y},{z}) exited without reaching it")
                            } else {
                                let line = k.code.get(w.lane_pc(lane) as usize).map_or(0, |i| i.line);
                                format!("; thread ({x},{y},{z}) is waiting at PTX line {line}")
                            };
                            break 'outer;
                        }
                    }
                }
                return SimError::Barrier {
                    kernel: k.name.clone(),
                    block: self.ctaid,
                    line: b.line,
                    message: format!("{} of {} threads arrived and the rest never will{who}", b.arrived, b.expected),
                };
            }
        }
        for w in &self.warps {
            if w.coll_wait != 0 {
                let lane = w.coll_wait.trailing_zeros();
                let pc = w.lane_pc(lane);
                return self.exec_err(w, lane, pc, format!("warp collective never completes: lanes {:#010x} wait here, the rest of the member mask never arrives", w.coll_wait));
            }
        }
        SimError::Execution {
            site: Site { kernel: k.name.clone(), block: self.ctaid, thread: [0; 3], line: 0 },
            instr: String::new(),
            message: "block stalled".into(),
        }
    }

    #[inline(always)]
    fn val(&self, w: &Warp, o: Operand, lane: u32) -> u64 {
        match o {
            Operand::Reg(r) => w.r(r, lane),
            Operand::Imm(v) => v,
            Operand::Sreg(s) => self.sreg(w, s, lane),
        }
    }

    fn sreg(&self, w: &Warp, s: Sreg, lane: u32) -> u64 {
        let l = self.l;
        match s {
            Sreg::Tid(d) => w.tid[lane as usize][d as usize] as u64,
            Sreg::Ntid(d) => l.block[d as usize] as u64,
            Sreg::Ctaid(d) => self.ctaid[d as usize] as u64,
            Sreg::Nctaid(d) => l.grid[d as usize] as u64,
            Sreg::LaneId => lane as u64,
            Sreg::WarpId => w.id as u64,
            Sreg::NWarpId => self.warps.len().max(1) as u64,
            Sreg::SmId => 0,
            Sreg::LaneMaskEq => 1u64 << lane,
            Sreg::LaneMaskLt => (1u64 << lane) - 1,
            Sreg::LaneMaskLe => ((1u64 << lane) << 1).wrapping_sub(1) & 0xFFFF_FFFF,
            Sreg::LaneMaskGt => !(((1u64 << lane) << 1).wrapping_sub(1)) & 0xFFFF_FFFF,
            Sreg::LaneMaskGe => !((1u64 << lane) - 1) & 0xFFFF_FFFF,
            Sreg::Clock => w.clock & 0xFFFF_FFFF,
            Sreg::Clock64 | Sreg::GlobalTimer => w.clock,
            Sreg::DynamicSmemSize => l.dyn_smem as u64,
            Sreg::TotalSmemSize => l.smem_bytes() as u64,
        }
    }

    #[inline(always)]
    fn map1(&self, w: &mut Warp, exec: u32, d: u32, a: Operand, f: impl Fn(u64) -> u64) {
        if let Operand::Reg(ra) = a {
            for l in Bits(exec) {
                let v = f(w.r(ra, l));
                w.set(d, l, v);
            }
        } else {
            for l in Bits(exec) {
                let v = f(self.val(w, a, l));
                w.set(d, l, v);
            }
        }
    }

    #[inline(always)]
    fn map2(&self, w: &mut Warp, exec: u32, d: u32, a: Operand, b: Operand, f: impl Fn(u64, u64) -> u64) {
        match (a, b) {
            (Operand::Reg(ra), Operand::Reg(rb)) => {
                for l in Bits(exec) {
                    let v = f(w.r(ra, l), w.r(rb, l));
                    w.set(d, l, v);
                }
            }
            (Operand::Reg(ra), Operand::Imm(ib)) => {
                for l in Bits(exec) {
                    let v = f(w.r(ra, l), ib);
                    w.set(d, l, v);
                }
            }
            _ => {
                for l in Bits(exec) {
                    let v = f(self.val(w, a, l), self.val(w, b, l));
                    w.set(d, l, v);
                }
            }
        }
    }

    // A three-source ALU instruction's decoded operands and its per-lane operation.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn map3(&self, w: &mut Warp, exec: u32, d: u32, a: Operand, b: Operand, c: Operand, f: impl Fn(u64, u64, u64) -> u64) {
        for l in Bits(exec) {
            let v = f(self.val(w, a, l), self.val(w, b, l), self.val(w, c, l));
            w.set(d, l, v);
        }
    }

    fn run_warp(&mut self, w: &mut Warp) -> Result<()> {
        let code = &self.l.kernel.code;
        let mut budget = QUANTUM;
        loop {
            let runnable = w.runnable();
            if runnable == 0 || budget == 0 {
                return Ok(());
            }
            budget -= 1;
            let (pc, active) = if w.uniform { (w.pc, runnable) } else { w.pick(runnable) };
            let ins = &code[pc as usize];
            let exec = match ins.guard {
                None => active,
                Some((p, neg)) => {
                    let mut m = 0;
                    for l in Bits(active) {
                        if (w.r(p, l) & 1 != 0) != neg {
                            m |= 1 << l;
                        }
                    }
                    m
                }
            };
            w.clock += 1;
            let c = &mut self.counters;
            c.warp_instructions += 1;
            c.thread_instructions += exec.count_ones() as u64;
            match ins.op.class() {
                Class::Alu => c.alu += 1,
                Class::Sfu => c.sfu += 1,
                Class::Mma => c.mma += 1,
                Class::Barrier => c.barriers += 1,
                Class::Control => c.control += 1,
                Class::Mem => {}
            }
            self.step(w, &ins.op, pc, active, exec)?;
        }
    }

    /// Executes one instruction for `exec` (the guard-true subset of `active`) and moves
    /// the lanes on.
    fn step(&mut self, w: &mut Warp, op: &Op, pc: u32, active: u32, exec: u32) -> Result<()> {
        let next = pc + 1;
        match *op {
            Op::Mov { d, a, bits } => {
                let m = alu::mask(bits);
                self.map1(w, exec, d, a, |x| x & m);
            }
            Op::Unpack { ds, n, a, part_bits } => {
                let m = alu::mask(part_bits);
                for l in Bits(exec) {
                    let v = self.val(w, a, l);
                    for (i, d) in ds.iter().take(n as usize).enumerate() {
                        if let Some(d) = d {
                            w.set(*d, l, (v >> (i as u32 * part_bits)) & m);
                        }
                    }
                }
            }
            Op::Pack { d, parts, n, part_bits } => {
                let m = alu::mask(part_bits);
                for l in Bits(exec) {
                    let mut v = 0u64;
                    for (i, p) in parts.iter().take(n as usize).enumerate() {
                        v |= (self.val(w, *p, l) & m) << (i as u32 * part_bits);
                    }
                    w.set(d, l, v);
                }
            }
            Op::IntUn { op, ty, d, a } => self.map1(w, exec, d, a, |x| alu::int_un(op, ty, x)),
            Op::IntBin { op, ty, d, a, b } => match (op, ty.bits()) {
                // The hottest integer forms get their own loops.
                (IntBin::Add, 32) => self.map2(w, exec, d, a, b, |x, y| (x as u32).wrapping_add(y as u32) as u64),
                (IntBin::Add, 64) => self.map2(w, exec, d, a, b, |x, y| x.wrapping_add(y)),
                (IntBin::And, 32) => self.map2(w, exec, d, a, b, |x, y| (x & y) & 0xFFFF_FFFF),
                (IntBin::Xor, 32) => self.map2(w, exec, d, a, b, |x, y| (x ^ y) & 0xFFFF_FFFF),
                (IntBin::MulLo, 32) => self.map2(w, exec, d, a, b, |x, y| (x as u32).wrapping_mul(y as u32) as u64),
                _ => self.map2(w, exec, d, a, b, |x, y| alu::int_bin(op, ty, x, y)),
            },
            Op::IntTern { op, ty, d, a, b, c } => match (op, ty.bits()) {
                (IntTern::MadLo, 32) => {
                    self.map3(w, exec, d, a, b, c, |x, y, z| (x as u32).wrapping_mul(y as u32).wrapping_add(z as u32) as u64)
                }
                _ => self.map3(w, exec, d, a, b, c, |x, y, z| alu::int_tern(op, ty, x, y, z)),
            },
            Op::Bfi { ty, d, a, b, c, e } => {
                for l in Bits(exec) {
                    let v = alu::bfi(ty, self.val(w, a, l), self.val(w, b, l), self.val(w, c, l), self.val(w, e, l));
                    w.set(d, l, v);
                }
            }
            Op::FBin { op, ty, rnd, ftz, sat, d, a, b, .. } => {
                // The softmax and scaling forms of attention kernels (f32, round to nearest,
                // no saturation) get loops of their own; everything else goes through fbin.
                let fast = ty == Ty::F32 && matches!(rnd, Rnd::Default | Rnd::Rn) && !sat;
                let f = |x: u64| f32::from_bits(x as u32);
                let z = |x: f32| if ftz { float::ftz32(x) } else { x };
                match (fast, op) {
                    (true, FBin::Add) => self.map2(w, exec, d, a, b, |x, y| z(z(f(x)) + z(f(y))).to_bits() as u64),
                    (true, FBin::Sub) => self.map2(w, exec, d, a, b, |x, y| z(z(f(x)) - z(f(y))).to_bits() as u64),
                    (true, FBin::Mul) => self.map2(w, exec, d, a, b, |x, y| z(z(f(x)) * z(f(y))).to_bits() as u64),
                    _ => self.map2(w, exec, d, a, b, |x, y| alu::fbin(op, ty, rnd, ftz, sat, x, y)),
                }
            }
            Op::FUn { op, ty, ftz, d, a } => self.map1(w, exec, d, a, |x| alu::fun(op, ty, ftz, x)),
            Op::Fma { ty, rnd, ftz, sat, relu, d, a, b, c } => {
                self.map3(w, exec, d, a, b, c, |x, y, z| alu::fma(ty, rnd, ftz, sat, relu, x, y, z));
            }
            Op::Setp { cmp, ty, ftz, d, d2, a, b, combine } => {
                for l in Bits(exec) {
                    let t = alu::compare(cmp, ty, ftz, self.val(w, a, l), self.val(w, b, l));
                    let (p, q) = match combine {
                        None => (t, !t),
                        Some((bop, c, neg)) => {
                            let cv = (self.val(w, c, l) & 1 != 0) != neg;
                            let f = |x: bool| match bop {
                                BoolOp::And => x && cv,
                                BoolOp::Or => x || cv,
                                BoolOp::Xor => x ^ cv,
                            };
                            (f(t), f(!t))
                        }
                    };
                    w.set(d, l, p as u64);
                    if let Some(d2) = d2 {
                        w.set(d2, l, q as u64);
                    }
                }
            }
            Op::Selp { d, a, b, p, bits } => {
                let m = alu::mask(bits);
                self.map3(w, exec, d, a, b, p, |x, y, z| if z & 1 != 0 { x & m } else { y & m });
            }
            Op::PredLogic { op, d, a, b } => self.map2(w, exec, d, a, b, |x, y| match op {
                None => (x & 1) ^ 1,
                Some(BoolOp::And) => x & y & 1,
                Some(BoolOp::Or) => (x | y) & 1,
                Some(BoolOp::Xor) => (x ^ y) & 1,
            }),
            Op::Cvt { dty, sty, rnd, int_rnd, ftz, sat, d, a } => {
                self.map1(w, exec, d, a, |x| alu::cvt(dty, sty, rnd, int_rnd, ftz, sat, x));
            }
            Op::CvtPack { dty, rnd, relu, d, a, b } => self.map2(w, exec, d, a, b, |x, y| alu::cvt_pack(dty, rnd, relu, x, y)),
            Op::Cvta { to, space, d, a } => {
                let base = match space {
                    Space::Shared => SHARED_WINDOW,
                    Space::Local => LOCAL_WINDOW,
                    Space::Param => PARAM_WINDOW,
                    _ => 0,
                };
                self.map1(w, exec, d, a, |x| if to { x.wrapping_sub(base) } else { x.wrapping_add(base) });
            }
            Op::Ld { space, ty, n, ds, addr, .. } => self.load(w, pc, exec, space, ty, n, ds, addr)?,
            Op::St { space, ty, n, srcs, addr, .. } => self.store(w, pc, exec, space, ty, n, srcs, addr)?,
            Op::Atom { space, op, ty, d, addr, b, c, .. } => self.atom(w, pc, exec, space, op, ty, d, addr, b, c)?,
            Op::Bar { id, count } => {
                return self.barrier(w, pc, active, exec, id, count);
            }
            Op::BarWarp { mask } => return self.warp_collective(w, pc, active, exec, mask, None),
            Op::Shfl { .. } | Op::Vote { .. } | Op::Redux { .. } => {
                let mask = match *op {
                    Op::Shfl { mask, .. } | Op::Vote { mask, .. } | Op::Redux { mask, .. } => mask,
                    _ => unreachable!("matched above"),
                };
                return self.warp_collective(w, pc, active, exec, mask, Some(op));
            }
            Op::Activemask { d } => {
                for l in Bits(exec) {
                    w.set(d, l, active as u64);
                }
            }
            Op::Mma { .. } => {
                self.full_warp(w, pc, exec, "mma.sync.aligned")?;
                let (ds, nd, vals) = tensor::mma(op, |o, l| self.val(w, o, l));
                for (d, v) in ds.iter().zip(vals.iter()).take(nd) {
                    for l in 0..32 {
                        w.set(*d, l, v[l as usize]);
                    }
                }
            }
            Op::Ldmatrix { num, trans, ds, addr, space } => {
                self.full_warp(w, pc, exec, "ldmatrix.sync.aligned")?;
                self.ldmatrix(w, pc, num, trans, ds, addr, space)?;
            }
            Op::CpAsync { bytes, dst, src, src_size, ignore_src, .. } => self.cp_async(w, pc, exec, bytes, dst, src, src_size, ignore_src)?,
            Op::CpAsyncCommit => self.cp_async_commit(w, exec),
            Op::CpAsyncWait { n } => self.cp_async_wait(w, pc, exec, Some(n))?,
            Op::CpAsyncWaitAll => self.cp_async_wait(w, pc, exec, None)?,
            Op::Bra { target } => {
                if exec == active {
                    w.advance(active, target);
                } else {
                    w.advance(exec, target);
                    w.advance(active & !exec, next);
                }
                return Ok(());
            }
            Op::Call { target, ref copy_in, .. } => {
                if w.stacks.is_empty() {
                    w.stacks = vec![Vec::new(); 32];
                }
                for l in Bits(exec) {
                    if w.stacks[l as usize].len() >= MAX_CALL_DEPTH {
                        return Err(self.exec_err(w, l, pc, format!("call depth exceeds {MAX_CALL_DEPTH}")));
                    }
                    self.copy_slots(w, l, pc, copy_in)?;
                    w.stacks[l as usize].push(next);
                }
                w.advance(exec, target);
                w.advance(active & !exec, next);
                return Ok(());
            }
            Op::Ret => {
                let code = &self.l.kernel.code;
                for l in Bits(exec) {
                    match w.stacks.get_mut(l as usize).and_then(|s| s.pop()) {
                        // A return with no caller ends the thread.
                        None => w.exited |= 1 << l,
                        Some(back) => {
                            if let Some(Op::Call { copy_out, .. }) = code.get(back as usize - 1).map(|i| &i.op) {
                                self.copy_slots(w, l, pc, copy_out)?;
                            }
                            w.advance(1 << l, back);
                        }
                    }
                }
                w.advance(active & !exec, next);
                if !w.uniform {
                    w.try_converge();
                }
                return Ok(());
            }
            Op::Exit => {
                w.exited |= exec;
                w.advance(active & !exec, next);
                if exec != 0 && !w.uniform {
                    w.try_converge();
                }
                return Ok(());
            }
            Op::Nop => {}
        }
        w.advance(active, next);
        Ok(())
    }

    /// Copies call slots (src, dst, bytes) inside one thread's local memory.
    fn copy_slots(&mut self, w: &Warp, lane: u32, pc: u32, slots: &[(u32, u32, u32)]) -> Result<()> {
        let per = self.l.kernel.local_bytes as usize;
        let base = self.lin(w, lane) * per;
        for &(src, dst, n) in slots {
            let (src, dst, n) = (src as usize, dst as usize, n as usize);
            if src + n > per || dst + n > per {
                return Err(self.exec_err(w, lane, pc, format!("call slot copy of {n} bytes outside the {per} bytes of local memory")));
            }
            self.local.copy_within(base + src..base + src + n, base + dst);
        }
        Ok(())
    }

    fn lin(&self, w: &Warp, lane: u32) -> usize {
        (w.id * 32 + lane) as usize
    }

    fn full_warp(&self, w: &Warp, pc: u32, exec: u32, what: &str) -> Result<()> {
        if exec != u32::MAX {
            let lane = (!exec).trailing_zeros().min(31);
            return Err(self.exec_err(w, lane, pc, format!("{what} needs all 32 lanes of the warp converged; active lanes are {exec:#010x}")));
        }
        Ok(())
    }
}
