//! Varlen (packed) prefill attention on the PTX simulator against the varlen CPU reference:
//! sequences of lengths 1, 63, 64, 65 and 1000 in one batch, empty sequences (no output
//! rows, no faults: memcheck is always on), keys longer and shorter than the queries
//! (bottom-right causal per sequence), GQA 4:1 and 1:1, f16 and bf16, head_dim 64 and 128,
//! dense, block-sparse, A-shape and top-k. Plus what the host refuses before a launch.

mod attention_cases;
mod common;

use attention_cases::{random_block_sparse, Rng};
use attention_cases::compare_varlen as compare;
use sparse_attn::pattern::{BlockSparse, Dense};
use sparse_attn::reference::{varlen_block_sparse_attention, varlen_dense_attention, varlen_topk_attention, VarlenInputs};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, Error, SparsePattern, Varlen};

/// A varlen batch: per sequence (query rows, keys).
struct Batch {
    lens: Vec<(usize, usize)>,
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
}

impl Batch {
    fn varlen(&self) -> Varlen {
        let prefix = |f: fn(&(usize, usize)) -> usize| {
            std::iter::once(0).chain(self.lens.iter().scan(0, |acc, l| {
                *acc += f(l) as i32;
                Some(*acc)
            }))
            .collect::<Vec<i32>>()
        };
        Varlen::new(prefix(|l| l.0), prefix(|l| l.1)).unwrap()
    }
    /// Batch and the longest sequences.
    fn shape(&self) -> AttnShape {
        let max_q = self.lens.iter().map(|l| l.0).max().unwrap().max(1);
        let max_k = self.lens.iter().map(|l| l.1).max().unwrap().max(1);
        AttnShape::new(self.lens.len(), max_q, max_k, self.heads_q, self.heads_kv, self.head_dim).unwrap()
    }
}

fn label(name: &str, dtype: DType, b: &Batch, causal: bool) -> String {
    format!("{name} {} lens {:?} hq{} hkv{} d{} causal={causal}", dtype.name(), b.lens, b.heads_q, b.heads_kv, b.head_dim)
}

/// Packed random inputs of the batch.
fn inputs<T: AttnDtype>(b: &Batch, seed: u64) -> (Vec<T>, Vec<T>, Vec<T>) {
    let vl = b.varlen();
    let mut rng = Rng::new(seed);
    let mut tensor = |n: usize| (0..n).map(|_| T::from_f32(rng.normal() as f32)).collect::<Vec<T>>();
    let (q, k, v) = (tensor(vl.total_q() * b.heads_q * b.head_dim), tensor(vl.total_k() * b.heads_kv * b.head_dim), tensor(vl.total_k() * b.heads_kv * b.head_dim));
    (q, k, v)
}

/// Runs dense (and, with `blocks`, block-sparse) varlen attention on the simulator and
/// compares it with the reference.
fn run<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, b: &Batch, causal: bool, blocks: Option<&BlockSparse>, seed: u64) {
    let (shape, vl) = (b.shape(), b.varlen());
    let dtype = T::DTYPE;
    let (q, k, v) = inputs::<T>(b, seed);
    let opts = AttnOptions { causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let ref_inputs = VarlenInputs::new(shape, vl.clone(), &q, &k, &v).unwrap();
    let tensors = HostTensors { q: &q, k: &k, v: &v, sinks: None };
    let (name, got, want) = match blocks {
        None => {
            let got = sim.attention_varlen(&shape, &vl, &opts, tensors, &Dense.source(&shape).unwrap());
            ("dense", got, varlen_dense_attention(&ref_inputs, &opts).unwrap())
        }
        Some(bs) => {
            let got = sim.attention_varlen(&shape, &vl, &opts, tensors, &bs.source(&shape).unwrap());
            ("block_sparse", got, varlen_block_sparse_attention(&ref_inputs, &opts, bs).unwrap())
        }
    };
    let at = label(name, dtype, b, causal);
    let got = got.unwrap_or_else(|e| panic!("{at}: {e}"));
    let out: Vec<f32> = got.out.iter().map(|x| x.to_f64() as f32).collect();
    compare(&at, dtype, &want, &out, &got.lse);
}

#[test]
fn varlen_dense_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    // Lengths 1, 63, 64, 65 and an empty sequence; keys longer (a cached prefix), equal,
    // shorter (rows that see nothing under causal) and empty.
    let lens = vec![(1, 70), (63, 63), (64, 200), (0, 5), (65, 30), (7, 0)];
    let gqa = Batch { lens: lens.clone(), heads_q: 4, heads_kv: 1, head_dim: 64 };
    let mha = Batch { lens, heads_q: 2, heads_kv: 2, head_dim: 128 };
    for causal in [true, false] {
        run::<half::bf16>(&sim, &gqa, causal, None, 1);
        run::<half::f16>(&sim, &mha, causal, None, 2);
    }
    // head_dim 96 (rows of 12 chunks).
    let d96 = Batch { lens: vec![(65, 130), (3, 3), (0, 9)], heads_q: 4, heads_kv: 2, head_dim: 96 };
    run::<half::f16>(&sim, &d96, true, None, 7);
    // head_dim 256 (one row block per CTA, a warp one m-tile).
    let d256 = Batch { lens: vec![(65, 130), (1, 1), (0, 9), (64, 64)], heads_q: 4, heads_kv: 1, head_dim: 256 };
    run::<half::bf16>(&sim, &d256, true, None, 8);
    // One long sequence among short ones.
    let long = Batch { lens: vec![(1000, 1000), (3, 40), (65, 65)], heads_q: 2, heads_kv: 1, head_dim: 64 };
    run::<half::bf16>(&sim, &long, true, None, 3);
}

