//! Softcap, sliding window and attention sinks on the PTX simulator, against the CPU
//! reference: every prefill pattern (dense, block-sparse, vertical-slash, top-k) in its
//! padded, varlen and paged forms, and every decode source, x f16 and bf16 x head_dim 64 and
//! 128. Each case cycles through option sets with softcap on and off and windows that cut
//! through key tiles (0, 37, 100 keys), with and without sinks. The paged forms must equal
//! the varlen ones bit for bit. Memcheck is on throughout. Also: the options change the
//! reference (so these comparisons can fail), and bad option values are refused by name.

mod attention_cases;
mod common;
mod decode_cases;
mod serving_cases;

use attention_cases::{compare_varlen, random_block_sparse, random_topk, random_vertical_slash, Rng};
use serving_cases::{bits, cache, page, Batch};
use sparse_attn::pattern::vs_convert::convert_varlen;
use sparse_attn::pattern::{Dense, TopkTokens};
use sparse_attn::plan::decode::DecodeOptions;
use sparse_attn::reference::{
    block_sparse_attention, dense_attention, topk_attention, varlen_block_sparse_attention, varlen_dense_attention, varlen_topk_attention,
    varlen_vertical_slash_attention, vertical_slash_attention, RefInputs, RefOutput, VarlenInputs, VarlenOutput,
};
use sparse_attn::sim::{HostTensors, PagedCache, SimBackend};
use sparse_attn::sim_decode::{DecodeCache, SimDecodeRun};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Bshd, Error, Source, SparsePattern};

/// One set of score options.
#[derive(Clone, Copy, Debug)]
struct ScoreOpts {
    softcap: Option<f32>,
    window_left: Option<usize>,
    sinks: bool,
}

/// Softcap on and off, windows of 0 (the diagonal key alone), 37 and 100 keys (inside a
/// 64-key tile, across one and two tile edges), sinks on and off.
const OPTION_SETS: [ScoreOpts; 4] = [
    ScoreOpts { softcap: Some(2.0), window_left: None, sinks: false },
    ScoreOpts { softcap: None, window_left: Some(37), sinks: true },
    ScoreOpts { softcap: Some(2.0), window_left: Some(100), sinks: true },
    ScoreOpts { softcap: None, window_left: Some(0), sinks: false },
];

const PATTERNS: [&str; 4] = ["dense", "block_sparse", "vertical_slash", "topk"];

impl ScoreOpts {
    fn attn(&self, causal: bool) -> AttnOptions {
        AttnOptions { causal, return_lse: true, softcap: self.softcap, window_left: self.window_left, ..AttnOptions::default() }
    }
}

/// Per-head sink logits in [-1, 3]: against ~100 keys of unit-variance scores they move the
/// denominator by a few to tens of percent.
fn sinks(rng: &mut Rng, heads_q: usize) -> Vec<f32> {
    (0..heads_q).map(|_| (rng.unit() * 4.0 - 1.0) as f32).collect()
}

fn widen<T: AttnDtype>(x: &[T]) -> Vec<f32> {
    x.iter().map(|e| e.to_f32()).collect()
}

fn as_varlen(r: RefOutput) -> VarlenOutput {
    VarlenOutput { out: r.out, lse: r.lse }
}

/// The padded form of one pattern under `o`, held to the padded reference.
fn padded_case<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, pattern: &str, d: usize, o: ScoreOpts, seed: u64) {
    let shape = AttnShape::new(2, 130, 200, 4, 2, d).unwrap();
    let mut rng = Rng::new(seed);
    let (q, k, v): (Vec<T>, Vec<T>, Vec<T>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let sink = o.sinks.then(|| sinks(&mut rng, shape.heads_q()));
    let causal = pattern == "vertical_slash" || seed.is_multiple_of(2);
    let opts = o.attn(causal);
    let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
    let inputs = match &sink {
        Some(s) => inputs.with_sinks(s),
        None => inputs,
    };
    let (source, want): (Source<Vec<i32>>, RefOutput) = match pattern {
        "dense" => (owned(Dense.source(&shape).unwrap()), dense_attention(&inputs, &opts).unwrap()),
        "block_sparse" => {
            let bs = random_block_sparse(&mut rng, &shape, shape.heads_kv(), 0.6);
            (owned(bs.source(&shape).unwrap()), block_sparse_attention(&inputs, &opts, &bs).unwrap())
        }
        "vertical_slash" => {
            let vs = random_vertical_slash(&mut rng, &shape, shape.heads_kv(), 0.15);
            (owned(vs.source(&shape).unwrap()), vertical_slash_attention(&inputs, &opts, &vs).unwrap())
        }
        _ => {
            let topk = random_topk(&mut rng, &shape, 0.4);
            (owned(topk.source(&shape).unwrap()), topk_attention(&inputs, &opts, &topk).unwrap())
        }
    };
    let at = format!("padded {pattern} {} d{d} causal={causal} {o:?}", T::DTYPE.name());
    let got = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: sink.as_deref() }, &source).unwrap_or_else(|e| panic!("{at}: {e}"));
    compare_varlen(&at, T::DTYPE, &as_varlen(want), &widen(&got.out), &got.lse);
}

