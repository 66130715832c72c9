//! Per-lane semantics of the arithmetic, logic, compare and convert instructions, as pure
//! functions on register bits. Registers hold values zero-extended to 64 bits; every
//! function reads only the low `ty.bits()` bits of its inputs.

use crate::float::{bf16_bits_to_f32, f16_bits_to_f32, ftz32, round_int, to_bf16, to_f16, to_f32};
use crate::ir::*;

#[inline(always)]
pub(crate) fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

#[inline(always)]
pub(crate) fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        let s = 64 - bits;
        ((v << s) as i64) >> s
    }
}

#[inline(always)]
fn signed_val(v: u64, ty: Ty) -> i128 {
    if ty.is_signed() {
        sext(v, ty.bits()) as i128
    } else {
        (v & mask(ty.bits())) as i128
    }
}

pub(crate) fn int_un(op: IntUn, ty: Ty, a: u64) -> u64 {
    let bits = ty.bits();
    let m = mask(bits);
    let a = a & m;
    match op {
        IntUn::Not => !a & m,
        IntUn::Neg => a.wrapping_neg() & m,
        IntUn::Abs => (sext(a, bits).unsigned_abs()) & m,
        IntUn::Popc => a.count_ones() as u64,
        IntUn::Clz => (a.leading_zeros() - (64 - bits)) as u64,
        IntUn::Brev => a.reverse_bits() >> (64 - bits),
        IntUn::Cnot => (a == 0) as u64,
        IntUn::Bfind | IntUn::BfindShift => {
            let v = if ty.is_signed() && sext(a, bits) < 0 { !a & m } else { a };
            if v == 0 {
                0xFFFF_FFFF
            } else {
                let pos = 63 - v.leading_zeros() as u64;
                if op == IntUn::BfindShift {
                    bits as u64 - 1 - pos
                } else {
                    pos
                }
            }
        }
    }
}

pub(crate) fn int_bin(op: IntBin, ty: Ty, a: u64, b: u64) -> u64 {
    let bits = ty.bits();
    let m = mask(bits);
    let (ua, ub) = (a & m, b & m);
    match op {
        IntBin::Add => ua.wrapping_add(ub) & m,
        IntBin::Sub => ua.wrapping_sub(ub) & m,
        IntBin::MulLo => ua.wrapping_mul(ub) & m,
        IntBin::MulHi => {
            let p = signed_val(a, ty).wrapping_mul(signed_val(b, ty));
            ((p >> bits) as u64) & m
        }
        IntBin::MulWide => {
            let p = signed_val(a, ty).wrapping_mul(signed_val(b, ty));
            (p as u64) & mask(bits * 2)
        }
        IntBin::Div => {
            if ub == 0 {
                // Division by zero is undefined in PTX; hardware yields all ones.
                m
            } else if ty.is_signed() {
                (sext(ua, bits).wrapping_div(sext(ub, bits)) as u64) & m
            } else {
                ua / ub
            }
        }
        IntBin::Rem => {
            if ub == 0 {
                ua
            } else if ty.is_signed() {
                (sext(ua, bits).wrapping_rem(sext(ub, bits)) as u64) & m
            } else {
                ua % ub
            }
        }
        IntBin::And => ua & ub,
        IntBin::Or => ua | ub,
        IntBin::Xor => ua ^ ub,
        IntBin::Shl => {
            let s = b & 0xFFFF_FFFF;
            if s >= bits as u64 {
                0
            } else {
                (ua << s) & m
            }
        }
        IntBin::Shr => {
            let s = (b & 0xFFFF_FFFF).min(bits as u64 - 1 + (!ty.is_signed()) as u64);
            if ty.is_signed() {
                ((sext(ua, bits) >> s.min(63)) as u64) & m
            } else if s >= bits as u64 {
                0
            } else {
                ua >> s
            }
        }
        IntBin::Min | IntBin::Max => {
            let less = if ty.is_signed() { sext(ua, bits) < sext(ub, bits) } else { ua < ub };
            if (op == IntBin::Min) == less {
                ua
            } else {
                ub
            }
        }
    }
}

