//! Floating-point helpers: narrowing with every IEEE rounding mode, flush-to-zero, and
//! the f16 / bf16 bit formats.
//!
//! Directed rounding is derived from round-to-nearest-even: round once, compare the
//! result with the exact value, and step one unit in the last place when the nearest
//! value lies on the wrong side for the requested direction. Stepping the bit pattern by
//! one is exact for sign-magnitude formats, including through subnormals and into the
//! largest finite value from infinity.

use crate::ir::Rnd;
use half::{bf16, f16};

/// Flushes an f32 subnormal to a zero of the same sign (`.ftz`).
#[inline]
pub(crate) fn ftz32(x: f32) -> f32 {
    if x.is_subnormal() {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// Steps a sign-magnitude bit pattern one unit toward +inf (`up`) or -inf.
fn step(bits: u64, sign_bit: u64, up: bool) -> u64 {
    let neg = bits & sign_bit != 0;
    let mag = bits & (sign_bit - 1);
    if mag == 0 {
        // From a zero: the smallest subnormal on the requested side.
        return if up { 1 } else { sign_bit | 1 };
    }
    if up != neg {
        bits + 1
    } else {
        bits - 1
    }
}

/// Rounds `exact` given its nearest-even image `bits` (which converts back to `back`).
fn directed(exact: f64, bits: u64, back: f64, sign_bit: u64, rnd: Rnd) -> u64 {
    if exact.is_nan() || back == exact {
        return bits;
    }
    let toward_zero_needed = back.abs() > exact.abs();
    match rnd {
        Rnd::Rz if toward_zero_needed => step(bits, sign_bit, exact < 0.0),
        Rnd::Rm if back > exact => step(bits, sign_bit, false),
        Rnd::Rp if back < exact => step(bits, sign_bit, true),
        _ => bits,
    }
}

/// Narrows an f64 to an f32 that rounds to the same f16 / bf16 as the f64 would: exact
/// when it fits, otherwise rounded to odd (truncate, then set the last bit), which keeps
/// the sticky information that a later round-to-nearest needs.
fn to_f32_odd(x: f64) -> f32 {
    let t = to_f32(x, Rnd::Rz);
    if (t as f64) == x || x.is_nan() || t.is_infinite() {
        t
    } else {
        f32::from_bits(t.to_bits() | 1)
    }
}

/// An f64 value to f16 bits with a rounding mode.
pub(crate) fn to_f16(x: f64, rnd: Rnd) -> u16 {
    let h = f16::from_f32(to_f32_odd(x));
    directed(x, h.to_bits() as u64, h.to_f64(), 0x8000, rnd) as u16
}

/// An f64 value to bf16 bits with a rounding mode.
pub(crate) fn to_bf16(x: f64, rnd: Rnd) -> u16 {
    let h = bf16::from_f32(to_f32_odd(x));
    directed(x, h.to_bits() as u64, h.to_f64(), 0x8000, rnd) as u16
}

/// f64 to f32 with a rounding mode.
pub(crate) fn to_f32(x: f64, rnd: Rnd) -> f32 {
    let f = x as f32;
    f32::from_bits(directed(x, f.to_bits() as u64, f as f64, 0x8000_0000, rnd) as u32)
}

/// f16 bits to f32, exactly. Written out rather than calling `half`, whose conversion is an
/// out-of-line call with a CPU-feature check: this runs for every element of every mma.
#[inline(always)]
pub(crate) fn f16_bits_to_f32(b: u16) -> f32 {
    let sign = ((b as u32) & 0x8000) << 16;
    let exp = ((b >> 10) & 0x1F) as u32;
    let man = (b & 0x3FF) as u32;
    if exp == 0 {
        // Zero or subnormal: man * 2^-24, exact in f32.
        let v = man as f32 * (1.0 / 16_777_216.0);
        return f32::from_bits(v.to_bits() | sign);
    }
    if exp == 31 {
        return f32::from_bits(sign | 0x7F80_0000 | (man << 13));
    }
    f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
}

#[inline(always)]
pub(crate) fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rounds a float to an integer value with the cvt integer rounding modifiers.
pub(crate) fn round_int(x: f64, rnd: Rnd) -> f64 {
    match rnd {
        Rnd::Rz | Rnd::Default => x.trunc(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rna => x.round(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_directed_rounding() {
        // 1 + 2^-11 lies exactly halfway between 1 and the next f16 (1 + 2^-10).
        let x = 1.0 + 2f64.powi(-11);
        assert_eq!(to_f16(x, Rnd::Rn), 0x3C00);
        assert_eq!(to_f16(x, Rnd::Rz), 0x3C00);
        assert_eq!(to_f16(x, Rnd::Rm), 0x3C00);
        assert_eq!(to_f16(x, Rnd::Rp), 0x3C01);
        assert_eq!(to_f16(-x, Rnd::Rm), 0xBC01);
        assert_eq!(to_f16(-x, Rnd::Rz), 0xBC00);
        // Overflow: nearest gives inf, toward zero and down give the largest finite 65504.
        assert_eq!(to_f16(70000.0, Rnd::Rn), 0x7C00);
        assert_eq!(to_f16(70000.0, Rnd::Rz), 0x7BFF);
        assert_eq!(to_f16(70000.0, Rnd::Rm), 0x7BFF);
        assert_eq!(to_f16(-70000.0, Rnd::Rp), 0xFBFF);
        // Underflow: up from a tiny positive value is the smallest subnormal.
        assert_eq!(to_f16(1e-10, Rnd::Rn), 0x0000);
        assert_eq!(to_f16(1e-10, Rnd::Rp), 0x0001);
        assert_eq!(to_f16(-1e-10, Rnd::Rm), 0x8001);
    }

    #[test]
    fn bf16_and_f32_rounding() {
        // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7.
        let x = 1.0 + 2f64.powi(-8);
        assert_eq!(to_bf16(x, Rnd::Rn), 0x3F80);
        assert_eq!(to_bf16(x, Rnd::Rp), 0x3F81);
        assert_eq!(to_bf16(1.0 + 3.0 * 2f64.powi(-9), Rnd::Rz), 0x3F80);
        assert_eq!(to_bf16(1.0 + 3.0 * 2f64.powi(-9), Rnd::Rn), 0x3F81);
        let y = 1.0 + 2f64.powi(-30);
        assert_eq!(to_f32(y, Rnd::Rn), 1.0);
        assert_eq!(to_f32(y, Rnd::Rp), 1.0 + f32::EPSILON);
        assert_eq!(to_f32(-y, Rnd::Rm), -(1.0 + f32::EPSILON));
        assert_eq!(round_int(2.5, Rnd::Rn), 2.0);
        assert_eq!(round_int(-2.5, Rnd::Rm), -3.0);
        assert_eq!(ftz32(f32::from_bits(0x8000_0001)).to_bits(), 0x8000_0000);
    }

    #[test]
    fn half_widening_is_exact_for_every_pattern() {
        for b in 0..=u16::MAX {
            let (want, got) = (f16::from_bits(b).to_f32(), f16_bits_to_f32(b));
            assert!(want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()), "f16 {b:#06x}");
            let (want, got) = (bf16::from_bits(b).to_f32(), bf16_bits_to_f32(b));
            assert!(want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()), "bf16 {b:#06x}");
        }
    }
}
