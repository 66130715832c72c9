//! Planted bugs are reported at the right place: an out-of-bounds write, a misaligned load,
//! a shared-memory race (racecheck) and a barrier that only some threads reach. Also: broken
//! PTX and wild pointers give errors, never panics.
mod common;

use common::{load, Rng};
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions, SimError};

fn fixture_text(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}.ptx", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// 1-based line of the first line containing `needle` inside the body of `kernel`.
fn line_in(text: &str, kernel: &str, needle: &str) -> u32 {
    let start = text.lines().position(|l| l.contains(&format!(".entry {kernel}("))).expect("kernel present");
    let off = text.lines().skip(start).position(|l| l.contains(needle)).expect("instruction present");
    (start + off + 1) as u32
}

#[test]
fn out_of_bounds_write_names_block_thread_line_and_address() {
    let dev = Device::new();
    let m = load(&dev, "planted");
    let n = 256usize;
    let out = dev.alloc(n * 4).unwrap();
    // More threads than 2 CPU workers can run at once: the report must still be block 1's.
    let err = dev.launch(&m, "oob_write", &LaunchConfig::linear(2, 128), &Args::new().ptr(out).val(n as i32).slices(), &LaunchOptions::default()).unwrap_err();
    match err {
        SimError::Memory(f) => {
            let ptx_sim::MemoryFault { site, addr, size, reason, instr, space } = *f;
            assert_eq!(site.kernel, "oob_write");
            assert_eq!(site.block, [1, 0, 0]);
            assert_eq!(site.thread, [37, 0, 0]);
            assert_eq!(site.line, line_in(&fixture_text("planted"), "oob_write", "st.global.u32"));
            assert_eq!(addr, out.0 + 4 * n as u64);
            assert_eq!(size, 4);
            assert_eq!(space, "global");
            assert!(instr.starts_with("st.global.u32"), "{instr}");
            assert!(reason.contains("out of bounds"), "{reason}");
        }
        other => panic!("expected a memcheck error, got {other}"),
    }
    // The in-bounds part of the grid still ran: block 0 wrote all its elements.
    assert!(dev.download::<f32>(out, 128).unwrap().iter().all(|&x| x == 1.0));
}

#[test]
fn misaligned_load_is_reported() {
    let dev = Device::new();
    let m = load(&dev, "planted");
    let p = dev.alloc(256).unwrap();
    let out = dev.alloc(256).unwrap();
    let err = dev.launch(&m, "misaligned_load", &LaunchConfig::linear(1, 32), &Args::new().ptr(p).ptr(out).slices(), &LaunchOptions::default()).unwrap_err();
    match err {
        SimError::Memory(f) => {
            let ptx_sim::MemoryFault { site, addr, reason, .. } = *f;
            assert_eq!(site.thread, [0, 0, 0]);
            assert_eq!(addr, p.0 + 2);
            assert!(reason.contains("misaligned"), "{reason}");
        }
        other => panic!("expected a memcheck error, got {other}"),
    }
}

#[test]
fn shared_race_is_found_by_racecheck_only() {
    let dev = Device::new();
    let m = load(&dev, "planted");
    let out = dev.alloc(256).unwrap();
    let cfg = LaunchConfig::linear(1, 64);
    let args = Args::new().ptr(out);
    // Without racecheck the kernel runs (and happens to give the sequential result).
    dev.launch(&m, "shared_race", &cfg, &args.slices(), &LaunchOptions::default()).unwrap();
    let err = dev.launch(&m, "shared_race", &cfg, &args.slices(), &LaunchOptions { racecheck: true, threads: 1, ..LaunchOptions::default() }).unwrap_err();
    let text = fixture_text("planted");
    match err {
        SimError::Race(f) => {
            let ptx_sim::RaceFault { site, kind, addr, other_thread, other_line, .. } = *f;
            assert_eq!(kind, "read-after-write");
            assert_eq!(site.thread, [0, 0, 0], "thread 0 reads s[1]");
            assert_eq!(other_thread, [1, 0, 0], "thread 1 wrote it");
            assert_eq!(addr, 4);
            assert_eq!(site.line, line_in(&text, "shared_race", "ld.shared.u32"));
            assert_eq!(other_line, line_in(&text, "shared_race", "st.shared.u32"));
        }
        other => panic!("expected a race, got {other}"),
    }
    // The same exchange with __syncthreads() in between is clean.
    dev.launch(&m, "shared_no_race", &cfg, &args.slices(), &LaunchOptions { racecheck: true, threads: 1, ..LaunchOptions::default() }).unwrap();
    let v = dev.download::<u32>(out, 64).unwrap();
    assert_eq!(v, (0..64u32).map(|t| t ^ 1).collect::<Vec<_>>());
}