pub(crate) fn int_tern(op: IntTern, ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    let bits = ty.bits();
    let m = mask(bits);
    match op {
        IntTern::MadLo => int_bin(IntBin::MulLo, ty, a, b).wrapping_add(c) & m,
        IntTern::MadHi => int_bin(IntBin::MulHi, ty, a, b).wrapping_add(c) & m,
        IntTern::MadWide => int_bin(IntBin::MulWide, ty, a, b).wrapping_add(c) & mask(bits * 2),
        IntTern::Bfe => {
            let pos = (b & 0xFF) as u32;
            let len = (c & 0xFF) as u32;
            let a = a & m;
            let field = if pos >= bits { 0 } else { (a >> pos) & mask(len.min(bits)) };
            if !ty.is_signed() || len == 0 {
                if len == 0 {
                    0
                } else {
                    field
                }
            } else {
                // The sign is the field's top bit, or the source's top bit when the field
                // runs past the end of the source.
                let top = (pos + len).min(bits) - 1;
                let sign = if pos >= bits { (a >> (bits - 1)) & 1 } else { (a >> top) & 1 };
                let valid = len.min(bits.saturating_sub(pos));
                if sign == 1 {
                    (field | !mask(valid)) & m
                } else {
                    field & mask(valid)
                }
            }
        }
        IntTern::Prmt => {
            let bytes = ((b & 0xFFFF_FFFF) << 32) | (a & 0xFFFF_FFFF);
            let mut out = 0u64;
            for i in 0..4 {
                let sel = (c >> (4 * i)) & 0xF;
                let byte = (bytes >> (8 * (sel & 7))) & 0xFF;
                let v = if sel & 8 != 0 {
                    if byte & 0x80 != 0 {
                        0xFF
                    } else {
                        0
                    }
                } else {
                    byte
                };
                out |= v << (8 * i);
            }
            out
        }
        IntTern::Lop3(lut) => {
            let mut r = 0u64;
            for i in 0..8 {
                if lut >> i & 1 == 1 {
                    let ta = if i & 4 != 0 { a } else { !a };
                    let tb = if i & 2 != 0 { b } else { !b };
                    let tc = if i & 1 != 0 { c } else { !c };
                    r |= ta & tb & tc;
                }
            }
            r & m
        }
    }
}

/// `bfi d, a, b, pos, len`: insert the low `len` bits of `a` into `b` at `pos`.
pub(crate) fn bfi(ty: Ty, a: u64, b: u64, pos: u64, len: u64) -> u64 {
    let bits = ty.bits() as u64;
    let m = mask(ty.bits());
    let (pos, len) = (pos & 0xFF, len & 0xFF);
    if len == 0 || pos >= bits {
        return b & m;
    }
    let fm = mask(len.min(bits - pos) as u32) << pos;
    ((b & !fm) | ((a << pos) & fm)) & m
}

/// Unpacks the lanes of a packed or scalar float value to f64.
#[inline]
fn fval(ty: Ty, v: u64, half: u32) -> f64 {
    match ty {
        Ty::F32 => f32::from_bits(v as u32) as f64,
        Ty::F64 => f64::from_bits(v),
        Ty::F16 | Ty::F16x2 => f16_bits_to_f32((v >> (16 * half)) as u16) as f64,
        _ => bf16_bits_to_f32((v >> (16 * half)) as u16) as f64,
    }
}

/// Rounds an f64 result to the element format of `ty`.
#[inline]
fn fpack(ty: Ty, x: f64, rnd: Rnd) -> u64 {
    let rnd = if rnd == Rnd::Default { Rnd::Rn } else { rnd };
    match ty {
        Ty::F32 => to_f32(x, rnd).to_bits() as u64,
        Ty::F64 => x.to_bits(),
        Ty::F16 | Ty::F16x2 => to_f16(x, rnd) as u64,
        _ => to_bf16(x, rnd) as u64,
    }
}

fn lanes(ty: Ty) -> u32 {
    if matches!(ty, Ty::F16x2 | Ty::Bf16x2) {
        2
    } else {
        1
    }
}

fn sat01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        b
    } else if b.is_nan() || a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        b
    } else if b.is_nan() || a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// Binary float operations. f32 with the default or `.rn` rounding uses native f32
