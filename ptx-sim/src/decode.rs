//! Turns one instruction (opcode with its modifiers, operands as written) into an `ir::Op`.
//! Errors are plain messages; the caller adds the line and the opcode.
//!
//! Also holds the names visible while decoding (`Ctx`: registers by scope, symbols as
//! `Sym` addresses). Layering of the parser, each module using only those before it:
//! `lex` -> `syntax` (operands as written, `Opnd`) -> `qualifiers` (the qualifier tables of
//! the instructions with cache hints) -> `decode` -> `body` -> `parse`.

use crate::ir::*;
use crate::qualifiers::{self, CreatePolicy};
use crate::syntax::Opnd;
use std::collections::HashMap;

/// What a symbol name stands for once memory is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sym {
    /// Offset in the kernel parameter buffer (param-space address).
    Param(u64),
    /// Shared-space address.
    Shared(u64),
    /// `.extern .shared` before the static layout of the kernel is known.
    DynShared,
    /// Local-space address (per thread).
    Local(u64),
    /// Global address of a module-level `.global` / `.const` variable.
    Global(u64),
    /// A `.param` of a device-function call (argument, return value or the callee's own
    /// parameter): a per-thread local-memory slot (offset, size).
    CallParam(u64, u32),
}

impl Sym {
    fn addr(self) -> u64 {
        match self {
            Sym::Param(a) | Sym::Shared(a) | Sym::Local(a) | Sym::Global(a) | Sym::CallParam(a, _) => a,
            Sym::DynShared => 0,
        }
    }
}

/// Names visible while decoding one function.
pub(crate) struct Ctx {
    pub syms: HashMap<String, Sym>,
    /// Register scopes, innermost last: a name maps to (first index, count); a plain name
    /// has count 0, a parameterized `%r<N>` is stored under `%r<>` with count N.
    pub scopes: Vec<HashMap<String, (u32, u32)>>,
    pub nregs: u32,
    /// Register indices declared `.pred` (an operand slot that takes either a value or a
    /// predicate, like cp.async's last one, is told apart by this).
    pub preds: std::collections::HashSet<u32>,
}

impl Ctx {
    pub(crate) fn declare(&mut self, name: &str) {
        let idx = self.nregs;
        self.nregs += 1;
        if let Some(s) = self.scopes.last_mut() {
            s.insert(name.to_string(), (idx, 0));
        }
    }

    pub(crate) fn declare_range(&mut self, prefix: &str, n: u32) {
        let idx = self.nregs;
        self.nregs += n;
        if let Some(s) = self.scopes.last_mut() {
            s.insert(format!("{prefix}<>"), (idx, n));
        }
    }

    /// The register index of a name, searching from the innermost scope.
    pub(crate) fn reg(&self, name: &str) -> Option<u32> {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, num) = name.split_at(name.len() - digits);
        let num: Option<u32> = if digits > 0 { num.parse().ok() } else { None };
        for scope in self.scopes.iter().rev() {
            if let Some(&(idx, 0)) = scope.get(name) {
                return Some(idx);
            }
            if let Some(n) = num {
                if let Some(&(base, count)) = scope.get(&format!("{prefix}<>")) {
                    if n < count {
                        return Some(base + n);
                    }
                }
            }
        }
        None
    }

    fn scratch(&mut self) -> u32 {
        let idx = self.nregs;
        self.nregs += 1;
        idx
    }

    fn dst(&mut self, o: &Opnd) -> Result<u32, String> {
        match o {
            Opnd::Name(n) => self.reg(n).ok_or_else(|| format!("unknown register `{n}`")),
            Opnd::Sink => Ok(self.scratch()),
            other => Err(format!("expected a destination register, found {other:?}")),
        }
    }

    /// A source operand; float literals are narrowed to `ty` when it is f32 / f16.
    fn src(&self, o: &Opnd, ty: Option<Ty>) -> Result<Operand, String> {
        Ok(match o {
            Opnd::Name(n) => {
                if let Some(r) = self.reg(n) {
                    Operand::Reg(r)
                } else if let Some(s) = sreg(n) {
                    Operand::Sreg(s)
                } else if let Some(s) = self.syms.get(n) {
                    Operand::Imm(s.addr())
                } else {
                    return Err(format!("unknown name `{n}`"));
                }
            }
            Opnd::NamePlus(n, off) => match self.syms.get(n) {
                Some(s) => Operand::Imm(s.addr().wrapping_add(*off as u64)),
                None => return Err(format!("unknown symbol `{n}`")),
            },
            Opnd::Int(v) => Operand::Imm(*v),
            Opnd::F32(b) => match ty {
                Some(Ty::F64) => Operand::Imm((f32::from_bits(*b) as f64).to_bits()),
                _ => Operand::Imm(*b as u64),
            },
            Opnd::F64(b) => match ty {
                Some(Ty::F32) => Operand::Imm((f64::from_bits(*b) as f32).to_bits() as u64),
                _ => Operand::Imm(*b),
            },
            other => return Err(format!("unexpected operand {other:?}")),
        })
    }

    /// `ld.param` / `st.param` on a device-function call slot really access local memory.
    fn param_space(&self, space: Space, o: &Opnd) -> Space {
        match (space, o) {
            (Space::Param, Opnd::Mem(Some(n), _)) if matches!(self.syms.get(n), Some(Sym::CallParam(..))) => Space::Local,
            _ => space,
        }
    }

    fn addr(&self, o: &Opnd) -> Result<Addr, String> {
        match o {
            Opnd::Mem(None, off) => Ok(Addr { base: None, offset: *off }),
            Opnd::Mem(Some(n), off) => {
                if let Some(r) = self.reg(n) {
                    Ok(Addr { base: Some(r), offset: *off })
                } else if let Some(s) = self.syms.get(n) {
                    Ok(Addr { base: None, offset: (s.addr() as i64).wrapping_add(*off) })
                } else {
                    Err(format!("unknown address base `{n}`"))
                }
            }
            other => Err(format!("expected an address, found {other:?}")),
        }
    }
}

