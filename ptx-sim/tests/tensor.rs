//! Tensor-core instructions against the documented fragment layouts (PTX ISA, "Matrix
//! Fragments for mma.m16n8k16 / m16n8k8 with floating point type", and ldmatrix). The `*_doc` kernels load every fragment register by the
//! documented formula, so a correct product means the simulator's mma reads and writes the
//! documented positions. Small integers make every product and sum exact in f16 / bf16 and
//! f32, so results are compared exactly.
mod common;

use common::{load, Rng};
use half::{bf16, f16};
use ptx_sim::{Args, Device, DevicePtr, LaunchConfig, LaunchOptions, Module};

fn ints(rng: &mut Rng, n: usize, lo: i64, hi: i64) -> Vec<f32> {
    (0..n).map(|_| rng.range(lo, hi) as f32).collect()
}

fn bits(v: &[f32], bf: bool) -> Vec<u16> {
    v.iter().map(|&x| if bf { bf16::from_f32(x).to_bits() } else { f16::from_f32(x).to_bits() }).collect()
}

/// D = A (m x k, row-major) * B (k x n, row-major) + C.
fn matmul(a: &[f32], b: &[f32], c: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut d = c.to_vec();
    for i in 0..m {
        for j in 0..n {
            for kk in 0..k {
                d[i * n + j] += a[i * k + kk] * b[kk * n + j];
            }
        }
    }
    d
}

fn launch(dev: &Device, m: &Module, k: &str, ptrs: &[DevicePtr]) {
    let args = ptrs.iter().fold(Args::new(), |a, p| a.ptr(*p));
    let c = dev.launch(m, k, &LaunchConfig::linear(1, 32), &args.slices(), &LaunchOptions { racecheck: true, threads: 1, ..LaunchOptions::default() }).unwrap();
    assert!(c.mma >= 1 || !k.starts_with("mma"), "{k} issued no mma");
}

#[test]
fn mma_m16n8k16_f32_accumulate_documented_layout() {
    for (kernel, bf) in [("mma_f16_f32_doc", false), ("mma_bf16_f32_doc", true)] {
        let dev = Device::new();
        let m = load(&dev, "mma");
        let mut rng = Rng(21 + bf as u64);
        let (a, b, c) = (ints(&mut rng, 256, -4, 5), ints(&mut rng, 128, -4, 5), ints(&mut rng, 128, -50, 50));
        let (pa, pb) = (dev.upload(&bits(&a, bf)).unwrap(), dev.upload(&bits(&b, bf)).unwrap());
        let (pc, pd) = (dev.upload(&c).unwrap(), dev.alloc(512).unwrap());
        launch(&dev, &m, kernel, &[pa, pb, pc, pd]);
        assert_eq!(dev.download::<f32>(pd, 128).unwrap(), matmul(&a, &b, &c, 16, 8, 16), "{kernel}");
    }
}

#[test]
fn mma_m16n8k16_f16_accumulate_documented_layout() {
    let dev = Device::new();
    let m = load(&dev, "mma");
    let mut rng = Rng(33);
    let (a, b, c) = (ints(&mut rng, 256, -4, 5), ints(&mut rng, 128, -4, 5), ints(&mut rng, 128, -50, 50));
    let (pa, pb) = (dev.upload(&bits(&a, false)).unwrap(), dev.upload(&bits(&b, false)).unwrap());
    let (pc, pd) = (dev.upload(&bits(&c, false)).unwrap(), dev.alloc(256).unwrap());
    launch(&dev, &m, "mma_f16_f16_doc", &[pa, pb, pc, pd]);
    let d: Vec<f32> = dev.download::<u16>(pd, 128).unwrap().into_iter().map(|h| f16::from_bits(h).to_f32()).collect();
    assert_eq!(d, matmul(&a, &b, &c, 16, 8, 16));
}

#[test]
fn mma_m16n8k8_documented_layout() {
    for (kernel, bf) in [("mma_k8_f16_doc", false), ("mma_k8_bf16_doc", true)] {
        let dev = Device::new();
        let m = load(&dev, "mma");
        let mut rng = Rng(44 + bf as u64);
        let (a, b, c) = (ints(&mut rng, 128, -8, 9), ints(&mut rng, 64, -8, 9), ints(&mut rng, 128, -9, 9));
        let (pa, pb) = (dev.upload(&bits(&a, bf)).unwrap(), dev.upload(&bits(&b, bf)).unwrap());
        let (pc, pd) = (dev.upload(&c).unwrap(), dev.alloc(512).unwrap());
        launch(&dev, &m, kernel, &[pa, pb, pc, pd]);
        assert_eq!(dev.download::<f32>(pd, 128).unwrap(), matmul(&a, &b, &c, 16, 8, 8), "{kernel}");
    }
}