/// arithmetic (exactly IEEE); other cases compute in f64 and round once.
pub(crate) fn fbin(op: FBin, ty: Ty, rnd: Rnd, ftz: bool, sat: bool, a: u64, b: u64) -> u64 {
    if ty == Ty::F32 && matches!(rnd, Rnd::Default | Rnd::Rn) {
        let (mut x, mut y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
        if ftz {
            x = ftz32(x);
            y = ftz32(y);
        }
        let mut r = match op {
            FBin::Add => x + y,
            FBin::Sub => x - y,
            FBin::Mul => x * y,
            FBin::Div => x / y,
            FBin::Min => fmin(x as f64, y as f64) as f32,
            FBin::Max => fmax(x as f64, y as f64) as f32,
        };
        if sat {
            r = sat01(r as f64) as f32;
        }
        if ftz {
            r = ftz32(r);
        }
        return r.to_bits() as u64;
    }
    let mut out = 0u64;
    for h in 0..lanes(ty) {
        let (x, y) = (fval(ty, a, h), fval(ty, b, h));
        let mut r = match op {
            FBin::Add => x + y,
            FBin::Sub => x - y,
            FBin::Mul => x * y,
            FBin::Div => x / y,
            FBin::Min => fmin(x, y),
            FBin::Max => fmax(x, y),
        };
        if sat {
            r = sat01(r);
        }
        let mut bits = fpack(ty, r, rnd);
        if ftz && ty == Ty::F32 {
            bits = ftz32(f32::from_bits(bits as u32)).to_bits() as u64;
        }
        out |= bits << (16 * h);
    }
    out
}

/// Unary float operations, including the special-function unit (approximations are
/// computed exactly and rounded: within the ISA's stated error bounds).
pub(crate) fn fun(op: FUn, ty: Ty, ftz: bool, a: u64) -> u64 {
    let mut out = 0u64;
    for h in 0..lanes(ty) {
        let mut x = fval(ty, a, h);
        if ftz && ty == Ty::F32 {
            x = ftz32(x as f32) as f64;
        }
        let r = match op {
            FUn::Abs => x.abs(),
            FUn::Neg => -x,
            FUn::Rcp => 1.0 / x,
            FUn::Sqrt => x.sqrt(),
            FUn::Rsqrt => 1.0 / x.sqrt(),
            FUn::Ex2 => x.exp2(),
            FUn::Lg2 => x.log2(),
            FUn::Sin => x.sin(),
            FUn::Cos => x.cos(),
            FUn::Tanh => x.tanh(),
        };
        let mut bits = if matches!(op, FUn::Abs | FUn::Neg) && ty != Ty::F64 {
            // Sign operations only touch the sign bit (NaN payloads survive).
            let sign = if ty == Ty::F32 { 0x8000_0000u64 } else { 0x8000 };
            let v = if ty == Ty::F32 { a & 0xFFFF_FFFF } else { (a >> (16 * h)) & 0xFFFF };
            let v = if ftz && ty == Ty::F32 { ftz32(f32::from_bits(v as u32)).to_bits() as u64 } else { v };
            if op == FUn::Abs {
                v & !sign
            } else {
                v ^ sign
            }
        } else {
            fpack(ty, r, Rnd::Rn)
        };
        if ftz && ty == Ty::F32 {
            bits = ftz32(f32::from_bits(bits as u32)).to_bits() as u64;
        }
        out |= bits << (16 * h);
    }
    out
}

/// Fused multiply-add with one rounding.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fma(ty: Ty, rnd: Rnd, ftz: bool, sat: bool, relu: bool, a: u64, b: u64, c: u64) -> u64 {
    if ty == Ty::F32 && matches!(rnd, Rnd::Default | Rnd::Rn) {
        let f = |v: u64| {
            let x = f32::from_bits(v as u32);
            if ftz {
                ftz32(x)
            } else {
                x
            }
        };
        let mut r = f(a).mul_add(f(b), f(c));
        if sat {
            r = sat01(r as f64) as f32;
        }
        if ftz {
            r = ftz32(r);
        }
        return r.to_bits() as u64;
    }
    let mut out = 0u64;
    for h in 0..lanes(ty) {
        let mut r = fval(ty, a, h).mul_add(fval(ty, b, h), fval(ty, c, h));
        if sat {
            r = sat01(r);
        }
        if relu && !r.is_nan() && r < 0.0 {
            r = 0.0;
        }
        out |= fpack(ty, r, rnd) << (16 * h);
    }
    out
}