fn owned(s: Source<std::borrow::Cow<'_, [i32]>>) -> Source<Vec<i32>> {
    s.try_map(|_, x| Ok::<_, ()>(x.into_owned())).unwrap()
}

/// Top-k rows packed like q, each listing keys of its own sequence, -1 padded.
fn packed_topk(rng: &mut Rng, lens: &[(usize, usize)], heads_kv: usize, k: usize) -> TopkTokens {
    let mut indices = Vec::new();
    for &(lq, lk) in lens {
        for _ in 0..lq * heads_kv {
            let mut row: Vec<i32> = (0..lk as i32).filter(|_| rng.below(2) == 0).take(k).collect();
            row.resize(k, -1);
            indices.extend(row);
        }
    }
    TopkTokens::new(1, lens.iter().map(|l| l.0).sum(), heads_kv, k, indices).unwrap()
}

/// The varlen form under `o` against the varlen reference, and the paged form (without
/// sinks, which the simulator's paged entry does not take) against the varlen run's bits.
fn varlen_case<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, pattern: &str, d: usize, o: ScoreOpts, seed: u64) {
    let lens = vec![(70, 150), (1, 40), (64, 64), (30, 20)];
    let batch = Batch::<T>::new(lens.clone(), 4, 2, d, 16, seed);
    let (shape, vl) = (batch.shape(), batch.varlen());
    let (k, v) = (batch.k.concat(), batch.v.concat());
    let mut rng = Rng::new(seed);
    let sink = o.sinks.then(|| sinks(&mut rng, shape.heads_q()));
    let inputs = VarlenInputs::new(shape, vl.clone(), &batch.q, &k, &v).unwrap();
    let inputs = match &sink {
        Some(s) => inputs.with_sinks(s),
        None => inputs,
    };
    let causal = pattern == "vertical_slash" || seed % 2 == 1;
    let opts = o.attn(causal);
    let (source, want): (Source<Vec<i32>>, VarlenOutput) = match pattern {
        "dense" => (owned(Dense.source(&shape).unwrap()), varlen_dense_attention(&inputs, &opts).unwrap()),
        "block_sparse" => {
            let bs = random_block_sparse(&mut rng, &shape, shape.heads_kv(), 0.6);
            let want = varlen_block_sparse_attention(&inputs, &opts, &bs).unwrap();
            (owned(bs.source(&shape).unwrap()), want)
        }
        "vertical_slash" => {
            let vs = random_vertical_slash(&mut rng, &shape, shape.heads_kv(), 0.15);
            let index = convert_varlen(&vs, &shape, &vl).unwrap();
            let want = varlen_vertical_slash_attention(&inputs, &opts, &index).unwrap();
            (Source::VerticalSlash(index), want)
        }
        _ => {
            let topk = packed_topk(&mut rng, &lens, shape.heads_kv(), 24);
            let packed = AttnShape::new(1, vl.total_q(), shape.seq_k(), shape.heads_q(), shape.heads_kv(), d).unwrap();
            let want = varlen_topk_attention(&inputs, &opts, &topk).unwrap();
            (owned(topk.source(&packed).unwrap()), want)
        }
    };
    let at = format!("varlen {pattern} {} d{d} causal={causal} {o:?}", T::DTYPE.name());
    let run = |sinks: Option<&[f32]>| {
        sim.attention_varlen(&shape, &vl, &opts, HostTensors { q: &batch.q, k: &k, v: &v, sinks }, &source).unwrap_or_else(|e| panic!("{at}: {e}"))
    };
    let got = run(sink.as_deref());
    compare_varlen(&at, T::DTYPE, &want, &widen(&got.out), &got.lse);

    let paged = page(&batch, 16, seed.is_multiple_of(4), 1, seed + 1);
    let from_pages = sim.attention_paged(&shape, &vl, cache(&paged), &opts, &batch.q, &source).unwrap_or_else(|e| panic!("{at} paged: {e}"));
    let unsunk = if sink.is_some() { run(None) } else { got };
    assert_eq!(bits(&from_pages.out), bits(&unsunk.out), "{at} paged: output");
    let lse_bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(lse_bits(&from_pages.lse), lse_bits(&unsunk.lse), "{at} paged: lse");
}