fn sreg(n: &str) -> Option<Sreg> {
    let dim = |s: &str| match s {
        "x" => Some(0u8),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((base, d)) = n.split_once('.') {
        let d = dim(d)?;
        return match base {
            "%tid" => Some(Sreg::Tid(d)),
            "%ntid" => Some(Sreg::Ntid(d)),
            "%ctaid" => Some(Sreg::Ctaid(d)),
            "%nctaid" => Some(Sreg::Nctaid(d)),
            _ => None,
        };
    }
    Some(match n {
        "%laneid" => Sreg::LaneId,
        "%warpid" => Sreg::WarpId,
        "%nwarpid" => Sreg::NWarpId,
        "%smid" => Sreg::SmId,
        "%lanemask_eq" => Sreg::LaneMaskEq,
        "%lanemask_lt" => Sreg::LaneMaskLt,
        "%lanemask_le" => Sreg::LaneMaskLe,
        "%lanemask_gt" => Sreg::LaneMaskGt,
        "%lanemask_ge" => Sreg::LaneMaskGe,
        "%clock" => Sreg::Clock,
        "%clock64" => Sreg::Clock64,
        "%globaltimer" => Sreg::GlobalTimer,
        "%dynamic_smem_size" => Sreg::DynamicSmemSize,
        "%total_smem_size" => Sreg::TotalSmemSize,
        _ => return None,
    })
}

/// The parsed modifier list of an opcode.
struct Mods<'a> {
    parts: Vec<&'a str>,
}

impl<'a> Mods<'a> {
    fn has(&self, m: &str) -> bool {
        self.parts.contains(&m)
    }
    /// All type suffixes in order.
    fn types(&self) -> Vec<Ty> {
        self.parts.iter().filter_map(|p| Ty::parse(p)).collect()
    }
    fn ty(&self) -> Result<Ty, String> {
        self.types().last().copied().ok_or_else(|| "missing type suffix".to_string())
    }
    fn space(&self) -> Space {
        for p in &self.parts {
            let base = p.split("::").next().unwrap_or(p);
            match base {
                "global" => return Space::Global,
                "shared" => return Space::Shared,
                "local" => return Space::Local,
                "param" => return Space::Param,
                "const" => return Space::Const,
                _ => {}
            }
        }
        Space::Generic
    }
    fn rnd(&self) -> (Rnd, bool) {
        for p in &self.parts {
            match *p {
                "rn" => return (Rnd::Rn, false),
                "rz" => return (Rnd::Rz, false),
                "rm" => return (Rnd::Rm, false),
                "rp" => return (Rnd::Rp, false),
                "rna" => return (Rnd::Rna, false),
                "rni" => return (Rnd::Rn, true),
                "rzi" => return (Rnd::Rz, true),
                "rmi" => return (Rnd::Rm, true),
                "rpi" => return (Rnd::Rp, true),
                _ => {}
            }
        }
        (Rnd::Default, false)
    }
    fn vec(&self) -> u8 {
        if self.has("v4") {
            4
        } else if self.has("v2") {
            2
        } else {
            1
        }
    }
}

fn want(ops: &[Opnd], n: usize) -> Result<(), String> {
    if ops.len() == n {
        Ok(())
    } else {
        Err(format!("expected {n} operands, found {}", ops.len()))
    }
}

/// The operands of an instruction that takes `n` operands plus, with `.L2::cache_hint`, a
/// trailing 64-bit cache-policy operand (PTX ISA: the qualifier and the operand go
/// together); returns that operand.
fn policy_operand(ctx: &Ctx, ops: &[Opnd], n: usize, cache_hint: bool) -> Result<Option<Operand>, String> {
    if cache_hint {
        if ops.len() == n {
            return Err(".L2::cache_hint needs a cache-policy operand".into());
        }
        want(ops, n + 1)?;
        return Ok(Some(ctx.src(&ops[n], None)?));
    }
    if ops.len() == n + 1 {
        return Err("an extra (cache-policy) operand needs the .L2::cache_hint qualifier".into());
    }
    want(ops, n)?;
    Ok(None)
}

/// `.L2::cache_hint` and the prefetch sizes apply to global memory only (PTX ISA, ld / st:
/// ".global state space and generic addressing"); on another named space they are an error.
fn global_only(space: Space, hint: &CacheHint, cache_hint: bool) -> Result<(), String> {
    if matches!(space, Space::Global | Space::Generic) {
        return Ok(());
    }
    if cache_hint {
        return Err(format!(".L2::cache_hint needs .global or generic addressing, not .{}", space.name()));
    }
    if hint.prefetch_bytes > 0 {
        return Err(format!(".L2::{}B needs .global or generic addressing, not .{}", hint.prefetch_bytes, space.name()));
    }
    Ok(())
}