/// setp comparison of one lane.
pub(crate) fn compare(cmp: Cmp, ty: Ty, ftz: bool, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (mut x, mut y) = (fval(ty, a, 0), fval(ty, b, 0));
        if ftz && ty == Ty::F32 {
            x = ftz32(x as f32) as f64;
            y = ftz32(y as f32) as f64;
        }
        let unordered = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !unordered && x == y,
            Cmp::Ne => !unordered && x != y,
            Cmp::Lt | Cmp::Lo => !unordered && x < y,
            Cmp::Le | Cmp::Ls => !unordered && x <= y,
            Cmp::Gt | Cmp::Hi => !unordered && x > y,
            Cmp::Ge | Cmp::Hs => !unordered && x >= y,
            Cmp::Equ => unordered || x == y,
            Cmp::Neu => unordered || x != y,
            Cmp::Ltu => unordered || x < y,
            Cmp::Leu => unordered || x <= y,
            Cmp::Gtu => unordered || x > y,
            Cmp::Geu => unordered || x >= y,
            Cmp::Num => !unordered,
            Cmp::Nan => unordered,
        };
    }
    let bits = ty.bits();
    let (ua, ub) = (a & mask(bits), b & mask(bits));
    let (sa, sb) = (sext(a, bits), sext(b, bits));
    let signed = ty.is_signed();
    match cmp {
        Cmp::Eq | Cmp::Equ => ua == ub,
        Cmp::Ne | Cmp::Neu => ua != ub,
        Cmp::Lt | Cmp::Ltu => {
            if signed {
                sa < sb
            } else {
                ua < ub
            }
        }
        Cmp::Le | Cmp::Leu => {
            if signed {
                sa <= sb
            } else {
                ua <= ub
            }
        }
        Cmp::Gt | Cmp::Gtu => {
            if signed {
                sa > sb
            } else {
                ua > ub
            }
        }
        Cmp::Ge | Cmp::Geu => {
            if signed {
                sa >= sb
            } else {
                ua >= ub
            }
        }
        Cmp::Lo => ua < ub,
        Cmp::Ls => ua <= ub,
        Cmp::Hi => ua > ub,
        Cmp::Hs => ua >= ub,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

/// `cvt` of one lane.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cvt(dty: Ty, sty: Ty, rnd: Rnd, int_rnd: bool, ftz: bool, sat: bool, a: u64) -> u64 {
    let dbits = dty.bits();
    if !sty.is_float() && !dty.is_float() {
        // Integer to integer: extend by the source's signedness, then truncate or saturate.
        let v: i128 = signed_val(a, sty);
        if sat {
            let (lo, hi): (i128, i128) = if dty.is_signed() {
                (-(1i128 << (dbits - 1)), (1i128 << (dbits - 1)) - 1)
            } else {
                (0, (1i128 << dbits) - 1)
            };
            return (v.clamp(lo, hi) as u64) & mask(dbits);
        }
        return (v as u64) & mask(dbits);
    }
    if sty.is_float() {
        let mut x = fval(sty, a, 0);
        if ftz && sty == Ty::F32 {
            x = ftz32(x as f32) as f64;
        }
        if !dty.is_float() {
            // Float to integer saturates to the destination range; NaN gives 0.
            if x.is_nan() {
                return 0;
            }
            let r = round_int(x, if rnd == Rnd::Default { Rnd::Rz } else { rnd });
            let (lo, hi): (f64, f64) = if dty.is_signed() {
                (-(2f64.powi(dbits as i32 - 1)), 2f64.powi(dbits as i32 - 1) - 1.0)
            } else {
                (0.0, 2f64.powi(dbits as i32) - 1.0)
            };
            let c = r.clamp(lo, hi);
            return if dty.is_signed() { (c as i64 as u64) & mask(dbits) } else { c as u64 };
        }
        let mut y = if int_rnd { round_int(x, rnd) } else { x };
        if sat {
            y = sat01(y);
        }
        let r = if int_rnd { Rnd::Rn } else { rnd };
        let mut bits = fpack(dty, y, r);
        if ftz && dty == Ty::F32 {
            bits = ftz32(f32::from_bits(bits as u32)).to_bits() as u64;
        }
        return bits;
    }
    // Integer to float.
    let v = signed_val(a, sty);
    let mut y = v as f64;
    if sat {
        y = sat01(y);
    }
    if (y as i128) != v && dty != Ty::F64 {
        // The i64 -> f64 step rounded: redo the directed rounding from the exact integer.
        let f = match rnd {
            Rnd::Rz => (v as f64).trunc(),
            _ => v as f64,
        };
        return fpack(dty, f, rnd);
    }
    fpack(dty, y, rnd)
}