fn for_each_prefill_case(mut f: impl FnMut(&str, bool, usize, ScoreOpts, u64)) {
    let mut seed = 0u64;
    for pattern in PATTERNS {
        for bf16 in [true, false] {
            for d in [64, 128] {
                // Two option sets per case, so each of the four meets every pattern.
                for _ in 0..2 {
                    seed += 1;
                    f(pattern, bf16, d, OPTION_SETS[seed as usize % OPTION_SETS.len()], seed);
                }
            }
        }
    }
}

#[test]
fn padded_prefill_with_options_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for_each_prefill_case(|pattern, bf16, d, o, seed| {
        if bf16 {
            padded_case::<half::bf16>(&sim, pattern, d, o, seed);
        } else {
            padded_case::<half::f16>(&sim, pattern, d, o, seed);
        }
    });
}

#[test]
fn varlen_and_paged_prefill_with_options_match_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for_each_prefill_case(|pattern, bf16, d, o, seed| {
        if bf16 {
            varlen_case::<half::bf16>(&sim, pattern, d, o, seed + 100);
        } else {
            varlen_case::<half::f16>(&sim, pattern, d, o, seed + 100);
        }
    });
}

fn decode_case<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, kind: usize, d: usize, o: ScoreOpts, case: usize) {
    let q_len = [1, 4][case % 2];
    let p = decode_cases::Problem::<T>::new(vec![q_len, q_len, q_len], vec![300, 9, 130], 300, (8, 2), d, case as u64);
    let mut rng = Rng::new(500 + case as u64);
    let source = decode_cases::random_source(&mut rng, &p, kind, 32);
    let sink = o.sinks.then(|| sinks(&mut rng, p.heads_q));
    let causal = kind == 2 || !case.is_multiple_of(3);
    let opts = DecodeOptions {
        causal,
        softmax_scale: None,
        return_lse: true,
        softcap: o.softcap,
        window_left: o.window_left,
        splits: Some([1, 3][case % 2]),
        sm_count: 132,
    };
    let paged = case % 4 >= 2;
    let (pk, pv, table, max_pages, num_pages);
    let cache = if paged {
        (pk, pv, table, max_pages, num_pages) = p.paged(32, case as u64);
        DecodeCache::Paged(PagedCache { k: &pk, v: &pv, layout: Bshd::contiguous(32, p.heads_kv, d), page_size: 32, num_pages, block_table: &table, max_pages, seqlens_k: &p.seqlens_k })
    } else {
        DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k }
    };
    let at = format!("decode {} {} d{d} q_len {q_len} splits {:?} paged {paged} causal {causal} {o:?}", source.name(), T::DTYPE.name(), opts.splits);
    let run = SimDecodeRun { sinks: sink.as_deref(), ..Default::default() };
    let got = sim.decode_with(&p.shape(), &opts, &p.q, None, cache, &source, run).unwrap_or_else(|e| panic!("{at}: {e}"));
    let want = decode_cases::reference_with(&p, &opts.attn(), sink.as_deref(), &source);
    decode_cases::compare(&at, &p, false, &got.out, &got.lse, &want);
}

#[test]
fn decode_with_options_matches_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let mut case = 0;
    for kind in 0..3 {
        for bf16 in [true, false] {
            for d in [64, 128] {
                for _ in 0..2 {
                    case += 1;
                    let o = OPTION_SETS[case % OPTION_SETS.len()];
                    if bf16 {
                        decode_case::<half::bf16>(&sim, kind, d, o, case);
                    } else {
                        decode_case::<half::f16>(&sim, kind, d, o, case);
                    }
                }
            }
        }
    }
}