/// A `createpolicy.fractional` fraction: an immediate in (0, 1] (integer 1 allowed).
fn fraction_of(o: &Opnd) -> Result<f32, String> {
    let f = match o {
        Opnd::F32(b) => f32::from_bits(*b),
        Opnd::F64(b) => f64::from_bits(*b) as f32,
        Opnd::Int(v) => *v as f32,
        _ => return Err("the createpolicy fraction must be an immediate".into()),
    };
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("the createpolicy fraction {f} is outside (0, 1]"))
    }
}

fn cmp_of(s: &str) -> Option<Cmp> {
    Some(match s {
        "eq" => Cmp::Eq,
        "ne" => Cmp::Ne,
        "lt" => Cmp::Lt,
        "le" => Cmp::Le,
        "gt" => Cmp::Gt,
        "ge" => Cmp::Ge,
        "lo" => Cmp::Lo,
        "ls" => Cmp::Ls,
        "hi" => Cmp::Hi,
        "hs" => Cmp::Hs,
        "equ" => Cmp::Equ,
        "neu" => Cmp::Neu,
        "ltu" => Cmp::Ltu,
        "leu" => Cmp::Leu,
        "gtu" => Cmp::Gtu,
        "geu" => Cmp::Geu,
        "num" => Cmp::Num,
        "nan" => Cmp::Nan,
        _ => return None,
    })
}

fn bool_of(s: &str) -> Option<BoolOp> {
    Some(match s {
        "and" => BoolOp::And,
        "or" => BoolOp::Or,
        "xor" => BoolOp::Xor,
        _ => return None,
    })
}

/// Registers of a `{...}` list (or a single register) as destinations, at most 4.
fn dst_list(ctx: &mut Ctx, o: &Opnd) -> Result<([Option<u32>; 4], u8), String> {
    let mut out = [None; 4];
    match o {
        Opnd::Vector(v) => {
            if v.len() > 4 {
                return Err("more than 4 vector elements".into());
            }
            for (i, e) in v.iter().enumerate() {
                out[i] = Some(ctx.dst(e)?);
            }
            Ok((out, v.len() as u8))
        }
        other => {
            out[0] = Some(ctx.dst(other)?);
            Ok((out, 1))
        }
    }
}

fn src_list(ctx: &Ctx, o: &Opnd, ty: Option<Ty>) -> Result<([Operand; 4], u8), String> {
    let mut out = [Operand::Imm(0); 4];
    match o {
        Opnd::Vector(v) => {
            if v.len() > 4 {
                return Err("more than 4 vector elements".into());
            }
            for (i, e) in v.iter().enumerate() {
                out[i] = ctx.src(e, ty)?;
            }
            Ok((out, v.len() as u8))
        }
        other => {
            out[0] = ctx.src(other, ty)?;
            Ok((out, 1))
        }
    }
}

/// Decodes one instruction.
pub(crate) fn decode(opcode: &str, ops: &[Opnd], ctx: &mut Ctx) -> Result<Op, String> {
    let mut it = opcode.split('.');
    let base = it.next().unwrap_or("");
    let m = Mods { parts: it.collect() };
    let op = decode_op(base, &m, ops, ctx)?;
    // After decoding, so that an instruction the simulator lacks is reported as such rather
    // than by one of its qualifiers.
    match base {
        // Checked against their own tables (`qualifiers`) while decoding.
        "ld" | "ldu" | "st" | "cp" | "prefetch" | "prefetchu" | "createpolicy" => {}
        // Executed as no-ops, whatever their qualifiers.
        "membar" | "fence" | "nanosleep" | "pmevent" | "griddepcontrol" => {}
        "atom" | "red" => qualifiers::check_subqualifiers(base, &m.parts, &["L2::cache_hint"])?,
        _ => qualifiers::check_subqualifiers(base, &m.parts, &[])?,
    }
    Ok(op)
}