#[test]
fn varlen_block_sparse_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let b = Batch { lens: vec![(130, 130), (1, 64), (0, 0), (65, 300), (64, 20)], heads_q: 4, heads_kv: 2, head_dim: 64 };
    let shape = b.shape();
    let mut rng = Rng::new(17);
    for (causal, density) in [(true, 0.5), (false, 0.3)] {
        let bs = random_block_sparse(&mut rng, &shape, 2, density);
        run::<half::bf16>(&sim, &b, causal, Some(&bs), 4);
    }
    for (head_dim, seed) in [(128, 5), (256, 6)] {
        let b = Batch { lens: vec![(200, 260), (64, 64)], heads_q: 2, heads_kv: 2, head_dim };
        let bs = random_block_sparse(&mut rng, &b.shape(), 2, 0.4);
        run::<half::f16>(&sim, &b, true, Some(&bs), seed);
    }
}

#[test]
fn varlen_a_shape_follows_each_sequence_diagonal() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let b = Batch { lens: vec![(300, 300), (65, 200), (0, 9), (1, 1)], heads_q: 4, heads_kv: 2, head_dim: 64 };
    let a = sparse_attn::pattern::AShape::new(1, 2).unwrap();
    let blocks = a.to_block_sparse_varlen(&b.shape(), &b.varlen()).unwrap();
    // Sequence 1 (65 x 200) has its own diagonal: its first row block's last row sees keys
    // up to 63 + 135 = 198, in key block 3, so it lists the sink and blocks 2 and 3; on
    // the longest sequence's diagonal (300 x 300) it would list block 0 alone.
    assert_eq!(blocks.blocks(1, 0, 0).unwrap(), &[0, 2, 3]);
    assert_eq!(blocks.blocks(0, 0, 0).unwrap(), &[0]);
    assert_eq!(blocks.blocks(2, 0, 0).unwrap(), &[] as &[i32], "an empty sequence lists nothing");
    run::<half::bf16>(&sim, &b, true, Some(&blocks), 6);
}

#[test]
fn varlen_vertical_slash_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    use sparse_attn::pattern::vs_convert::convert_varlen;
    for b in [
        Batch { lens: vec![(130, 130), (1, 64), (0, 0), (65, 300), (64, 20)], heads_q: 4, heads_kv: 2, head_dim: 64 },
        Batch { lens: vec![(200, 260), (70, 70)], heads_q: 2, heads_kv: 2, head_dim: 128 },
        Batch { lens: vec![(130, 200), (0, 3), (65, 65)], heads_q: 4, heads_kv: 2, head_dim: 256 },
    ] {
        let (shape, vl) = (b.shape(), b.varlen());
        let vs = attention_cases::random_vertical_slash(&mut Rng::new(31), &shape, 2, 0.1);
        let index = convert_varlen(&vs, &shape, &vl).unwrap();
        let (q, k, v) = inputs::<half::bf16>(&b, 12);
        let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
        let want = sparse_attn::reference::varlen_vertical_slash_attention(&VarlenInputs::new(shape, vl.clone(), &q, &k, &v).unwrap(), &opts, &index).unwrap();
        let source = sparse_attn::Source::VerticalSlash(index.clone());
        let at = label("vertical_slash", DType::BF16, &b, true);
        let got = sim.attention_varlen(&shape, &vl, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &source).unwrap_or_else(|e| panic!("{at}: {e}"));
        let out: Vec<f32> = got.out.iter().map(|x| x.to_f64() as f32).collect();
        compare(&at, DType::BF16, &want, &out, &got.lse);
    }
}

