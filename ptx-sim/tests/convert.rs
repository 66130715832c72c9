//! Conversions with every rounding mode (f32 to f16 / bf16, packed x2 forms, float to int)
//! and the special-function instructions, on nvcc output.
mod common;

use common::Rng;
use half::{bf16, f16};
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions};

/// f32 to a 16-bit format by exhaustive neighbour search: the representable values just
/// below and above, chosen by the rounding direction (independent of the simulator's code).
fn round16(x: f32, to_f32: impl Fn(u16) -> f32, mode: &str) -> u16 {
    let mut best_lo: Option<(u16, f32)> = None;
    let mut best_hi: Option<(u16, f32)> = None;
    for b in 0..=u16::MAX {
        let v = to_f32(b);
        if v.is_nan() {
            continue;
        }
        if v <= x && best_lo.map_or(true, |(_, lo)| v > lo || (v == lo && (v.is_sign_negative() == x.is_sign_negative()))) {
            best_lo = Some((b, v));
        }
        if v >= x && best_hi.map_or(true, |(_, hi)| v < hi || (v == hi && (v.is_sign_negative() == x.is_sign_negative()))) {
            best_hi = Some((b, v));
        }
    }
    let (lo, hi) = (best_lo.unwrap(), best_hi.unwrap());
    match mode {
        "rd" => lo.0,
        "ru" => hi.0,
        "rz" => {
            if x >= 0.0 {
                lo.0
            } else {
                hi.0
            }
        }
        _ => {
            // Past the largest finite value, infinity counts as one more ulp step (IEEE
            // overflow rule: round to infinity from max + ulp / 2 on).
            let virt = |(_, v): (u16, f32), other: (u16, f32)| -> f64 {
                if v.is_infinite() {
                    // `other` is the largest finite value of that sign; one bit pattern
                    // lower is one step toward zero.
                    let step = other.1 as f64 - to_f32(other.0 - 1) as f64;
                    other.1 as f64 + step
                } else {
                    v as f64
                }
            };
            let (lv, hv) = (virt(lo, hi), virt(hi, lo));
            let (dl, dh) = ((x as f64 - lv).abs(), (hv - x as f64).abs());
            if dl < dh || (dl == dh && lo.0 & 1 == 0) {
                lo.0
            } else {
                hi.0
            }
        }
    }
}

#[test]
fn conversions_all_rounding_modes() {
    let dev = Device::new();
    let m = common::load(&dev, "convert");
    let mut rng = Rng(12);
    let mut xs: Vec<f32> = (0..56).map(|i| rng.unit() * 10f32.powi(i % 7 - 3)).collect();
    // Ties, overflow, tiny values, integers, negative halves.
    xs.extend([1.0 + 2f32.powi(-11), 1.0 + 2f32.powi(-8), 70000.0, -70000.0, 1e-9, -2.5, 2.5, 3.0]);
    let n = xs.len();
    let pin = dev.upload(&xs).unwrap();
    let out = dev.alloc(n * 64).unwrap();
    dev.launch(&m, "convert_ops", &LaunchConfig::linear(1, n as u32), &Args::new().ptr(pin).ptr(out).slices(), &LaunchOptions::default()).unwrap();
    let v = dev.download::<u32>(out, n * 16).unwrap();
    let hf = |b: u16| f16::from_bits(b).to_f32();
    let bf = |b: u16| bf16::from_bits(b).to_f32();
    for (i, &x) in xs.iter().enumerate() {
        let y = xs[(i + 1) % n];
        let o = &v[i * 16..i * 16 + 16];
        for (k, mode) in ["rn", "rz", "rd", "ru"].iter().enumerate() {
            assert_eq!(o[k], round16(x, hf, mode) as u32, "f16 {mode} of {x:e}");
            assert_eq!(o[4 + k], round16(x, bf, mode) as u32, "bf16 {mode} of {x:e}");
        }
        // __floats2half2_rn(x, y) puts x in the low half: nvcc emits cvt.rn.f16x2.f32 d, y, x
        // (the first source goes to the upper half).
        assert_eq!(o[8], (round16(y, hf, "rn") as u32) << 16 | round16(x, hf, "rn") as u32, "half2 of ({x}, {y})");
        assert_eq!(o[9], (round16(y, bf, "rn") as u32) << 16 | round16(x, bf, "rn") as u32, "bfloat162 of ({x}, {y})");
        assert_eq!(f32::from_bits(o[10]), hf(round16(x, hf, "rn")));
        assert_eq!(f32::from_bits(o[11]), bf(round16(x, bf, "rn")));
        assert_eq!(o[12] as i32, x.round_ties_even() as i32, "rni of {x}");
        assert_eq!(o[13] as i32, x.floor() as i32, "rmi of {x}");
        assert_eq!(o[14] as i32, x.ceil() as i32, "rpi of {x}");
        assert_eq!(o[15], x as u32, "rzi.u32 of {x}");
    }
}

#[test]
fn special_functions_within_documented_error() {
    let dev = Device::new();
    let m = common::load(&dev, "convert");
    let mut rng = Rng(13);
    let xs: Vec<f32> = (0..64).map(|_| rng.unit() * 8.0).collect();
    let pin = dev.upload(&xs).unwrap();
    let out = dev.alloc(64 * 24).unwrap();
    let c = dev.launch(&m, "sfu_ops", &LaunchConfig::linear(1, 64), &Args::new().ptr(pin).ptr(out).slices(), &LaunchOptions::default()).unwrap();
    let v = dev.download::<f32>(out, 64 * 6).unwrap();
    let close = |got: f32, want: f64, rel: f64, what: &str| {
        assert!(((got as f64) - want).abs() <= rel * want.abs().max(1e-30), "{what}: {got} vs {want}");
    };
    for (i, &x) in xs.iter().enumerate() {
        let x64 = x as f64;
        let o = &v[i * 6..i * 6 + 6];
        // ex2.approx / lg2.approx / rsqrt.approx: the ISA bounds their error at about 2 ulp.
        close(o[0], x64.exp2(), 2.0 * f32::EPSILON as f64, "ex2");
        close(o[1], (x64.abs() + 1.0).log2(), 2.0 * f32::EPSILON as f64, "lg2");
        assert_eq!(o[2], 1.0 / x, "rcp.rn is correctly rounded");
        close(o[3], x64.abs().sqrt(), 2.0 * f32::EPSILON as f64, "sqrt.approx");
        close(o[4], 1.0 / (x64.abs() + 1.0).sqrt(), 2.0 * f32::EPSILON as f64, "rsqrt");
        // __expf is ex2.approx(x * log2 e): the multiply adds one more rounding.
        close(o[5], x64.exp(), 4.0 * f32::EPSILON as f64 * (1.0 + x64.abs()), "expf");
    }
    assert!(c.sfu >= 6 * 2, "each of the 64 threads' 2 warps issued the SFU ops");
}