fn decode_op(base: &str, m: &Mods, ops: &[Opnd], ctx: &mut Ctx) -> Result<Op, String> {
    match base {
        "mov" => {
            want(ops, 2)?;
            let ty = m.ty()?;
            let bits = ty.bits();
            match (&ops[0], &ops[1]) {
                (Opnd::Vector(v), a) => {
                    let (ds, n) = dst_list(ctx, &ops[0])?;
                    Ok(Op::Unpack { ds, n, a: ctx.src(a, Some(ty))?, part_bits: bits / v.len() as u32 })
                }
                (d, Opnd::Vector(v)) => {
                    let (parts, n) = src_list(ctx, &ops[1], None)?;
                    Ok(Op::Pack { d: ctx.dst(d)?, parts, n, part_bits: bits / v.len() as u32 })
                }
                (d, a) => Ok(Op::Mov { d: ctx.dst(d)?, a: ctx.src(a, Some(ty))?, bits }),
            }
        }
        "ld" | "ldu" => {
            let (mut hint, cache_hint) = qualifiers::check(if base == "ld" { &qualifiers::LD } else { &qualifiers::LDU }, &m.parts)?;
            if m.has("v8") || m.has("b128") {
                return Err(".v8 and .b128 accesses are not supported".into());
            }
            global_only(m.space(), &hint, cache_hint)?;
            hint.policy = policy_operand(ctx, ops, 2, cache_hint)?;
            let ty = m.ty()?;
            let (ds, n) = dst_list(ctx, &ops[0])?;
            if n != m.vec() {
                return Err("vector width does not match the destination list".into());
            }
            Ok(Op::Ld { space: ctx.param_space(m.space(), &ops[1]), ty, n, ds, addr: ctx.addr(&ops[1])?, hint })
        }
        "st" => {
            let (mut hint, cache_hint) = qualifiers::check(&qualifiers::ST, &m.parts)?;
            if m.has("v8") || m.has("b128") {
                return Err(".v8 and .b128 accesses are not supported".into());
            }
            global_only(m.space(), &hint, cache_hint)?;
            hint.policy = policy_operand(ctx, ops, 2, cache_hint)?;
            let ty = m.ty()?;
            let (srcs, n) = src_list(ctx, &ops[1], Some(ty))?;
            if n != m.vec() {
                return Err("vector width does not match the source list".into());
            }
            Ok(Op::St { space: ctx.param_space(m.space(), &ops[0]), ty, n, srcs, addr: ctx.addr(&ops[0])?, hint })
        }
        "add" | "sub" | "mul" | "div" | "rem" | "min" | "max" | "and" | "or" | "xor" | "shl" | "shr" => {
            let ty = m.ty()?;
            if ty == Ty::Pred {
                want(ops, 3)?;
                let op = bool_of(base).ok_or("not a predicate operation")?;
                return Ok(Op::PredLogic { op: Some(op), d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], None)?, b: ctx.src(&ops[2], None)? });
            }
            want(ops, 3)?;
            let d = ctx.dst(&ops[0])?;
            let a = ctx.src(&ops[1], Some(ty))?;
            let b = ctx.src(&ops[2], Some(ty))?;
            if ty.is_float() {
                let op = match base {
                    "add" => FBin::Add,
                    "sub" => FBin::Sub,
                    "mul" => FBin::Mul,
                    "div" => FBin::Div,
                    "min" => FBin::Min,
                    "max" => FBin::Max,
                    _ => return Err("not a float operation".into()),
                };
                let (rnd, _) = m.rnd();
                return Ok(Op::FBin { op, ty, rnd, ftz: m.has("ftz"), sat: m.has("sat"), approx: m.has("approx"), d, a, b });
            }
            if m.has("cc") || m.has("sat") {
                return Err("carry and saturating integer forms are not supported".into());
            }
            let op = match base {
                "add" => IntBin::Add,
                "sub" => IntBin::Sub,
                "mul" if m.has("hi") => IntBin::MulHi,
                "mul" if m.has("wide") => IntBin::MulWide,
                "mul" => IntBin::MulLo,
                "div" => IntBin::Div,
                "rem" => IntBin::Rem,
                "min" => IntBin::Min,
                "max" => IntBin::Max,
                "and" => IntBin::And,
                "or" => IntBin::Or,
                "xor" => IntBin::Xor,
                "shl" => IntBin::Shl,
                _ => IntBin::Shr,
            };
            Ok(Op::IntBin { op, ty, d, a, b })
        }
        "mad" | "fma" => {
            want(ops, 4)?;
            let ty = m.ty()?;
            let d = ctx.dst(&ops[0])?;
            let a = ctx.src(&ops[1], Some(ty))?;
            let b = ctx.src(&ops[2], Some(ty))?;
            let c = ctx.src(&ops[3], Some(ty))?;
            if ty.is_float() {
                let (rnd, _) = m.rnd();
                return Ok(Op::Fma { ty, rnd, ftz: m.has("ftz"), sat: m.has("sat"), relu: m.has("relu"), d, a, b, c });
            }
            let op = if m.has("hi") {
                IntTern::MadHi
            } else if m.has("wide") {
                IntTern::MadWide
            } else {
                IntTern::MadLo
            };
            Ok(Op::IntTern { op, ty, d, a, b, c })
        }
        "not" | "cnot" | "neg" | "abs" | "popc" | "clz" | "brev" | "bfind" => {
            want(ops, 2)?;
            let ty = m.ty()?;
            let d = ctx.dst(&ops[0])?;
            let a = ctx.src(&ops[1], Some(ty))?;
            if ty == Ty::Pred && base == "not" {
                return Ok(Op::PredLogic { op: None, d, a, b: a });
            }
            if ty.is_float() {
                let op = if base == "neg" { FUn::Neg } else if base == "abs" { FUn::Abs } else { return Err("not a float operation".into()) };
                return Ok(Op::FUn { op, ty, ftz: m.has("ftz"), d, a });
            }
            let op = match base {
                "not" => IntUn::Not,
                "cnot" => IntUn::Cnot,
                "neg" => IntUn::Neg,
                "abs" => IntUn::Abs,
                "popc" => IntUn::Popc,
                "clz" => IntUn::Clz,
                "brev" => IntUn::Brev,
                _ if m.has("shiftamt") => IntUn::BfindShift,
                _ => IntUn::Bfind,
            };
            Ok(Op::IntUn { op, ty, d, a })
        }
        "rcp" | "sqrt" | "rsqrt" | "ex2" | "lg2" | "sin" | "cos" | "tanh" => {
            want(ops, 2)?;
            let ty = m.ty()?;
            let op = match base {
                "rcp" => FUn::Rcp,
                "sqrt" => FUn::Sqrt,
                "rsqrt" => FUn::Rsqrt,
                "ex2" => FUn::Ex2,
                "lg2" => FUn::Lg2,
                "sin" => FUn::Sin,
                "cos" => FUn::Cos,
                _ => FUn::Tanh,
            };
            Ok(Op::FUn { op, ty, ftz: m.has("ftz"), d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], Some(ty))? })
        }
        "bfe" | "prmt" | "lop3" => {
            let ty = m.ty()?;
            if base == "prmt" && m.parts.len() > 1 {
                return Err("prmt modes other than the default are not supported".into());
            }
            let op = match base {
                "bfe" => IntTern::Bfe,
                "prmt" => IntTern::Prmt,
                _ => {
                    want(ops, 5)?;
                    let lut = match &ops[4] {
                        Opnd::Int(v) => *v as u8,
                        _ => return Err("lop3 needs an immediate lut".into()),
                    };
                    IntTern::Lop3(lut)
                }
            };
            if base != "lop3" {
                want(ops, 4)?;
            }
            Ok(Op::IntTern {
                op,
                ty,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], None)?,
                b: ctx.src(&ops[2], None)?,
                c: ctx.src(&ops[3], None)?,
            })
        }
        "bfi" => {
            want(ops, 5)?;
            Ok(Op::Bfi {
                ty: m.ty()?,
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], None)?,
                b: ctx.src(&ops[2], None)?,
                c: ctx.src(&ops[3], None)?,
                e: ctx.src(&ops[4], None)?,
            })
        }
        "setp" => {
            let ty = m.ty()?;
            let cmp = m.parts.first().and_then(|p| cmp_of(p)).ok_or("missing comparison")?;
            let bop = m.parts.get(1).and_then(|p| bool_of(p));
            let (d, d2) = match &ops[0] {
                Opnd::Pipe(p, q) => (ctx.dst(&Opnd::Name(p.clone()))?, Some(ctx.dst(&Opnd::Name(q.clone()))?)),
                other => (ctx.dst(other)?, None),
            };
            let combine = match bop {
                Some(op) => {
                    want(ops, 4)?;
                    let (c, neg) = match &ops[3] {
                        Opnd::Not(n) => (ctx.src(&Opnd::Name(n.clone()), None)?, true),
                        other => (ctx.src(other, None)?, false),
                    };
                    Some((op, c, neg))
                }
                None => {
                    want(ops, 3)?;
                    None
                }
            };
            Ok(Op::Setp { cmp, ty, ftz: m.has("ftz"), d, d2, a: ctx.src(&ops[1], Some(ty))?, b: ctx.src(&ops[2], Some(ty))?, combine })
        }
        "selp" => {
            want(ops, 4)?;
            let ty = m.ty()?;
            Ok(Op::Selp {
                d: ctx.dst(&ops[0])?,
                a: ctx.src(&ops[1], Some(ty))?,
                b: ctx.src(&ops[2], Some(ty))?,
                p: ctx.src(&ops[3], None)?,
                bits: ty.bits(),
            })
        }
        "cvt" => {
            let types = m.types();
            let (rnd, int_rnd) = m.rnd();
            if types.len() != 2 {
                return Err("cvt needs a destination and a source type".into());
            }
            let (dty, sty) = (types[0], types[1]);
            if matches!(dty, Ty::F16x2 | Ty::Bf16x2) {
                want(ops, 3)?;
                return Ok(Op::CvtPack {
                    dty,
                    rnd,
                    relu: m.has("relu"),
                    d: ctx.dst(&ops[0])?,
                    a: ctx.src(&ops[1], Some(sty))?,
                    b: ctx.src(&ops[2], Some(sty))?,
                });
            }
            want(ops, 2)?;
            Ok(Op::Cvt { dty, sty, rnd, int_rnd, ftz: m.has("ftz"), sat: m.has("sat"), d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], Some(sty))? })
        }
        "cvta" => {
            want(ops, 2)?;
            let space = m.space();
            if space == Space::Generic {
                return Err("cvta needs a state space".into());
            }
            Ok(Op::Cvta { to: m.has("to"), space, d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], None)? })
        }
        "atom" | "red" => {
            let ty = m.ty()?;
            let op = if m.has("add") {
                AtomOp::Add
            } else if m.has("min") {
                AtomOp::Min
            } else if m.has("max") {
                AtomOp::Max
            } else if m.has("and") {
                AtomOp::And
            } else if m.has("or") {
                AtomOp::Or
            } else if m.has("xor") {
                AtomOp::Xor
            } else if m.has("exch") {
                AtomOp::Exch
            } else if m.has("cas") {
                AtomOp::Cas
            } else if m.has("inc") {
                AtomOp::Inc
            } else if m.has("dec") {
                AtomOp::Dec
            } else {
                return Err("unknown atomic operation".into());
            };
            if m.vec() != 1 || matches!(ty, Ty::F16x2 | Ty::Bf16x2 | Ty::F16 | Ty::Bf16) {
                return Err("vector and half-precision atomics are not supported".into());
            }
            let space = m.space();
            let cache_hint = m.has("L2::cache_hint");
            let hint = CacheHint::default();
            global_only(space, &hint, cache_hint)?;
            if base == "red" {
                let hint = CacheHint { policy: policy_operand(ctx, ops, 2, cache_hint)?, ..hint };
                return Ok(Op::Atom { space, op, ty, d: None, addr: ctx.addr(&ops[0])?, b: ctx.src(&ops[1], Some(ty))?, c: Operand::Imm(0), hint });
            }
            let n = if op == AtomOp::Cas { 4 } else { 3 };
            let hint = CacheHint { policy: policy_operand(ctx, ops, n, cache_hint)?, ..hint };
            let c = if n == 4 { ctx.src(&ops[3], Some(ty))? } else { Operand::Imm(0) };
            Ok(Op::Atom { space, op, ty, d: Some(ctx.dst(&ops[0])?), addr: ctx.addr(&ops[1])?, b: ctx.src(&ops[2], Some(ty))?, c, hint })
        }
        "bar" | "barrier" => {
            if m.has("warp") {
                want(ops, 1)?;
                return Ok(Op::BarWarp { mask: ctx.src(&ops[0], None)? });
            }
            if !(m.has("sync") || m.parts.is_empty() || m.parts == ["cta", "sync"] || m.parts == ["cta", "sync", "aligned"]) || m.has("arrive") || m.has("red") {
                return Err("only bar.sync / barrier.sync are supported".into());
            }
            let id = if ops.is_empty() { Operand::Imm(0) } else { ctx.src(&ops[0], None)? };
            let count = if ops.len() > 1 { Some(ctx.src(&ops[1], None)?) } else { None };
            Ok(Op::Bar { id, count })
        }
        "shfl" => {
            want(ops, 5)?;
            let mode = if m.has("idx") {
                ShflMode::Idx
            } else if m.has("up") {
                ShflMode::Up
            } else if m.has("down") {
                ShflMode::Down
            } else if m.has("bfly") {
                ShflMode::Bfly
            } else {
                return Err("unknown shfl mode".into());
            };
            if !m.has("sync") {
                return Err("shfl without .sync is not supported".into());
            }
            let (d, p) = match &ops[0] {
                Opnd::Pipe(a, b) => (ctx.dst(&Opnd::Name(a.clone()))?, Some(ctx.dst(&Opnd::Name(b.clone()))?)),
                other => (ctx.dst(other)?, None),
            };
            Ok(Op::Shfl {
                mode,
                d,
                p,
                a: ctx.src(&ops[1], None)?,
                b: ctx.src(&ops[2], None)?,
                c: ctx.src(&ops[3], None)?,
                mask: ctx.src(&ops[4], None)?,
            })
        }
        "vote" => {
            want(ops, 3)?;
            let mode = if m.has("all") {
                VoteMode::All
            } else if m.has("any") {
                VoteMode::Any
            } else if m.has("uni") {
                VoteMode::Uni
            } else if m.has("ballot") {
                VoteMode::Ballot
            } else {
                return Err("unknown vote mode".into());
            };
            let (p, negate) = match &ops[1] {
                Opnd::Not(n) => (ctx.src(&Opnd::Name(n.clone()), None)?, true),
                other => (ctx.src(other, None)?, false),
            };
            Ok(Op::Vote { mode, d: ctx.dst(&ops[0])?, p, negate, mask: ctx.src(&ops[2], None)? })
        }
        "redux" => {
            want(ops, 3)?;
            let ty = m.ty()?;
            let op = if m.has("add") {
                ReduxOp::Add
            } else if m.has("min") {
                ReduxOp::Min
            } else if m.has("max") {
                ReduxOp::Max
            } else if m.has("and") {
                ReduxOp::And
            } else if m.has("or") {
                ReduxOp::Or
            } else if m.has("xor") {
                ReduxOp::Xor
            } else {
                return Err("unknown redux operation".into());
            };
            if ty.is_float() {
                return Err("floating-point redux is not supported".into());
            }
            Ok(Op::Redux { op, ty, d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], None)?, mask: ctx.src(&ops[2], None)? })
        }
        "activemask" => {
            want(ops, 1)?;
            Ok(Op::Activemask { d: ctx.dst(&ops[0])? })
        }
        "mma" => decode_mma(m, ops, ctx),
        "ldmatrix" => {
            want(ops, 2)?;
            if !m.has("m8n8") || !m.has("b16") {
                return Err("only ldmatrix .m8n8 .b16 is supported".into());
            }
            let num = if m.has("x4") {
                4
            } else if m.has("x2") {
                2
            } else if m.has("x1") {
                1
            } else {
                return Err("ldmatrix needs .x1, .x2 or .x4".into());
            };
            let (d, n) = dst_list(ctx, &ops[0])?;
            if n != num {
                return Err("ldmatrix destination count does not match .x".into());
            }
            let mut ds = [0u32; 4];
            for i in 0..n as usize {
                ds[i] = d[i].unwrap_or(0);
            }
            let space = if m.space() == Space::Generic { Space::Generic } else { Space::Shared };
            Ok(Op::Ldmatrix { num, trans: m.has("trans"), ds, addr: ctx.addr(&ops[1])?, space })
        }
        "cp" => {
            if m.has("commit_group") {
                return Ok(Op::CpAsyncCommit);
            }
            if m.has("wait_all") {
                return Ok(Op::CpAsyncWaitAll);
            }
            if m.has("wait_group") {
                want(ops, 1)?;
                let n = match &ops[0] {
                    Opnd::Int(v) => *v as u32,
                    _ => return Err("wait_group needs an immediate".into()),
                };
                return Ok(Op::CpAsyncWait { n });
            }
            if !m.has("async") || m.has("bulk") {
                return Err("only cp.async (non-bulk) is supported".into());
            }
            if m.has("mbarrier") {
                return Err("cp.async.mbarrier.arrive is not supported".into());
            }
            decode_cp_async(m, ops, ctx)
        }
        "ret" | "exit" => Ok(Op::Exit),
        "prefetch" | "prefetchu" => {
            // A hint without an effect on results: checked, then executed as a no-op.
            qualifiers::check(if base == "prefetch" { &qualifiers::PREFETCH } else { &qualifiers::PREFETCHU }, &m.parts)?;
            want(ops, 1)?;
            ctx.addr(&ops[0])?;
            Ok(Op::Nop)
        }
        "createpolicy" => match qualifiers::createpolicy(&m.parts)? {
            // The policy is an opaque 64-bit value that only `.L2::cache_hint` operands
            // read, and execution ignores those.
            CreatePolicy::Fractional { primary, secondary } => {
                if !(1..=2).contains(&ops.len()) {
                    return Err(format!("expected 1 or 2 operands, found {}", ops.len()));
                }
                let fraction = ops.get(1).map_or(Ok(1.0), fraction_of)?;
                let policy = qualifiers::fractional_policy(primary, secondary, fraction);
                Ok(Op::Mov { d: ctx.dst(&ops[0])?, a: Operand::Imm(policy), bits: 64 })
            }
            CreatePolicy::Cvt => {
                want(ops, 2)?;
                Ok(Op::Mov { d: ctx.dst(&ops[0])?, a: ctx.src(&ops[1], None)?, bits: 64 })
            }
        },
        "membar" | "fence" | "nanosleep" | "pmevent" | "griddepcontrol" => Ok(Op::Nop),
        "call" => Err("function calls are not supported (inline device functions)".into()),
        _ => Err("unsupported instruction".into()),
    }
}