/// `cvt.rn{.relu}.{f16x2,bf16x2}.f32 d, a, b`: `a` to the upper half, `b` to the lower.
pub(crate) fn cvt_pack(dty: Ty, rnd: Rnd, relu: bool, a: u64, b: u64) -> u64 {
    let one = |v: u64| {
        let mut x = f32::from_bits(v as u32) as f64;
        if relu && !x.is_nan() && x < 0.0 {
            x = 0.0;
        }
        if dty == Ty::F16x2 {
            to_f16(x, if rnd == Rnd::Default { Rnd::Rn } else { rnd }) as u64
        } else {
            to_bf16(x, if rnd == Rnd::Default { Rnd::Rn } else { rnd }) as u64
        }
    };
    (one(a) << 16) | one(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_ops() {
        assert_eq!(int_bin(IntBin::Add, Ty::S32, 0xFFFF_FFFF, 1), 0);
        assert_eq!(int_bin(IntBin::MulHi, Ty::S32, (-3i32) as u32 as u64, 0x4000_0000), ((-3i64 * 0x4000_0000) >> 32) as u64 & 0xFFFF_FFFF);
        assert_eq!(int_bin(IntBin::MulWide, Ty::S32, (-2i32) as u32 as u64, 3), (-6i64) as u64);
        assert_eq!(int_bin(IntBin::MulWide, Ty::U32, 0xFFFF_FFFF, 2), 0x1_FFFF_FFFE);
        assert_eq!(int_bin(IntBin::Shr, Ty::S32, 0x8000_0000, 40), 0xFFFF_FFFF);
        assert_eq!(int_bin(IntBin::Shr, Ty::U32, 0x8000_0000, 40), 0);
        assert_eq!(int_bin(IntBin::Shl, Ty::B32, 1, 31), 0x8000_0000);
        assert_eq!(int_bin(IntBin::Div, Ty::S32, (-7i32) as u32 as u64, 2), (-3i32) as u32 as u64);
        assert_eq!(int_bin(IntBin::Rem, Ty::S32, (-7i32) as u32 as u64, 2), (-1i32) as u32 as u64);
        assert_eq!(int_bin(IntBin::Min, Ty::S32, (-1i32) as u32 as u64, 1), 0xFFFF_FFFF);
        assert_eq!(int_bin(IntBin::Min, Ty::U32, (-1i32) as u32 as u64, 1), 1);
        assert_eq!(int_un(IntUn::Clz, Ty::B32, 1), 31);
        assert_eq!(int_un(IntUn::Brev, Ty::B32, 1), 0x8000_0000);
        assert_eq!(int_un(IntUn::Bfind, Ty::U32, 0x10), 4);
        assert_eq!(int_un(IntUn::BfindShift, Ty::U32, 0x10), 27);
        assert_eq!(int_un(IntUn::Bfind, Ty::U32, 0), 0xFFFF_FFFF);
        assert_eq!(int_un(IntUn::Bfind, Ty::S32, (-1i32) as u32 as u64), 0xFFFF_FFFF);
        assert_eq!(int_un(IntUn::Popc, Ty::B64, u64::MAX), 64);
        assert_eq!(int_tern(IntTern::Bfe, Ty::U32, 0xABCD_1234, 8, 8), 0x12);
        assert_eq!(int_tern(IntTern::Bfe, Ty::S32, 0x0000_8000, 12, 4), 0xFFFF_FFF8);
        assert_eq!(bfi(Ty::B32, 0xF, 0xFFFF_0000, 4, 4), 0xFFFF_00F0);
        assert_eq!(int_tern(IntTern::Prmt, Ty::B32, 0x4433_2211, 0x8877_6655, 0x7531), 0x8866_4422);
        // lut 0x96 is a ^ b ^ c.
        assert_eq!(int_tern(IntTern::Lop3(0x96), Ty::B32, 0xF0, 0xCC, 0xAA), 0xF0 ^ 0xCC ^ 0xAA);
        assert_eq!(int_tern(IntTern::MadWide, Ty::U32, 0x1_0000, 0x1_0000, 5), 0x1_0000_0005);
    }

    #[test]
    fn float_ops() {
        let f = |x: f32| x.to_bits() as u64;
        assert_eq!(fbin(FBin::Add, Ty::F32, Rnd::Default, false, false, f(1.5), f(2.25)), f(3.75));
        assert_eq!(fbin(FBin::Max, Ty::F32, Rnd::Default, false, false, f(f32::NAN), f(2.0)), f(2.0));
        assert_eq!(fbin(FBin::Mul, Ty::F32, Rnd::Default, true, false, f(1e-30), f(1e-10)), 0);
        assert_eq!(fbin(FBin::Add, Ty::F32, Rnd::Default, false, true, f(0.75), f(0.5)), f(1.0));
        // (1 + 2^-23) * (1 + 2^-23) = 1 + 2^-22 + 2^-46: up rounds to 1 + 2^-22 + 2^-23.
        let one_ulp = f32::from_bits(0x3F80_0001);
        assert_eq!(fbin(FBin::Mul, Ty::F32, Rnd::Rp, false, false, f(one_ulp), f(one_ulp)), 0x3F80_0003);
        assert_eq!(fbin(FBin::Mul, Ty::F32, Rnd::Rz, false, false, f(one_ulp), f(one_ulp)), 0x3F80_0002);
        // f16x2: (1, 2) + (0.5, 0.25) = (1.5, 2.25), low half first.
        let h2 = |lo: f32, hi: f32| (to_f16(hi as f64, Rnd::Rn) as u64) << 16 | to_f16(lo as f64, Rnd::Rn) as u64;
        assert_eq!(fbin(FBin::Add, Ty::F16x2, Rnd::Rn, false, false, h2(1.0, 2.0), h2(0.5, 0.25)), h2(1.5, 2.25));
        assert_eq!(fun(FUn::Ex2, Ty::F32, true, f(3.0)), f(8.0));
        assert_eq!(fun(FUn::Neg, Ty::F32, false, f(2.0)), f(-2.0));
        assert_eq!(fun(FUn::Rsqrt, Ty::F32, false, f(4.0)), f(0.5));
        assert_eq!(fma(Ty::F32, Rnd::Rn, false, false, false, f(2.0), f(3.0), f(1.0)), f(7.0));
        assert!(compare(Cmp::Equ, Ty::F32, false, f(f32::NAN), f(1.0)));
        assert!(!compare(Cmp::Eq, Ty::F32, false, f(f32::NAN), f(f32::NAN)));
        assert!(compare(Cmp::Lt, Ty::S32, false, (-1i32) as u32 as u64, 0));
        assert!(!compare(Cmp::Lt, Ty::U32, false, (-1i32) as u32 as u64, 0));
    }

    #[test]
    fn conversions() {
        let f = |x: f32| x.to_bits() as u64;
        assert_eq!(cvt(Ty::S32, Ty::F32, Rnd::Rn, true, false, false, f(2.5)), 2);
        assert_eq!(cvt(Ty::S32, Ty::F32, Rnd::Rm, true, false, false, f(-2.5)), (-3i32) as u32 as u64);
        assert_eq!(cvt(Ty::S32, Ty::F32, Rnd::Rz, true, false, false, f(3e9)), 0x7FFF_FFFF);
        assert_eq!(cvt(Ty::U32, Ty::F32, Rnd::Rz, true, false, false, f(-5.0)), 0);
        assert_eq!(cvt(Ty::S32, Ty::F32, Rnd::Rz, true, false, false, f(f32::NAN)), 0);
        assert_eq!(cvt(Ty::S64, Ty::S32, Rnd::Default, false, false, false, 0xFFFF_FFFF), u64::MAX);
        assert_eq!(cvt(Ty::U64, Ty::U32, Rnd::Default, false, false, false, 0xFFFF_FFFF), 0xFFFF_FFFF);
        assert_eq!(cvt(Ty::U8, Ty::S32, Rnd::Default, false, false, true, 300), 255);
        assert_eq!(cvt(Ty::F32, Ty::S32, Rnd::Rn, false, false, false, 16_777_217), f(16_777_216.0));
        assert_eq!(cvt(Ty::F32, Ty::S32, Rnd::Rp, false, false, false, 16_777_217), f(16_777_218.0));
        assert_eq!(cvt(Ty::F16, Ty::F32, Rnd::Rn, false, false, false, f(1.0)), 0x3C00);
        assert_eq!(cvt(Ty::F32, Ty::F16, Rnd::Default, false, false, false, 0x3C00), f(1.0));
        assert_eq!(cvt(Ty::Bf16, Ty::F32, Rnd::Rn, false, false, false, f(1.0)), 0x3F80);
        // The first source goes to the upper half.
        assert_eq!(cvt_pack(Ty::F16x2, Rnd::Rn, false, f(2.0), f(1.0)), 0x4000_3C00);
        assert_eq!(cvt_pack(Ty::Bf16x2, Rnd::Rn, true, f(-2.0), f(1.0)), 0x0000_3F80);
    }
}