#[test]
fn mma_with_ldmatrix_fragments_plain_and_trans() {
    let dev = Device::new();
    let m = load(&dev, "mma");
    let mut rng = Rng(55);
    let (a, b) = (ints(&mut rng, 256, -4, 5), ints(&mut rng, 128, -4, 5));
    // B as [k][n] (V-style, read with .trans) and as [n][k] (K-style, read plainly).
    let bnk: Vec<f32> = (0..128).map(|i| b[(i % 16) * 8 + i / 16]).collect();
    let pa = dev.upload(&bits(&a, false)).unwrap();
    let (pkn, pnk) = (dev.upload(&bits(&b, false)).unwrap(), dev.upload(&bits(&bnk, false)).unwrap());
    let (pt, pp) = (dev.alloc(512).unwrap(), dev.alloc(512).unwrap());
    launch(&dev, &m, "mma_ldmatrix", &[pa, pkn, pnk, pt, pp]);
    let want = matmul(&a, &b, &[0.0; 128], 16, 8, 16);
    assert_eq!(dev.download::<f32>(pt, 128).unwrap(), want, "ldmatrix .trans path");
    assert_eq!(dev.download::<f32>(pp, 128).unwrap(), want, "ldmatrix plain path");
}

#[test]
fn ldmatrix_register_contents() {
    let dev = Device::new();
    let m = load(&dev, "mma");
    // Element (row r, col c) of the 32 x 8 tile holds r * 8 + c, so each value names its place.
    let src: Vec<u16> = (0..256u16).collect();
    let ps = dev.upload(&src).unwrap();
    let out = dev.alloc(32 * 14 * 4).unwrap();
    launch(&dev, &m, "ldmatrix_raw", &[ps, out]);
    let v = dev.download::<u32>(out, 32 * 14).unwrap();
    let e = |r: u32, c: u32| r * 8 + c;
    for l in 0..32u32 {
        let (g, t) = (l / 4, l % 4);
        let plain = |i: u32| e(8 * i + g, 2 * t) | e(8 * i + g, 2 * t + 1) << 16;
        let trans = |i: u32| e(8 * i + 2 * t, g) | e(8 * i + 2 * t + 1, g) << 16;
        let want = [plain(0), plain(0), plain(1), plain(0), plain(1), plain(2), plain(3), trans(0), trans(0), trans(1), trans(0), trans(1), trans(2), trans(3)];
        assert_eq!(&v[l as usize * 14..l as usize * 14 + 14], &want, "lane {l}");
    }
}

#[test]
fn mma_random_values_within_accumulation_tolerance() {
    // Non-integer data: the simulator rounds the exact sum once; the reference sums in f64.
    // The difference must stay within half an f32 ulp of the result (one rounding).
    let dev = Device::new();
    let m = load(&dev, "mma");
    let mut rng = Rng(66);
    let a: Vec<f32> = (0..256).map(|_| f16::from_f32(rng.unit()).to_f32()).collect();
    let b: Vec<f32> = (0..128).map(|_| f16::from_f32(rng.unit()).to_f32()).collect();
    let c: Vec<f32> = (0..128).map(|_| rng.unit()).collect();
    let (pa, pb) = (dev.upload(&bits(&a, false)).unwrap(), dev.upload(&bits(&b, false)).unwrap());
    let (pc, pd) = (dev.upload(&c).unwrap(), dev.alloc(512).unwrap());
    launch(&dev, &m, "mma_f16_f32_doc", &[pa, pb, pc, pd]);
    let d = dev.download::<f32>(pd, 128).unwrap();
    for i in 0..16 {
        for j in 0..8 {
            let exact: f64 = c[i * 8 + j] as f64 + (0..16).map(|k| a[i * 16 + k] as f64 * b[k * 8 + j] as f64).sum::<f64>();
            assert_eq!(d[i * 8 + j], exact as f32, "({i}, {j})");
        }
    }
}