/// `cp.async.{ca,cg}.shared{::cta}.global{.L2::cache_hint}{.L2::<N>B} [dst], [src], cp-size
/// {, src-size | ignore-src}{, cache-policy}` (PTX ISA "cp.async").
fn decode_cp_async(m: &Mods, ops: &[Opnd], ctx: &mut Ctx) -> Result<Op, String> {
    let (mut hint, cache_hint) = qualifiers::check(&qualifiers::CP_ASYNC, &m.parts)?;
    if m.has("ca") == m.has("cg") {
        return Err("cp.async needs one of .ca and .cg".into());
    }
    if !(m.has("shared") || m.has("shared::cta")) || !m.has("global") {
        return Err("cp.async needs .shared.global".into());
    }
    // The optional src-size / ignore-src operand sits before the cache-policy operand, so
    // the policy is taken off the end first.
    let mut rest = ops;
    if cache_hint {
        let (policy, before) = ops.split_last().filter(|(_, b)| b.len() >= 3).ok_or(".L2::cache_hint needs a cache-policy operand")?;
        hint.policy = Some(ctx.src(policy, None)?);
        rest = before;
    }
    if rest.len() < 3 {
        return Err("cp.async needs dst, src and size".into());
    }
    if rest.len() > 4 {
        return Err(if cache_hint {
            format!("cp.async takes at most 5 operands, found {}", ops.len())
        } else {
            "an extra (cache-policy) operand needs the .L2::cache_hint qualifier".into()
        });
    }
    let bytes = match &rest[2] {
        Opnd::Int(v) if matches!(*v, 4 | 8 | 16) => *v as u32,
        _ => return Err("cp.async size must be 4, 8 or 16".into()),
    };
    if m.has("cg") && bytes != 16 {
        return Err("cp.async.cg copies 16 bytes only".into());
    }
    let mut src_size = None;
    let mut ignore_src = None;
    if let Some(o) = rest.get(3) {
        match o {
            Opnd::Not(n) => ignore_src = Some((ctx.src(&Opnd::Name(n.clone()), None)?, true)),
            Opnd::Name(n) if ctx.reg(n).is_some_and(|r| ctx.preds.contains(&r)) => ignore_src = Some((ctx.src(o, None)?, false)),
            other => src_size = Some(ctx.src(other, None)?),
        }
    }
    Ok(Op::CpAsync { bytes, dst: ctx.addr(&rest[0])?, src: ctx.addr(&rest[1])?, src_size, ignore_src, hint })
}

