//! Memory instructions: cp.async (sizes, ca / cg, zero fill, commit / wait groups),
//! atomics on global and shared memory, local arrays, vector accesses, and the counters
//! of global bytes and shared-memory bank conflicts.
mod common;

use common::load;
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions};

fn checked() -> LaunchOptions {
    LaunchOptions { racecheck: true, threads: 0, ..LaunchOptions::default() }
}

#[test]
fn cp_async_copies_and_zero_fill() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let src: Vec<u32> = (0..256u32).map(|i| 0x1000_0000 + i * 3).collect();
    let ps = dev.upload(&src).unwrap();
    let out = dev.alloc((32 * 12 + 32) * 4).unwrap();
    let c = dev.launch(&m, "cp_async_copy", &LaunchConfig::linear(1, 32), &Args::new().ptr(ps).ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 32 * 12 + 32).unwrap();
    for t in 0..32usize {
        let g = &src[t * 8..t * 8 + 8];
        // Slot 0 (4 bytes), 2..4 (8 bytes), 4..8 (16 bytes) copied; slot 1 never written.
        assert_eq!(v[t * 12], g[0], "thread {t}");
        assert_eq!(v[t * 12 + 1], 0xFFFF_FFFF, "thread {t}: uninitialised shared reads as 0xFF bytes");
        assert_eq!(&v[t * 12 + 2..t * 12 + 8], &g[2..8], "thread {t}");
        // Zero fill: the first (t % 17) bytes come from the source, the rest are zero.
        let n = t % 17;
        let mut want = [0u8; 16];
        let bytes: Vec<u8> = g[..4].iter().flat_map(|w| w.to_le_bytes()).collect();
        want[..n].copy_from_slice(&bytes[..n]);
        let got: Vec<u8> = v[t * 12 + 8..t * 12 + 12].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(got, want, "thread {t} zero fill of {n} bytes");
        // After wait_group 1 the first group (the 4-byte copy) is visible.
        assert_eq!(v[32 * 12 + t], g[0]);
    }
    assert_eq!(c.cp_async, 4);
    let filled: u64 = (0..32u64).map(|t| t % 17).sum();
    assert_eq!(c.global_load_bytes, 32 * (4 + 8 + 16) + filled);
}

#[test]
fn atomics_global_and_shared() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let n = 128i32;
    let g = dev.upload(&[0i32, 1000, -5, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let gu = dev.upload(&[0u32, u32::MAX, 0]).unwrap();
    let gf = dev.upload(&[0.0f32]).unwrap();
    let out = dev.alloc(n as usize * 4).unwrap();
    let c = dev.launch(&m, "atomics", &LaunchConfig::linear(1, n as u32), &Args::new().ptr(g).ptr(gu).ptr(gf).ptr(out).slices(), &checked()).unwrap();
    let gv = dev.download::<i32>(g, 12).unwrap();
    assert_eq!(gv[0], (0..n).sum::<i32>());
    assert_eq!(gv[1], 100 - (n - 1));
    assert_eq!(gv[2], 3 * (n - 1));
    assert_eq!(gv[3], 77);
    assert!((1..=n).contains(&gv[4]), "exactly one CAS wins: {}", gv[4]);
    // Shared results: sum, min(1<<30, t + 10), max, and inc with wrap at 1000.
    assert_eq!(&gv[8..12], &[(0..n).sum::<i32>(), 10, n - 1, n]);
    let guv = dev.download::<u32>(gu, 3).unwrap();
    assert_eq!(guv, vec![2 * n as u32, 5, n as u32 - 1]);
    assert_eq!(dev.download::<f32>(gf, 1).unwrap()[0], 0.5 * n as f32);
    let mut olds = dev.download::<i32>(out, n as usize).unwrap();
    olds.sort();
    assert_eq!(olds, (0..n).map(|i| 2 * i).collect::<Vec<_>>(), "atomicAdd returns distinct old values");
    assert!(c.global_atomics >= 4 && c.shared_atomics >= 4);
}

#[test]
fn local_arrays_and_vectors() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let idx: Vec<i32> = (0..32).map(|i| (i * 5 + 3) % 21).collect();
    let v: Vec<u32> = (0..64).map(|i| i * 11).collect();
    let (pi, pv) = (dev.upload(&idx).unwrap(), dev.upload(&v).unwrap());
    let out = dev.alloc(128).unwrap();
    let c = dev.launch(&m, "local_array", &LaunchConfig::linear(1, 32), &Args::new().ptr(pi).ptr(pv).ptr(out).slices(), &checked()).unwrap();
    let o = dev.download::<i32>(out, 32).unwrap();
    for t in 0..32usize {
        assert_eq!(o[t], (idx[t] & 15) * t as i32 + v[2 * t] as i32 + v[2 * t + 1] as i32, "thread {t}");
    }
    assert!(c.local_accesses > 0);

    let data: Vec<f32> = (0..256).map(|i| i as f32).collect();
    let pin = dev.upload(&data).unwrap();
    let pout = dev.alloc(1024).unwrap();
    dev.launch(&m, "vectors", &LaunchConfig::linear(1, 64), &Args::new().ptr(pin).ptr(pout).slices(), &checked()).unwrap();
    let r = dev.download::<f32>(pout, 256).unwrap();
    for t in 0..64 {
        let s = 63 - t;
        assert_eq!(&r[4 * t..4 * t + 4], &[data[4 * s + 3], data[4 * s + 2], data[4 * s + 1], data[4 * s]]);
    }
}

