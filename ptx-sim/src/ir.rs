//! The decoded instruction form the interpreter executes.
//!
//! Parsing resolves every register name to an index, every symbol to an address and every
//! label to an instruction index once, so that execution never touches a string.

/// A value or scalar type as written in an opcode suffix (`.u32`, `.f16x2`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    Bf16,
    Bf16x2,
    F32,
    F64,
    Pred,
}

impl Ty {
    /// Parses a type suffix without its dot.
    pub(crate) fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::Bf16,
            "bf16x2" => Ty::Bf16x2,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    /// Width in bits (a predicate counts as 1).
    pub(crate) fn bits(self) -> u32 {
        match self {
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::Bf16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::Bf16x2 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
            Ty::Pred => 1,
        }
    }

    /// Size in memory, in bytes.
    pub(crate) fn bytes(self) -> u32 {
        self.bits().max(8) / 8
    }

    pub(crate) fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    pub(crate) fn is_float(self) -> bool {
        matches!(self, Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2 | Ty::F32 | Ty::F64)
    }
}

/// Special registers (PTX ISA chapter "Special Registers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sreg {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    SmId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    Clock,
    Clock64,
    GlobalTimer,
    DynamicSmemSize,
    TotalSmemSize,
}

/// A source operand: a register index, an immediate (symbols are resolved to immediates),
/// or a special register.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Operand {
    Reg(u32),
    Imm(u64),
    Sreg(Sreg),
}

/// State spaces that loads and stores name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Space {
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

impl Space {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Space::Generic => "generic",
            Space::Global => "global",
            Space::Shared => "shared",
            Space::Local => "local",
            Space::Param => "param",
            Space::Const => "const",
        }
    }
}

/// An address expression `[base+offset]`; `base` is `None` for an absolute address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Addr {
    pub base: Option<u32>,
    pub offset: i64,
}

/// A cache eviction priority (PTX ISA, "Cache Eviction Priority Hints"): `.L1::evict_*` /
/// `.L1::no_allocate` and `.L2::evict_*` on ld / st, `.L2::evict_*` on prefetch and
/// createpolicy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Evict {
    Normal,
    Unchanged,
    First,
    Last,
    NoAllocate,
}

/// The cache qualifiers of a memory instruction. The ISA treats all of them as performance
/// hints that do not change what the instruction reads or writes, so execution ignores
/// them; they are decoded rather than stripped from the text so that the parser checks
/// each one (and the cache-policy operand count) and the IR still says what was written.
// Never read by the interpreter, by design (see above): decode's tests and Debug show them.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CacheHint {
    /// `.L1::evict_normal` ... `.L1::no_allocate`.
    pub l1: Option<Evict>,
    /// `.L2::evict_normal`, `.L2::evict_first`, `.L2::evict_last`.
    pub l2: Option<Evict>,
    /// `.L2::64B`, `.L2::128B`, `.L2::256B`: bytes to prefetch into L2 around the access
    /// (0: none).
    pub prefetch_bytes: u16,
    /// `.L2::cache_hint`: the 64-bit cache-policy operand (made by `createpolicy`), the
    /// instruction's last operand.
    pub policy: Option<Operand>,
}