fn decode_mma(m: &Mods, ops: &[Opnd], ctx: &mut Ctx) -> Result<Op, String> {
    want(ops, 4)?;
    let k = if m.has("m16n8k16") {
        16
    } else if m.has("m16n8k8") {
        8
    } else {
        return Err("only mma m16n8k16 and m16n8k8 are supported".into());
    };
    if !m.has("row") || !m.has("col") {
        return Err("mma needs .row.col".into());
    }
    let types = m.types();
    if types.len() != 4 {
        return Err("mma needs .dtype.atype.btype.ctype".into());
    }
    let elem = |t: Ty| match t {
        Ty::F16 => Ok(MmaElem::F16),
        Ty::Bf16 => Ok(MmaElem::Bf16),
        Ty::F32 => Ok(MmaElem::F32),
        _ => Err(format!("mma element type {t:?} is not supported")),
    };
    let (dt, at, bt, ct) = (elem(types[0])?, elem(types[1])?, elem(types[2])?, elem(types[3])?);
    if at != bt || at == MmaElem::F32 || (at == MmaElem::Bf16 && (dt != MmaElem::F32 || ct != MmaElem::F32)) {
        return Err("unsupported mma type combination".into());
    }
    let a_regs = if k == 16 { 4 } else { 2 };
    let b_regs = if k == 16 { 2 } else { 1 };
    let cd_regs = |t: MmaElem| if t == MmaElem::F32 { 4 } else { 2 };
    let (dl, dn) = dst_list(ctx, &ops[0])?;
    if dn as usize != cd_regs(dt) {
        return Err("mma D register count does not match its type".into());
    }
    let (al, an) = src_list(ctx, &ops[1], None)?;
    let (bl, bn) = src_list(ctx, &ops[2], None)?;
    let (cl, cn) = src_list(ctx, &ops[3], Some(Ty::F32))?;
    if an as usize != a_regs || bn as usize != b_regs || cn as usize != cd_regs(ct) {
        return Err("mma operand register counts do not match the shape".into());
    }
    let mut d = [0u32; 4];
    for i in 0..dn as usize {
        d[i] = dl[i].unwrap_or(0);
    }
    Ok(Op::Mma { k, ab: at, cd: dt, acc_c: ct, d, a: al, b: [bl[0], bl[1]], c: cl })
}