#[test]
fn varlen_topk_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for (b, dtype_bf16) in [
        (Batch { lens: vec![(1, 70), (63, 63), (0, 4), (65, 200), (20, 0)], heads_q: 8, heads_kv: 2, head_dim: 64 }, true),
        (Batch { lens: vec![(40, 40), (7, 130)], heads_q: 2, heads_kv: 2, head_dim: 128 }, false),
        (Batch { lens: vec![(9, 70), (0, 2), (20, 20)], heads_q: 4, heads_kv: 1, head_dim: 256 }, true),
    ] {
        let (shape, vl) = (b.shape(), b.varlen());
        // Packed rows of k keys each, per kv head: keys of the row's own sequence (some past
        // its causal diagonal, which the kernel skips), -1 padding, no repeats.
        let k = 24;
        let mut rng = Rng::new(23);
        let mut indices = Vec::new();
        for seq in 0..shape.batch() {
            let (lq, lk) = vl.seqlens(seq);
            for _ in 0..lq * b.heads_kv {
                let mut row: Vec<i32> = (0..lk as i32).filter(|_| rng.below(3) == 0).take(k).collect();
                row.resize(k, -1);
                indices.extend(row);
            }
        }
        let packed = AttnShape::new(1, vl.total_q(), shape.seq_k(), b.heads_q, b.heads_kv, b.head_dim).unwrap();
        let topk = sparse_attn::pattern::TopkTokens::new(1, vl.total_q(), b.heads_kv, k, indices).unwrap();
        let source = topk.source(&packed).unwrap();
        let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
        let at = label("topk", if dtype_bf16 { DType::BF16 } else { DType::F16 }, &b, true);
        macro_rules! check_with {
            ($t:ty) => {{
                let (q, kk, v) = inputs::<$t>(&b, 8);
                let want = varlen_topk_attention(&VarlenInputs::new(shape, vl.clone(), &q, &kk, &v).unwrap(), &opts, &topk).unwrap();
                let got = sim.attention_varlen(&shape, &vl, &opts, HostTensors { q: &q, k: &kk, v: &v, sinks: None }, &source).unwrap_or_else(|e| panic!("{at}: {e}"));
                let out: Vec<f32> = got.out.iter().map(|x| x.to_f64() as f32).collect();
                compare(&at, <$t>::DTYPE, &want, &out, &got.lse);
            }};
        }
        if dtype_bf16 {
            check_with!(half::bf16);
        } else {
            check_with!(half::f16);
        }
    }
}