#[test]
fn barrier_divergence_is_reported_not_hung() {
    let dev = Device::new();
    let m = load(&dev, "planted");
    let out = dev.alloc(256).unwrap();
    let err = dev.launch(&m, "barrier_divergence", &LaunchConfig::linear(1, 64), &Args::new().ptr(out).slices(), &LaunchOptions::default()).unwrap_err();
    match err {
        SimError::Barrier { kernel, block, line, message } => {
            assert_eq!(kernel, "barrier_divergence");
            assert_eq!(block, [0, 0, 0]);
            assert_eq!(line, line_in(&fixture_text("planted"), "barrier_divergence", "bar.sync"));
            assert!(message.contains("40 of 64 threads arrived"), "{message}");
            assert!(message.contains("thread (40,0,0) exited"), "{message}");
        }
        other => panic!("expected a barrier error, got {other}"),
    }
}

#[test]
fn wild_pointers_give_errors_not_panics() {
    let dev = Device::new();
    let m = load(&dev, "basics");
    let mut rng = Rng(99);
    let good = dev.alloc(4096).unwrap();
    for _ in 0..50 {
        let wild = [0u64, 8, u64::MAX - 3, good.0 + 4096, good.0.wrapping_sub(4), rng.next_u64()][rng.range(0, 6) as usize];
        let args = Args::new().ptr(good).ptr(ptx_sim::DevicePtr(wild)).ptr(good).val(1000i32);
        let r = dev.launch(&m, "vec_add", &LaunchConfig::linear(8, 128), &args.slices(), &LaunchOptions::default());
        assert!(matches!(r, Err(SimError::Memory(_))), "{wild:#x}: {r:?}");
    }
}

#[test]
fn mangled_ptx_gives_parse_errors_not_panics() {
    let dev = Device::new();
    let text = fixture_text("mma");
    let mut rng = Rng(1234);
    let bytes = text.as_bytes();
    let mut errors = 0;
    for _ in 0..300 {
        let mut t = bytes.to_vec();
        for _ in 0..rng.range(1, 4) {
            let i = rng.range(0, t.len() as i64) as usize;
            match rng.range(0, 3) {
                0 => {
                    t.remove(i);
                }
                1 => t[i] = b"{}[];,.%+-|!@x0"[rng.range(0, 15) as usize],
                _ => t.truncate(i),
            }
        }
        let s = String::from_utf8_lossy(&t);
        if dev.load_ptx(&s).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 100, "most mangled modules should be rejected ({errors})");
}

#[test]
fn parse_errors_name_line_and_token() {
    let dev = Device::new();
    let ptx = ".version 9.0\n.target sm_80\n.address_size 64\n.visible .entry k(\n.param .u64 p\n)\n{\n.reg .b32 %r<3>;\nadd.s32 %r1, %r2, %r9;\nret;\n}\n";
    match dev.load_ptx(ptx).unwrap_err() {
        SimError::Parse { line, token, message } => {
            assert_eq!(line, 9);
            assert_eq!(token, "add.s32");
            assert!(message.contains("%r9"), "{message}");
        }
        other => panic!("{other}"),
    }
    let ptx2 = ptx.replace("add.s32 %r1, %r2, %r9;", "frobnicate.u32 %r1;");
    match dev.load_ptx(&ptx2).unwrap_err() {
        SimError::Parse { line, token, message } => {
            assert_eq!((line, token.as_str()), (9, "frobnicate.u32"));
            assert!(message.contains("unsupported instruction"));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn reading_before_cp_async_wait_is_a_race() {
    let dev = Device::new();
    let m = load(&dev, "planted");
    let src = dev.upload(&(0..256u32).collect::<Vec<_>>()).unwrap();
    let out = dev.alloc(256).unwrap();
    let cfg = LaunchConfig::linear(1, 64);
    let args = Args::new().ptr(src).ptr(out);
    let err = dev.launch(&m, "cp_async_missing_wait", &cfg, &args.slices(), &LaunchOptions { racecheck: true, threads: 1, ..LaunchOptions::default() }).unwrap_err();
    let text = fixture_text("planted");
    match err {
        SimError::Race(f) => {
            assert_eq!(f.kind, "read-before-cp.async-wait");
            // Which reader is caught first depends on warp scheduling; the pairing does not.
            let t = f.site.thread[0];
            assert_eq!(f.other_thread, [t ^ 1, 0, 0], "thread {t} reads the slot its neighbour's cp.async fills");
            assert_eq!(f.site.line, line_in(&text, "cp_async_missing_wait", "ld.shared.u32"));
            assert_eq!(f.other_line, line_in(&text, "cp_async_missing_wait", "cp.async.cg"));
        }
        other => panic!("expected a race, got {other}"),
    }
    // Without racecheck the read sees the old (uninitialised) contents: the copy only lands
    // at the wait, as it may on hardware.
    dev.launch(&m, "cp_async_missing_wait", &cfg, &args.slices(), &LaunchOptions::default()).unwrap();
    assert_eq!(dev.download::<u32>(out, 1).unwrap()[0], 0xFFFF_FFFF);
}