#[test]
fn bank_conflict_counters() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let out = dev.alloc(128).unwrap();
    let mut conflicts = Vec::new();
    for stride in [1i32, 2, 32, 33] {
        let c = dev.launch(&m, "bank_stride", &LaunchConfig::linear(1, 32), &Args::new().ptr(out).val(stride).slices(), &checked()).unwrap();
        let v = dev.download::<u32>(out, 32).unwrap();
        for t in 0..32u32 {
            assert_eq!(v[t as usize], (t * stride as u32) % (32 * 33));
        }
        conflicts.push(c.shared_bank_conflicts);
    }
    // The fill loop is conflict free; the strided read adds 0, 1, 31 and 0 extra wavefronts.
    assert_eq!(conflicts, vec![0, 1, 31, 0]);
}

#[test]
fn module_constants_and_globals() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let out = dev.alloc(65 * 4).unwrap();
    dev.launch(&m, "const_and_globals", &LaunchConfig::linear(1, 64), &Args::new().ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<i32>(out, 65).unwrap();
    let table = [3, 1, 4, 1, 5, 9, 2, 6];
    for t in 0..64 {
        assert_eq!(v[t], table[t & 7] * 10 + table[(t + 3) & 7], "thread {t}");
    }
    assert_eq!(v[64], 64, "every thread incremented the module-scope counter once");
}

#[test]
fn cp_async_ignore_src_reads_nothing() {
    let dev = Device::new();
    let m = load(&dev, "memory");
    let src: Vec<u32> = (0..128u32).map(|i| i + 7).collect();
    let ps = dev.upload(&src).unwrap();
    let out = dev.alloc(512).unwrap();
    dev.launch(&m, "cp_async_ignore_src", &LaunchConfig::linear(1, 32), &Args::new().ptr(ps).ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 128).unwrap();
    for t in 0..32usize {
        let want: &[u32] = if t & 1 == 1 { &[0; 4] } else { &src[t * 4..t * 4 + 4] };
        assert_eq!(&v[t * 4..t * 4 + 4], want, "thread {t}");
    }
}

#[test]
fn cp_async_in_the_forms_cutlass_emits() {
    // nvcc's PTX for CUTLASS-style inline assembly: cp.async.cg ... .L2::128B with src-size,
    // createpolicy, and ld / st with .L2::cache_hint and the policy operand.
    let dev = Device::new();
    let m = load(&dev, "memory");
    let src: Vec<u32> = (0..128u32).map(|i| i * 7 + 1).collect();
    let ps = dev.upload(&src).unwrap();
    let out = dev.alloc(160 * 4).unwrap();
    let valid = 20;
    let c = dev.launch(&m, "cp_async_cutlass_forms", &LaunchConfig::linear(1, 32), &Args::new().ptr(ps).ptr(out).val(valid).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 160).unwrap();
    for t in 0..32usize {
        let want: &[u32] = if t < valid as usize { &src[t * 4..t * 4 + 4] } else { &[0; 4] };
        assert_eq!(&v[t * 4..t * 4 + 4], want, "thread {t}");
        assert_eq!(v[128 + t], src[t * 4], "thread {t}: ld.global.L2::cache_hint");
    }
    // One warp-level 16-byte cp.async of 32 consecutive 16-byte rows: one 512-byte shared
    // store in 4 conflict-free wavefronts. The four 4-byte reads s[t * 4 + i] that follow
    // have a 16-byte stride, so lanes t, t + 8, t + 16 and t + 24 share a bank: 4 ways each.
    assert_eq!((c.cp_async, c.shared_stores, c.shared_store_bytes), (1, 1, 512));
    assert_eq!((c.shared_wavefronts, c.shared_bank_conflicts), (4 + 4 * 4, 4 * 3));
}