#[test]
fn bad_varlen_launches_are_refused_before_they_run() {
    use sparse_attn::plan::{attention_varlen, AttnBuffers, AttnLayouts, DeviceBuffer, VarlenBuffers};
    let b = Batch { lens: vec![(10, 10), (20, 30)], heads_q: 2, heads_kv: 2, head_dim: 64 };
    let (shape, vl) = (b.shape(), b.varlen());
    let buf = |slot: u64, len: usize| DeviceBuffer { addr: slot << 30, len };
    let packed = |rows: usize| sparse_attn::Bshd::contiguous(rows, 2, 64);
    let bufs = AttnBuffers {
        q: buf(1, 30 * 128),
        k: buf(2, 40 * 128),
        v: buf(3, 40 * 128),
        out: buf(4, 30 * 128),
        lse: None,
        sinks: None,
        layouts: AttnLayouts { q: packed(30), k: packed(40), v: packed(40), out: packed(30) },
    };
    let lens = |host| VarlenBuffers { cu_seqlens_q: buf(5, 3), cu_seqlens_k: buf(6, 3), total_q: 30, total_k: 40, host };
    let opts = AttnOptions::default();
    let plan = |v: &VarlenBuffers, s: &AttnShape| attention_varlen(s, v, DType::BF16, &opts, &bufs, &sparse_attn::Source::Dense);
    let p = plan(&lens(Some(&vl)), &shape).expect("a valid launch");
    assert_eq!(p.kernel(), "attn_fwd_dense_varlen_bf16_hd64");
    assert_eq!(p.grid(), [1, 2, 2], "ceil(20 rows / 128), heads_q, batch");
    // The host copy disagrees with the totals, or a sequence is longer than max_seqlen_q.
    let mut short = lens(Some(&vl));
    short.total_q = 29;
    assert!(matches!(plan(&short, &shape), Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_q", .. })));
    let small = AttnShape::new(2, 15, 30, 2, 2, 64).unwrap();
    assert!(matches!(plan(&lens(Some(&vl)), &small), Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_q", .. })));
    let other_batch = AttnShape::new(3, 20, 30, 2, 2, 64).unwrap();
    assert!(matches!(plan(&lens(Some(&vl)), &other_batch), Err(Error::InvalidCuSeqlens { .. })));
    // cu_seqlens buffers too short for batch + 1 entries, or misaligned.
    let mut tiny = lens(None);
    tiny.cu_seqlens_k = buf(6, 2);
    assert!(matches!(plan(&tiny, &shape), Err(Error::BufferTooSmall { tensor: "cu_seqlens_k", .. })));
    let mut odd = lens(None);
    odd.cu_seqlens_q = DeviceBuffer { addr: (5 << 30) + 2, len: 3 };
    assert!(matches!(plan(&odd, &shape), Err(Error::InvalidParameter { name: "cu_seqlens_q", .. })));
    // Packed tensors smaller than the totals.
    let mut big = lens(None);
    big.total_k = 41;
    assert!(matches!(plan(&big, &shape), Err(Error::BufferTooSmall { tensor: "k", .. })));
    // Vertical-slash is causal only.
    let vs = sparse_attn::pattern::VerticalSlash::new(2, 2, 1, 1, vec![0; 4], vec![0; 4]).unwrap();
    let vs_source = sparse_attn::pattern::vs_convert::convert_varlen(&vs, &shape, &vl).unwrap().map(|_, d| buf(7, d.len()));
    let vs_plan = |o: &AttnOptions| attention_varlen(&shape, &lens(None), DType::BF16, o, &bufs, &sparse_attn::Source::VerticalSlash(vs_source));
    assert!(vs_plan(&opts).is_err(), "non-causal vertical-slash");
    assert_eq!(vs_plan(&AttnOptions { causal: true, ..opts }).unwrap().kernel(), "attn_fwd_vertical_slash_varlen_bf16_hd64");
    // Host prefix sums that are not monotonic never become a Varlen.
    assert!(matches!(Varlen::new(vec![0, 10, 5], vec![0, 1, 2]), Err(Error::InvalidCuSeqlens { tensor: "cu_seqlens_q", .. })));
}

#[test]
fn corrupt_device_lengths_run_as_empty_sequences() {
    // The device's cu_seqlens are never read on the host: entries out of order, past the
    // totals or longer than max_seqlen_q make their sequence empty, under memcheck.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    use sparse_attn::plan::{attention_varlen, AttnBuffers, AttnLayouts, VarlenBuffers};
    let (hq, d) = (2, 64);
    let shape = AttnShape::new(3, 64, 64, hq, hq, d).unwrap();
    let (total_q, total_k) = (100, 100);
    let packed = |rows: usize| sparse_attn::Bshd::contiguous(rows, hq, d);
    let data: Vec<half::bf16> = (0..total_q * hq * d).map(|i| half::bf16::from_f32(((i % 7) as f32 - 3.0) / 4.0)).collect();
    let out = sim.alloc::<half::bf16>(total_q * hq * d).unwrap();
    let bufs = AttnBuffers {
        q: sim.upload(&data).unwrap(),
        k: sim.upload(&data).unwrap(),
        v: sim.upload(&data).unwrap(),
        out,
        lse: None,
        sinks: None,
        layouts: AttnLayouts { q: packed(total_q), k: packed(total_k), v: packed(total_k), out: packed(total_q) },
    };
    // Sequence 0: fine (rows 0..10); 1: decreasing; 2: past total and longer than 64.
    let cu_q = sim.upload(&[0i32, 10, 5, 200]).unwrap();
    let cu_k = sim.upload(&[0i32, 10, 20, 30]).unwrap();
    let v = VarlenBuffers { cu_seqlens_q: cu_q, cu_seqlens_k: cu_k, total_q, total_k, host: None };
    let plan = attention_varlen(&shape, &v, DType::BF16, &AttnOptions::default(), &bufs, &sparse_attn::Source::Dense).unwrap();
    sim.launch(&plan, &ptx_sim::LaunchOptions::default()).expect("no fault");
    let got: Vec<half::bf16> = sim.download(out).unwrap();
    assert!(got[..10 * hq * d].iter().any(|x| x.to_f32() != 0.0), "sequence 0 is computed");
    assert!(got[10 * hq * d..].iter().all(|x| x.to_f32() == 0.0), "nothing else is written");
}
