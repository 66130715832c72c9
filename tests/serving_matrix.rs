//! The serving layouts' matrix on the PTX simulator: every pattern (dense, block-sparse,
//! A-shape, vertical-slash, top-k) x f16 and bf16 x every head_dim x GQA 4:1 and 1:1, on a
//! varlen batch (lengths 0, 1, 63, 64 and 65, keys longer, equal and shorter, a shared
//! prefix). Each case's varlen run is held to the varlen reference, and the same data from
//! a paged cache (pages shuffled and shared, 16 or 128 tokens, NHD or HND) must give the
//! varlen run's output and LSE bit for bit. Memcheck is on throughout.

mod attention_cases;
mod common;
mod serving_cases;

use attention_cases::{random_block_sparse, random_vertical_slash, Rng};
use attention_cases::compare_varlen as compare;
use serving_cases::{bits, cache, contiguous, layout_name, page, Batch};
use sparse_attn::pattern::vs_convert::convert_varlen;
use sparse_attn::pattern::{AShape, Dense, TopkTokens};
use sparse_attn::reference::{varlen_block_sparse_attention, varlen_dense_attention, varlen_topk_attention, varlen_vertical_slash_attention, VarlenInputs, VarlenOutput};
use sparse_attn::sim::SimBackend;
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Source, SparsePattern};

const PATTERNS: [&str; 5] = ["dense", "block_sparse", "a_shape", "vertical_slash", "topk"];

/// Per sequence (query rows, keys). Sequence 1 shares sequence 0's first 32 keys.
fn lens() -> Vec<(usize, usize)> {
    vec![(65, 130), (1, 40), (0, 9), (64, 64), (63, 30)]
}

/// Top-k indices packed like q: per packed row and kv head, up to `k` keys of the row's own
/// sequence (some past its causal diagonal, which the kernel skips), -1 padding.
fn packed_topk(rng: &mut Rng, lens: &[(usize, usize)], heads_kv: usize, k: usize) -> TopkTokens {
    let mut indices = Vec::new();
    for &(lq, lk) in lens {
        for _ in 0..lq * heads_kv {
            let mut row: Vec<i32> = (0..lk as i32).filter(|_| rng.below(3) == 0).take(k).collect();
            row.resize(k, -1);
            indices.extend(row);
        }
    }
    let total_q = lens.iter().map(|l| l.0).sum();
    TopkTokens::new(1, total_q, heads_kv, k, indices).unwrap()
}

/// One case: the pattern's source and reference on the batch, the varlen run against the
/// reference, the paged run against the varlen run.
fn run_case<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, pattern: &str, d: usize, heads: (usize, usize), seed: u64) {
    let (heads_q, heads_kv) = heads;
    let batch = Batch::<T>::new(lens(), heads_q, heads_kv, d, 32, seed);
    let (shape, vl) = (batch.shape(), batch.varlen());
    let (k, v) = (batch.k.concat(), batch.v.concat());
    let inputs = VarlenInputs::new(shape, vl.clone(), &batch.q, &k, &v).unwrap();
    let causal = pattern == "vertical_slash" || seed.is_multiple_of(2);
    let opts = AttnOptions { causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let mut rng = Rng::new(seed);
    let (source, want): (Source<Vec<i32>>, VarlenOutput) = match pattern {
        "dense" => (Dense.source(&shape).unwrap().try_map(|_, x| Ok::<_, ()>(x.into_owned())).unwrap(), varlen_dense_attention(&inputs, &opts).unwrap()),
        "block_sparse" | "a_shape" => {
            let bs = if pattern == "a_shape" { AShape::new(1, 2).unwrap().to_block_sparse_varlen(&shape, &vl).unwrap() } else { random_block_sparse(&mut rng, &shape, heads_kv, 0.5) };
            let want = varlen_block_sparse_attention(&inputs, &opts, &bs).unwrap();
            (bs.source(&shape).unwrap().try_map(|_, x| Ok::<_, ()>(x.into_owned())).unwrap(), want)
        }
        "vertical_slash" => {
            let vs = random_vertical_slash(&mut rng, &shape, heads_kv, 0.15);
            let index = convert_varlen(&vs, &shape, &vl).unwrap();
            let want = varlen_vertical_slash_attention(&inputs, &opts, &index).unwrap();
            (Source::VerticalSlash(index), want)
        }
        _ => {
            let topk = packed_topk(&mut rng, &batch.lens, heads_kv, 24);
            let packed = AttnShape::new(1, vl.total_q(), shape.seq_k(), heads_q, heads_kv, d).unwrap();
            let want = varlen_topk_attention(&inputs, &opts, &topk).unwrap();
            (topk.source(&packed).unwrap().try_map(|_, x| Ok::<_, ()>(x.into_owned())).unwrap(), want)
        }
    };
    let at = format!("{pattern} {} d{d} hq{heads_q} hkv{heads_kv} causal={causal}", T::DTYPE.name());
    let got = contiguous(sim, &batch, &opts, &source);
    let out: Vec<f32> = got.out.iter().map(|x| x.to_f32()).collect();
    compare(&at, T::DTYPE, &want, &out, &got.lse);

    let (page_size, hnd) = if seed.is_multiple_of(2) { (16, seed.is_multiple_of(4)) } else { (128, seed % 4 == 1) };
    let paged = page(&batch, page_size, hnd, 32 / page_size, seed + 1);
    let from_pages = sim.attention_paged(&shape, &vl, cache(&paged), &opts, &batch.q, &source).unwrap_or_else(|e| panic!("{at}: {e}"));
    let at = format!("{at} paged {page_size} {}", layout_name(hnd));
    assert_eq!(bits(&from_pages.out), bits(&got.out), "{at}: output");
    let lse_bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(lse_bits(&from_pages.lse), lse_bits(&got.lse), "{at}: lse");
}

#[test]
fn every_pattern_dtype_head_dim_and_gqa_ratio_runs_varlen_and_paged() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let mut cases = Vec::new();
    for pattern in PATTERNS {
        for bf16 in [true, false] {
            for &d in sparse_attn::params::HEAD_DIMS {
                for heads in [(4, 1), (2, 2)] {
                    cases.push((pattern, bf16, d, heads));
                }
            }
        }
    }
    for (seed, &(pattern, bf16, d, heads)) in cases.iter().enumerate() {
        if bf16 {
            run_case::<half::bf16>(&sim, pattern, d, heads, seed as u64);
        } else {
            run_case::<half::f16>(&sim, pattern, d, heads, seed as u64);
        }
    }
    assert_eq!(cases.len(), PATTERNS.len() * 2 * sparse_attn::params::HEAD_DIMS.len() * 2);
}
