//! Warp collectives and barriers under independent thread scheduling: shfl (all modes and
//! segment widths), vote, redux, bar.warp.sync with divergent lanes, and bar.sync.
mod common;

use common::{load, Rng};
use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions};

fn run(dev: &Device, m: &ptx_sim::Module, k: &str, cfg: LaunchConfig, args: Args) -> ptx_sim::Counters {
    dev.launch(m, k, &cfg, &args.slices(), &LaunchOptions { racecheck: true, threads: 0, ..LaunchOptions::default() }).unwrap()
}

/// shfl.sync as the PTX ISA defines it, for one lane: `c` packs clamp and segment mask.
fn shfl_ref(vals: &[u32], lane: usize, mode: &str, b: usize, width: usize) -> u32 {
    let seg = lane / width * width;
    let j = match mode {
        "idx" => seg + b % width,
        "up" => {
            if lane >= seg + b {
                lane - b
            } else {
                lane
            }
        }
        "down" => {
            if lane + b < seg + width {
                lane + b
            } else {
                lane
            }
        }
        _ => {
            if (lane ^ b) < seg + width {
                lane ^ b
            } else {
                lane
            }
        }
    };
    vals[j]
}

#[test]
fn shuffles_all_modes() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let mut rng = Rng(5);
    for (src_lane, delta) in [(0i32, 1i32), (13, 5), (31, 16), (40, 31)] {
        let n = 64usize;
        let vals: Vec<u32> = (0..n).map(|_| rng.next_u32()).collect();
        let pin = dev.upload(&vals).unwrap();
        let out = dev.alloc(n * 24).unwrap();
        run(&dev, &m, "shuffles", LaunchConfig::linear(1, 64), Args::new().ptr(pin).ptr(out).val(src_lane).val(delta));
        let v = dev.download::<u32>(out, n * 6).unwrap();
        for t in 0..n {
            let (w, lane) = (&vals[t / 32 * 32..t / 32 * 32 + 32], t % 32);
            let (s, d) = (src_lane as usize, delta as usize);
            let want = [
                shfl_ref(w, lane, "idx", s, 32),
                shfl_ref(w, lane, "up", d, 32),
                shfl_ref(w, lane, "down", d, 32),
                shfl_ref(w, lane, "bfly", d, 32),
                shfl_ref(w, lane, "idx", (lane ^ 5) % 8, 8),
                shfl_ref(w, lane, "down", 1, 16),
            ];
            assert_eq!(&v[t * 6..t * 6 + 6], &want, "thread {t}, src_lane {src_lane}, delta {delta}");
        }
    }
}

#[test]
fn quad_butterfly_reduction() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let vals: Vec<f32> = (0..32).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
    let pin = dev.upload(&vals).unwrap();
    let (pmax, psum) = (dev.alloc(128).unwrap(), dev.alloc(128).unwrap());
    run(&dev, &m, "quad_reduce", LaunchConfig::linear(1, 32), Args::new().ptr(pin).ptr(pmax).ptr(psum));
    let (mx, sm) = (dev.download::<f32>(pmax, 32).unwrap(), dev.download::<f32>(psum, 32).unwrap());
    for l in 0..32 {
        let q = &vals[l / 4 * 4..l / 4 * 4 + 4];
        assert_eq!(mx[l], q.iter().cloned().fold(f32::MIN, f32::max));
        assert_eq!(sm[l], q.iter().sum::<f32>());
    }
}

#[test]
fn votes_and_partial_member_masks() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let preds: Vec<i32> = (0..32).map(|i| ((i * 7) % 3 == 0) as i32).collect();
    let pin = dev.upload(&preds).unwrap();
    let out = dev.alloc(32 * 20).unwrap();
    run(&dev, &m, "votes", LaunchConfig::linear(1, 32), Args::new().ptr(pin).ptr(out));
    let v = dev.download::<u32>(out, 32 * 5).unwrap();
    let ballot: u32 = (0..32).filter(|&i| preds[i] != 0).map(|i| 1u32 << i).sum();
    let odd_ballot = ballot & 0xAAAA_AAAA;
    let odd_sum: u32 = (0..32u32).filter(|i| i & 1 == 1).map(|i| preds[i as usize] as u32 + i).sum();
    let even_max: u32 = (0..32u32).filter(|i| i & 1 == 0).map(|i| preds[i as usize] as u32 * 7 + i).max().unwrap();
    for l in 0..32usize {
        let o = &v[l * 5..l * 5 + 5];
        assert_eq!(o[0], ballot, "lane {l}");
        assert_eq!(o[1], 1);
        assert_eq!(o[2], 0);
        if l & 1 == 1 {
            assert_eq!(o[3], odd_ballot);
            assert_eq!(o[4], odd_sum);
        } else {
            assert_eq!(o[3], 0);
            assert_eq!(o[4], even_max);
        }
    }
}