#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        let mut c = Ctx { syms: HashMap::new(), scopes: vec![HashMap::new()], nregs: 0, preds: Default::default() };
        for r in ["%r1", "%r2", "%rd1", "%rd2", "%p1"] {
            c.declare(r);
        }
        let p1 = c.reg("%p1").unwrap();
        c.preds.insert(p1);
        c
    }

    fn ops(text: &str) -> Vec<Opnd> {
        let toks = crate::lex::lex(text).unwrap();
        crate::syntax::parse_operands(&mut crate::syntax::Cursor { toks: &toks, pos: 0 }).unwrap()
    }

    #[test]
    fn cache_hints_are_decoded_into_the_ir() {
        let mut c = ctx();
        let (r2, rd2, p1) = (c.reg("%r2").unwrap(), c.reg("%rd2").unwrap(), c.reg("%p1").unwrap());
        // The optional operand before the policy is src-size here, ignore-src below.
        match decode("cp.async.cg.shared.global.L2::cache_hint.L2::128B", &ops("[%r1], [%rd1], 16, %r2, %rd2;"), &mut c).unwrap() {
            Op::CpAsync { bytes: 16, src_size, ignore_src: None, hint, .. } => {
                assert_eq!(src_size, Some(Operand::Reg(r2)));
                assert_eq!(hint, CacheHint { l1: None, l2: None, prefetch_bytes: 128, policy: Some(Operand::Reg(rd2)) });
            }
            other => panic!("{other:?}"),
        }
        match decode("cp.async.ca.shared.global.L2::cache_hint", &ops("[%r1], [%rd1], 8, !%p1, %rd2;"), &mut c).unwrap() {
            Op::CpAsync { bytes: 8, src_size: None, ignore_src, hint, .. } => {
                assert_eq!(ignore_src, Some((Operand::Reg(p1), true)));
                assert_eq!(hint.policy, Some(Operand::Reg(rd2)));
            }
            other => panic!("{other:?}"),
        }
        match decode("ld.global.nc.L1::no_allocate.L2::evict_last.L2::256B.u32", &ops("%r1, [%rd1];"), &mut c).unwrap() {
            Op::Ld { space: Space::Global, hint, .. } => {
                assert_eq!(hint, CacheHint { l1: Some(Evict::NoAllocate), l2: Some(Evict::Last), prefetch_bytes: 256, policy: None })
            }
            other => panic!("{other:?}"),
        }
        match decode("st.global.L2::cache_hint.u32", &ops("[%rd1], %r1, %rd2;"), &mut c).unwrap() {
            Op::St { hint, .. } => assert_eq!(hint.policy, Some(Operand::Reg(rd2))),
            other => panic!("{other:?}"),
        }
        // createpolicy is a move of an opaque 64-bit value.
        assert!(matches!(decode("createpolicy.fractional.L2::evict_last.b64", &ops("%rd2, 1.0;"), &mut c).unwrap(), Op::Mov { bits: 64, a: Operand::Imm(_), .. }));
        assert!(matches!(decode("prefetch.global.L2::evict_last", &ops("[%rd1];"), &mut c).unwrap(), Op::Nop));
    }
}