/// IEEE rounding modes, plus the round-to-integer forms that cvt uses for float to integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rnd {
    /// No modifier: the default of the instruction.
    Default,
    Rn,
    Rz,
    Rm,
    Rp,
    Rna,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntUn {
    Not,
    Neg,
    Abs,
    Popc,
    Clz,
    Brev,
    Cnot,
    Bfind,
    BfindShift,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntBin {
    Add,
    Sub,
    MulLo,
    MulHi,
    MulWide,
    Div,
    Rem,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntTern {
    MadLo,
    MadHi,
    MadWide,
    Bfe,
    Prmt,
    /// `lop3.b32 d, a, b, c, immLut`: the lut is carried in the op.
    Lop3(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FBin {
    Add,
    Sub,
    Mul,
    Min,
    Max,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FUn {
    Abs,
    Neg,
    Rcp,
    Sqrt,
    Rsqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
    Tanh,
}

/// Comparison operators of setp (PTX ISA, setp: integer and floating-point comparisons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BoolOp {
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
    Exch,
    Cas,
    Inc,
    Dec,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShflMode {
    Idx,
    Up,
    Down,
    Bfly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReduxOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
}

/// Element type of mma operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MmaElem {
    F16,
    Bf16,
    F32,
}

/// A decoded instruction body. Register fields are register indices.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Mov { d: u32, a: Operand, bits: u32 },
    /// `mov.b32 {a, b}, %r`: split into `parts.len()` pieces of `part_bits`, lowest first.
    Unpack { ds: [Option<u32>; 4], n: u8, a: Operand, part_bits: u32 },
    /// `mov.b32 %r, {a, b}`: the inverse of `Unpack`.
    Pack { d: u32, parts: [Operand; 4], n: u8, part_bits: u32 },
    IntUn { op: IntUn, ty: Ty, d: u32, a: Operand },
    IntBin { op: IntBin, ty: Ty, d: u32, a: Operand, b: Operand },
    IntTern { op: IntTern, ty: Ty, d: u32, a: Operand, b: Operand, c: Operand },
    Bfi { ty: Ty, d: u32, a: Operand, b: Operand, c: Operand, e: Operand },
    FBin { op: FBin, ty: Ty, rnd: Rnd, ftz: bool, sat: bool, approx: bool, d: u32, a: Operand, b: Operand },
    FUn { op: FUn, ty: Ty, ftz: bool, d: u32, a: Operand },
    Fma { ty: Ty, rnd: Rnd, ftz: bool, sat: bool, relu: bool, d: u32, a: Operand, b: Operand, c: Operand },
    Setp {
        cmp: Cmp,
        ty: Ty,
        ftz: bool,
        d: u32,
        d2: Option<u32>,
        a: Operand,
        b: Operand,
        combine: Option<(BoolOp, Operand, bool)>,
    },
    Selp { d: u32, a: Operand, b: Operand, p: Operand, bits: u32 },
    /// and/or/xor/not on predicates (not: `b` is ignored).
    PredLogic { op: Option<BoolOp>, d: u32, a: Operand, b: Operand },
    Cvt { dty: Ty, sty: Ty, rnd: Rnd, int_rnd: bool, ftz: bool, sat: bool, d: u32, a: Operand },
    /// `cvt.rn{.relu}.{f16x2,bf16x2}.f32 d, a, b`: `a` goes to the upper half.
    CvtPack { dty: Ty, rnd: Rnd, relu: bool, d: u32, a: Operand, b: Operand },
    /// `cvta{.to}.space`: adds (or removes) the space's generic window base.
    Cvta { to: bool, space: Space, d: u32, a: Operand },
    // `hint` fields: performance hints, decoded and checked but never executed (`CacheHint`).
    Ld {
        space: Space,
        ty: Ty,
        n: u8,
        ds: [Option<u32>; 4],
        addr: Addr,
        #[allow(dead_code)]
        hint: CacheHint,
    },
    St {
        space: Space,
        ty: Ty,
        n: u8,
        srcs: [Operand; 4],
        addr: Addr,
        #[allow(dead_code)]
        hint: CacheHint,
    },
    Atom {
        space: Space,
        op: AtomOp,
        ty: Ty,
        d: Option<u32>,
        addr: Addr,
        b: Operand,
        c: Operand,
        #[allow(dead_code)]
        hint: CacheHint,
    },
    Bar { id: Operand, count: Option<Operand> },
    BarWarp { mask: Operand },
    Shfl { mode: ShflMode, d: u32, p: Option<u32>, a: Operand, b: Operand, c: Operand, mask: Operand },
    Vote { mode: VoteMode, d: u32, p: Operand, negate: bool, mask: Operand },
    Redux { op: ReduxOp, ty: Ty, d: u32, a: Operand, mask: Operand },
    Activemask { d: u32 },
    Mma { k: u8, ab: MmaElem, cd: MmaElem, acc_c: MmaElem, d: [u32; 4], a: [Operand; 4], b: [Operand; 2], c: [Operand; 4] },
    Ldmatrix { num: u8, trans: bool, ds: [u32; 4], addr: Addr, space: Space },
    CpAsync {
        bytes: u32,
        dst: Addr,
        src: Addr,
        src_size: Option<Operand>,
        ignore_src: Option<(Operand, bool)>,
        #[allow(dead_code)]
        hint: CacheHint,
    },
    CpAsyncCommit,
    CpAsyncWait { n: u32 },
    CpAsyncWaitAll,
    Bra { target: u32 },
    /// A device-function call: copy the argument slots (src, dst, bytes) in the thread's
    /// local memory, remember the return address, jump.
    Call { target: u32, copy_in: Vec<(u32, u32, u32)>, copy_out: Vec<(u32, u32, u32)> },
    /// Return from a device function: jump back and copy the return slots (those of the
    /// `Call` just before the return address).
    Ret,
    Exit,
    Nop,
}

/// Instruction classes the counters distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Alu,
    Sfu,
    Mma,
    Mem,
    Barrier,
    Control,
}

impl Op {
    pub(crate) fn class(&self) -> Class {
        match self {
            Op::FUn { op, .. } if !matches!(op, FUn::Abs | FUn::Neg) => Class::Sfu,
            Op::FBin { op: FBin::Div, approx: true, .. } => Class::Sfu,
            Op::Mma { .. } => Class::Mma,
            Op::Ld { .. } | Op::St { .. } | Op::Atom { .. } | Op::Ldmatrix { .. } | Op::CpAsync { .. } => Class::Mem,
            Op::Bar { .. } | Op::BarWarp { .. } => Class::Barrier,
            Op::Bra { .. } | Op::Call { .. } | Op::Ret | Op::Exit | Op::Nop => Class::Control,
            _ => Class::Alu,
        }
    }
}

/// One instruction with its guard predicate and source position.
#[derive(Clone, Debug)]
pub(crate) struct Instr {
    pub op: Op,
    /// `@%p` (false) or `@!%p` (true).
    pub guard: Option<(u32, bool)>,
    /// 1-based line in the PTX text.
    pub line: u32,
}