#[test]
fn redux_operations() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let mut rng = Rng(9);
    let vals: Vec<u32> = (0..32).map(|_| rng.next_u32()).collect();
    let pin = dev.upload(&vals).unwrap();
    let out = dev.alloc(32 * 24).unwrap();
    run(&dev, &m, "redux_ops", LaunchConfig::linear(1, 32), Args::new().ptr(pin).ptr(out));
    let v = dev.download::<u32>(out, 32 * 6).unwrap();
    let want = [
        vals.iter().fold(0u32, |s, x| s.wrapping_add(*x)),
        *vals.iter().min().unwrap(),
        *vals.iter().max().unwrap(),
        vals.iter().map(|x| *x as i32).min().unwrap() as u32,
        vals.iter().map(|x| *x as i32).max().unwrap() as u32,
        vals.iter().fold(u32::MAX, |s, x| s & x) ^ vals.iter().fold(0, |s, x| s | x) ^ vals.iter().fold(0, |s, x| s ^ x),
    ];
    for l in 0..32 {
        assert_eq!(&v[l * 6..l * 6 + 6], &want, "lane {l}");
    }
}

#[test]
fn block_tree_reduction_with_barriers() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let (blocks, threads) = (6usize, 256usize);
    let vals: Vec<f32> = (0..blocks * threads).map(|i| (i % 17) as f32).collect();
    let pin = dev.upload(&vals).unwrap();
    let out = dev.alloc(blocks * 4).unwrap();
    let cfg = LaunchConfig { grid: [blocks as u32, 1, 1], block: [threads as u32, 1, 1], dynamic_shared_bytes: (threads * 4) as u32 };
    let c = run(&dev, &m, "block_sum", cfg, Args::new().ptr(pin).ptr(out));
    let v = dev.download::<f32>(out, blocks).unwrap();
    for b in 0..blocks {
        assert_eq!(v[b], vals[b * threads..(b + 1) * threads].iter().sum::<f32>(), "block {b}");
    }
    // One barrier after the load plus one per halving step (8 steps for 256), per warp.
    assert_eq!(c.barriers, (blocks * (threads / 32) * 9) as u64);
}

#[test]
fn syncwarp_orders_divergent_lanes() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let out = dev.alloc(128).unwrap();
    run(&dev, &m, "syncwarp_exchange", LaunchConfig::linear(1, 32), Args::new().ptr(out));
    let v = dev.download::<u32>(out, 32).unwrap();
    for l in 0..32u32 {
        let src = 31 - l;
        assert_eq!(v[l as usize], if src & 1 == 1 { src * 3 } else { src * 5 });
    }
}

#[test]
fn results_and_counters_do_not_depend_on_host_threads() {
    let dev = Device::new();
    let m = load(&dev, "collectives");
    let (blocks, threads) = (37usize, 128usize);
    let vals: Vec<f32> = (0..blocks * threads).map(|i| ((i * 7919) % 1000) as f32 * 0.001).collect();
    let pin = dev.upload(&vals).unwrap();
    let cfg = LaunchConfig { grid: [blocks as u32, 1, 1], block: [threads as u32, 1, 1], dynamic_shared_bytes: (threads * 4) as u32 };
    let mut seen = Vec::new();
    for host_threads in [1usize, 2, 5] {
        let out = dev.alloc(blocks * 4).unwrap();
        let opts = LaunchOptions { threads: host_threads, ..LaunchOptions::default() };
        let c = dev.launch(&m, "block_sum", &cfg, &Args::new().ptr(pin).ptr(out).slices(), &opts).unwrap();
        seen.push((dev.download::<f32>(out, blocks).unwrap(), c));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
}
