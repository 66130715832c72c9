//! Independent thread scheduling and addressing: generic pointers into shared or global
//! memory, named barriers with a thread count, __syncwarp reached from different branches,
//! reconvergence after lanes leave a loop at different times, and a mismatched collective
//! that must be reported instead of hanging. Also: an sm_90 target parses the same way.
mod common;

use common::load;
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions, SimError};

fn checked() -> LaunchOptions {
    LaunchOptions { racecheck: true, threads: 0, ..LaunchOptions::default() }
}

#[test]
fn generic_pointers_reach_shared_and_global() {
    let dev = Device::new();
    let m = load(&dev, "scheduling");
    for use_shared in [0i32, 1] {
        let g = dev.upload(&[-1.0f32; 128]).unwrap();
        let c = dev.launch(&m, "generic_pointers", &LaunchConfig::linear(1, 64), &Args::new().ptr(g).val(use_shared).slices(), &checked()).unwrap();
        let v = dev.download::<f32>(g, 128).unwrap();
        for t in 0..64 {
            assert_eq!(v[64 + t], (63 - t) as f32 * 2.0, "use_shared {use_shared}, thread {t}");
            // The first half of g is written only through the global path.
            assert_eq!(v[t], if use_shared == 1 { -1.0 } else { t as f32 * 2.0 });
        }
        if use_shared == 1 {
            assert!(c.shared_stores > 0 && c.shared_loads > 0, "{c:?}");
        } else {
            assert_eq!(c.shared_stores, 0);
        }
    }
}

#[test]
fn named_barrier_with_thread_count() {
    let dev = Device::new();
    let m = load(&dev, "scheduling");
    let out = dev.alloc(97 * 4).unwrap();
    dev.launch(&m, "named_barrier", &LaunchConfig::linear(2, 96), &Args::new().ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 97).unwrap();
    for t in 0..64u32 {
        assert_eq!(v[t as usize], (63 - t) * 7);
    }
    for t in 64..96u32 {
        assert_eq!(v[t as usize], t);
    }
    assert_eq!(v[96], 1234);
}

#[test]
fn syncwarp_from_different_branches() {
    let dev = Device::new();
    let m = load(&dev, "scheduling");
    let input: Vec<u32> = (0..32).map(|i| i * i).collect();
    let pin = dev.upload(&input).unwrap();
    let out = dev.alloc(128).unwrap();
    dev.launch(&m, "syncwarp_in_branches", &LaunchConfig::linear(1, 32), &Args::new().ptr(pin).ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 32).unwrap();
    for l in 0..32usize {
        let want = if l < 16 { input[l + 16] * 3 } else { input[l - 16] + 100 };
        assert_eq!(v[l], want, "lane {l}");
    }
}

#[test]
fn lanes_reconverge_after_loop() {
    let dev = Device::new();
    let m = load(&dev, "scheduling");
    let out = dev.alloc(128).unwrap();
    dev.launch(&m, "reconverge_then_shuffle", &LaunchConfig::linear(1, 32), &Args::new().ptr(out).slices(), &checked()).unwrap();
    let v = dev.download::<u32>(out, 32).unwrap();
    for l in 0..32u32 {
        let src = 31 - l;
        assert_eq!(v[l as usize], src * src.saturating_sub(1) / 2, "lane {l}");
    }
}

#[test]
fn mismatched_collectives_are_reported() {
    let dev = Device::new();
    let m = load(&dev, "scheduling");
    let out = dev.alloc(128).unwrap();
    let err = dev.launch(&m, "mismatched_shuffles", &LaunchConfig::linear(1, 32), &Args::new().ptr(out).slices(), &checked()).unwrap_err();
    match err {
        SimError::Execution { message, instr, .. } => {
            assert!(message.contains("never completes"), "{message}");
            assert!(instr.starts_with("shfl.sync"), "{instr}");
        }
        other => panic!("expected a collective deadlock report, got {other}"),
    }
}

#[test]
fn sm90_target_runs_the_same() {
    let dev = Device::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/scheduling.ptx")).unwrap();
    let text = text.replace(".target sm_80", ".target sm_90");
    assert!(text.contains(".target sm_90"));
    let m = dev.load_ptx(&text).unwrap();
    let out = dev.alloc(128).unwrap();
    dev.launch(&m, "reconverge_then_shuffle", &LaunchConfig::linear(1, 32), &Args::new().ptr(out).slices(), &checked()).unwrap();
    assert_eq!(dev.download::<u32>(out, 1).unwrap()[0], 31 * 30 / 2);
}