/// The comparisons above can fail: each option moves the reference by far more than the
/// bf16 output tolerance on these inputs.
#[test]
fn every_option_changes_the_reference() {
    let shape = AttnShape::new(1, 130, 200, 4, 2, 64).unwrap();
    let mut rng = Rng::new(7);
    let (q, k, v): (Vec<half::bf16>, Vec<half::bf16>, Vec<half::bf16>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
    let plain = dense_attention(&inputs, &AttnOptions::causal()).unwrap();
    let tolerance = attention_cases::out_tolerance(sparse_attn::DType::BF16);
    let moved = |other: &RefOutput| plain.max_abs_diff(other).0;
    for (name, o) in [("softcap", ScoreOpts { softcap: Some(2.0), window_left: None, sinks: false }), ("window", ScoreOpts { softcap: None, window_left: Some(37), sinks: false })] {
        let with = dense_attention(&inputs, &o.attn(true)).unwrap();
        assert!(moved(&with) > 10.0 * tolerance, "{name} moves the output by {}", moved(&with));
    }
    let sunk = dense_attention(&inputs.clone().with_sinks(&[3.0, 2.0, 1.0, 0.0]), &AttnOptions::causal()).unwrap();
    assert!(moved(&sunk) > 5.0 * tolerance, "sinks move the output by {}", moved(&sunk));
}

#[test]
fn bad_option_values_are_refused_by_name() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 64, 64, 4, 2, 64).unwrap();
    let mut rng = Rng::new(3);
    let (q, k, v): (Vec<half::bf16>, Vec<half::bf16>, Vec<half::bf16>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let dense = Source::<Vec<i32>>::Dense;
    let run = |opts: AttnOptions, sinks: Option<&[f32]>| sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks }, &dense).map(|_| ());
    for cap in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let err = run(AttnOptions { softcap: Some(cap), ..AttnOptions::default() }, None).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "softcap", .. }), "softcap {cap}: {err}");
    }
    let err = run(AttnOptions { window_left: Some(1 << 31), ..AttnOptions::default() }, None).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "window_left", .. }), "{err}");
    let err = run(AttnOptions::default(), Some(&[0.0; 3])).unwrap_err();
    assert!(matches!(err, Error::BufferTooSmall { tensor: "sinks", needed: 4, .. }), "{err}");
    // And the reference refuses the same.
    let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
    assert!(matches!(dense_attention(&inputs, &AttnOptions { softcap: Some(-2.0), ..AttnOptions::default() }), Err(Error::InvalidParameter { name: "softcap", .. })));
    assert!(matches!(dense_attention(&inputs.with_sinks(&[1.0]), &AttnOptions::default()), Err(Error::WrongLength { tensor: "sinks", .. })));
}

/// A window lets the dense kernel start each CTA at the window's first tile. Counted in units
/// of one 64-row block times 64 keys: at head_dim 64 a CTA holds two row blocks. The plain
/// causal kernel (128-key tiles) over 1024 rows runs 2 blocks x 2 units x (1 + ... + 8 tiles)
/// = 144 units. The `_opt` kernel (64-key tiles) under a 100-key window starts CTA c >= 1 at
/// tile 2c - 2, its first row's window start, and its blocks keep tiles up to their diagonal
/// (2c and 2c + 1): 3 + 4 units, and CTA 0 runs 1 + 2, so 3 + 7 * 7 = 52 units.
#[test]
fn a_window_skips_the_dense_tiles_before_it() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let shape = AttnShape::new(1, 1024, 1024, 1, 1, 64).unwrap();
    let mut rng = Rng::new(11);
    let (q, k, v): (Vec<half::bf16>, Vec<half::bf16>, Vec<half::bf16>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let dense = Source::<Vec<i32>>::Dense;
    let run = |opts: &AttnOptions| sim.attention(&shape, opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &dense).unwrap();
    let windowed = AttnOptions { window_left: Some(100), ..AttnOptions::causal() };
    let (full, local) = (run(&AttnOptions::causal()), run(&windowed));
    let want = dense_attention(&RefInputs::new(shape, &q, &k, &v).unwrap(), &windowed).unwrap();
    compare_varlen("dense window 100", sparse_attn::DType::BF16, &as_varlen(want), &widen(&local.out), &local.lse);
    let (a, b) = (local.counters.mma, full.counters.mma);
    assert_eq!(a * 144, b * 52, "windowed dense ran {a} mma, causal dense {b}: not 52 units of 144");
}

/// Dense decode under a window walks only the keys from the first new token's window start:
/// over 1024 cached keys a 100-key window runs a fraction of the unwindowed mma (simulator
/// counts), and equals the reference.
#[test]
fn dense_decode_walks_only_the_window() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let p = decode_cases::Problem::<half::bf16>::new(vec![1], vec![1024], 1024, (8, 2), 64, 5);
    let source = sparse_attn::plan::decode::DecodeSource::<Vec<i32>>::Dense;
    let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
    let run = |window_left| {
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left, splits: Some(4), sm_count: 132 };
        let got = sim.decode(&p.shape(), &opts, &p.q, None, cache, &source).unwrap();
        let want = decode_cases::reference_with(&p, &opts.attn(), None, &source);
        decode_cases::compare(&format!("dense decode window {window_left:?}"), &p, false, &got.out, &got.lse, &want);
        got.counters.mma
    };
    let (full, local) = (run(None), run(Some(100)));
    assert!(4 * local < full, "windowed decode ran {local} mma, unwindowed {full}");
}
