//! Device functions kept out of line by nvcc: scalar and by-value struct arguments and
//! results, nested calls, calls from divergent branches; recursion is refused at load.
mod common;

use common::load;
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions, SimError};

#[test]
fn calls_with_scalars_structs_nesting_and_divergence() {
    let dev = Device::new();
    let m = load(&dev, "calls");
    let n = 64usize;
    let input: Vec<i32> = (0..n as i32).map(|i| i * 5 - 40).collect();
    let pin = dev.upload(&input).unwrap();
    let (out, fout) = (dev.alloc(n * 4).unwrap(), dev.alloc(n * 8).unwrap());
    let c = dev
        .launch(&m, "calls", &LaunchConfig::linear(1, n as u32), &Args::new().ptr(pin).ptr(out).ptr(fout).slices(), &LaunchOptions { racecheck: true, ..LaunchOptions::default() })
        .unwrap();
    let r = dev.download::<i32>(out, n).unwrap();
    let f = dev.download::<f32>(fout, 2 * n).unwrap();
    for t in 0..n {
        let v = input[t];
        let want = if t & 1 == 1 { v * 3 + t as i32 } else { (v * 3 + 1) + 1 };
        assert_eq!(r[t], want, "thread {t}");
        assert_eq!((f[2 * t], f[2 * t + 1]), (v as f32 * 0.5, t as f32 * 0.5), "thread {t}");
    }
    assert!(c.control > 0);
}

#[test]
fn recursion_is_refused_at_load() {
    let dev = Device::new();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recursion.ptx")).unwrap();
    match dev.load_ptx(&text).unwrap_err() {
        SimError::Parse { line, token, message } => {
            assert!(message.contains("recursive"), "{message}");
            let call_line = text.lines().position(|l| l.contains("call.uni")).unwrap() as u32 + 1;
            assert!(line >= call_line, "line {line} names a call (the first is at {call_line})");
            assert!(token.contains("fib"), "{token}");
        }
        other => panic!("{other}"),
    }
}
