//! Prefill attention through cudarc on a real GPU, against the CPU reference, over the
//! whole shared test matrix (tests/attention_cases). Without a usable GPU every test
//! prints why and returns.

mod attention_cases;
mod common;

use std::sync::Arc;

use attention_cases::{check, matrix, problem, wide_group_topk_cases, Case};
use cudarc::driver::{CudaStream, DeviceRepr, ValidAsZeroBits};
use sparse_attn::cuda::{attention, upload, AttnTensors};
use sparse_attn::{AttnDtype, DType};

fn stream_or_skip() -> Option<Arc<CudaStream>> {
    common::gpu_or_skip().map(|ctx| ctx.default_stream())
}

/// Runs one case and returns (output widened to f32, LSE).
fn run<T: AttnDtype + DeviceRepr + ValidAsZeroBits>(stream: &Arc<CudaStream>, case: &Case) -> (Vec<f32>, Vec<f32>, attention_cases::Problem<T>) {
    let p = problem::<T>(case);
    let s = case.shape;
    let q = stream.clone_htod(&p.q).unwrap();
    let k = stream.clone_htod(&p.k).unwrap();
    let v = stream.clone_htod(&p.v).unwrap();
    let mut out = stream.alloc_zeros::<T>(s.q_len()).unwrap();
    let mut lse = stream.alloc_zeros::<f32>(s.lse_len()).unwrap();
    let tensors = AttnTensors::contiguous(&s, &q, &k, &v, &mut out, Some(&mut lse));
    let opts = case.opts();
    let source = upload(stream, &case.pattern.source(&s).unwrap()).unwrap();
    attention(stream, &s, &opts, tensors, &source).unwrap();
    let out_host: Vec<f32> = stream.clone_dtoh(&out).unwrap().iter().map(|x: &T| x.to_f32()).collect();
    let lse_host = stream.clone_dtoh(&lse).unwrap();
    stream.synchronize().unwrap();
    (out_host, lse_host, p)
}

fn run_matrix(filter: impl Fn(&Case) -> bool) {
    let Some(stream) = stream_or_skip() else { return };
    // On the simulated driver (SPARSE_ATTN_DEVICE=sim) every pattern, dtype, head_dim,
    // causal flag and GQA ratio still runs, at one shape: 63 queries against 200 keys
    // (partial tiles, several key tiles, bottom-right causal). tests/attention_sim.rs
    // runs the whole matrix through the simulator already.
    let simulated = common::on_simulated_driver(stream.context());
    let thin = |c: &Case| !simulated || (c.shape.seq_q(), c.shape.seq_k()) == (63, 200);
    let cases: Vec<Case> = matrix(1).into_iter().filter(thin).chain(wide_group_topk_cases()).filter(|c| filter(c)).collect();
    assert!(!cases.is_empty());
    for case in &cases {
        match case.dtype {
            DType::BF16 => {
                let (out, lse, p) = run::<half::bf16>(&stream, case);
                check(case, &p.expected, &out, &lse);
            }
            DType::F16 => {
                let (out, lse, p) = run::<half::f16>(&stream, case);
                check(case, &p.expected, &out, &lse);
            }
        }
    }
    println!("{} cases passed on {}", cases.len(), if simulated { "the simulated driver" } else { "the GPU" });
}

#[test]
fn dense_matches_the_reference() {
    run_matrix(|c| c.name == "dense");
}

#[test]
fn block_sparse_matches_the_reference() {
    run_matrix(|c| c.name == "block_sparse");
}

#[test]
fn a_shape_matches_the_reference() {
    run_matrix(|c| c.name == "a_shape");
}

#[test]
fn vertical_slash_matches_the_reference() {
    run_matrix(|c| c.name == "vertical_slash");
}

#[test]
fn topk_matches_the_reference() {
    run_matrix(|c| c.name == "topk");
}

#[test]
fn varlen_dense_matches_the_reference_on_the_gpu() {
    // Lengths 1, 63, 64, 65 and an empty sequence, keys longer and shorter than queries.
    use sparse_attn::cuda::{attention_varlen, VarlenTensors};
    use sparse_attn::plan::AttnLayouts;
    use sparse_attn::reference::{varlen_dense_attention, VarlenInputs};
    use sparse_attn::{AttnOptions, AttnShape, Bshd, Varlen};
    let Some(stream) = stream_or_skip() else { return };
    let (hq, hkv, d) = (4, 1, 64);
    let varlen = Varlen::new(vec![0, 1, 64, 128, 128, 193], vec![0, 70, 133, 333, 338, 368]).unwrap();
    let shape = AttnShape::new(5, 65, 200, hq, hkv, d).unwrap();
    let (tq, tk) = (varlen.total_q(), varlen.total_k());
    let mut rng = common::Rng::new(9);
    let mut tensor = |n: usize| (0..n).map(|_| half::bf16::from_f32(rng.normal() as f32)).collect::<Vec<_>>();
    let (q, k, v) = (tensor(tq * hq * d), tensor(tk * hkv * d), tensor(tk * hkv * d));
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let want = varlen_dense_attention(&VarlenInputs::new(shape, varlen.clone(), &q, &k, &v).unwrap(), &opts).unwrap();
    let (qd, kd, vd) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    let mut out = stream.alloc_zeros::<half::bf16>(tq * hq * d).unwrap();
    let mut lse = stream.alloc_zeros::<f32>(hq * tq).unwrap();
    let (cq, ck) = (stream.clone_htod(varlen.cu_seqlens_q()).unwrap(), stream.clone_htod(varlen.cu_seqlens_k()).unwrap());
    let (lq, lk) = (Bshd::contiguous(tq, hq, d), Bshd::contiguous(tk, hkv, d));
    let layouts = AttnLayouts { q: lq, k: lk, v: lk, out: lq };
    let tensors = AttnTensors { q: &qd, k: &kd, v: &vd, out: &mut out, lse: Some(&mut lse), sinks: None, layouts };
    let lens = VarlenTensors { cu_seqlens_q: &cq, cu_seqlens_k: &ck, total_q: tq, total_k: tk, host: Some(&varlen) };
    attention_varlen(&stream, &shape, lens, &opts, tensors, &sparse_attn::Source::<cudarc::driver::CudaSlice<i32>>::Dense).unwrap();
    let got: Vec<f32> = stream.clone_dtoh(&out).unwrap().iter().map(|x| x.to_f32()).collect();
    let got_lse = stream.clone_dtoh(&lse).unwrap();
    for (i, (&o, &e)) in got.iter().zip(&want.out).enumerate() {
        assert!((o as f64 - e).abs() <= attention_cases::out_tolerance_at(DType::BF16, e), "output {i} = {o}, want {e}");
    }
    for (i, (&l, &e)) in got_lse.iter().zip(&want.lse).enumerate() {
        assert!(e == f64::NEG_INFINITY && l == f32::NEG_INFINITY || (l as f64 - e).abs() <= attention_cases::LSE_TOLERANCE, "lse {i} = {l}, want {e}");
    }
}

#[test]
fn paged_dense_equals_the_contiguous_varlen_run_on_the_gpu() {
    // Two sequences whose keys sit in 16-token pages in reverse order (NHD); the paged run
    // must give the bits of the contiguous varlen run.
    use cudarc::driver::CudaSlice;
    use sparse_attn::cuda::{attention_paged, attention_varlen, PagedTensors, VarlenTensors};
    use sparse_attn::plan::AttnLayouts;
    use sparse_attn::{AttnOptions, AttnShape, Bshd, Source, Varlen};
    let Some(stream) = stream_or_skip() else { return };
    let (hq, hkv, d, ps) = (4, 2, 64, 16);
    let varlen = Varlen::new(vec![0, 40, 60], vec![0, 100, 148]).unwrap();
    let shape = AttnShape::new(2, 40, 100, hq, hkv, d).unwrap();
    let (tq, tk) = (varlen.total_q(), varlen.total_k());
    let mut rng = common::Rng::new(11);
    let mut tensor = |n: usize| (0..n).map(|_| half::bf16::from_f32(rng.normal() as f32)).collect::<Vec<_>>();
    let (q, k, v) = (tensor(tq * hq * d), tensor(tk * hkv * d), tensor(tk * hkv * d));
    // Pages: sequence 0 keys 0..100 in 7 pages, sequence 1 keys 0..48 in 3, all reversed.
    let (pages0, pages1) = (100usize.div_ceil(ps), 48usize.div_ceil(ps));
    let num_pages = pages0 + pages1;
    let max_pages = pages0;
    let mut table = vec![0i32; 2 * max_pages];
    let (mut kc, mut vc) = (vec![half::bf16::ZERO; num_pages * ps * hkv * d], vec![half::bf16::ZERO; num_pages * ps * hkv * d]);
    for (b, (start, len, pages)) in [(0usize, 100usize, pages0), (100, 48, pages1)].into_iter().enumerate() {
        for p in 0..pages {
            let page = num_pages - 1 - (if b == 0 { p } else { pages0 + p });
            table[b * max_pages + p] = page as i32;
            for t in 0..ps.min(len - p * ps) {
                let (src, dst) = ((start + p * ps + t) * hkv * d, (page * ps + t) * hkv * d);
                kc[dst..dst + hkv * d].copy_from_slice(&k[src..src + hkv * d]);
                vc[dst..dst + hkv * d].copy_from_slice(&v[src..src + hkv * d]);
            }
        }
    }
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: false, ..AttnOptions::default() };
    let qd = stream.clone_htod(&q).unwrap();
    let lq = Bshd::contiguous(tq, hq, d);
    let dense = Source::<CudaSlice<i32>>::Dense;
    // Contiguous varlen.
    let (kd, vd) = (stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    let mut out_c = stream.alloc_zeros::<half::bf16>(tq * hq * d).unwrap();
    let (cq, ck) = (stream.clone_htod(varlen.cu_seqlens_q()).unwrap(), stream.clone_htod(varlen.cu_seqlens_k()).unwrap());
    let lk = Bshd::contiguous(tk, hkv, d);
    let tensors = AttnTensors { q: &qd, k: &kd, v: &vd, out: &mut out_c, lse: None, sinks: None, layouts: AttnLayouts { q: lq, k: lk, v: lk, out: lq } };
    let lens = VarlenTensors { cu_seqlens_q: &cq, cu_seqlens_k: &ck, total_q: tq, total_k: tk, host: Some(&varlen) };
    attention_varlen(&stream, &shape, lens, &opts, tensors, &dense).unwrap();
    // Paged.
    let (kcd, vcd) = (stream.clone_htod(&kc).unwrap(), stream.clone_htod(&vc).unwrap());
    let mut out_p = stream.alloc_zeros::<half::bf16>(tq * hq * d).unwrap();
    let seqlens_k = [100i32, 48];
    let (sk, bt) = (stream.clone_htod(&seqlens_k).unwrap(), stream.clone_htod(&table).unwrap());
    let cache = Bshd::contiguous(ps, hkv, d);
    let tensors = AttnTensors { q: &qd, k: &kcd, v: &vcd, out: &mut out_p, lse: None, sinks: None, layouts: AttnLayouts { q: lq, k: cache, v: cache, out: lq } };
    let host = sparse_attn::plan::PagedHost { varlen_q: &varlen, seqlens_k: &seqlens_k, block_table: &table };
    let paged = PagedTensors { cu_seqlens_q: &cq, total_q: tq, seqlens_k: &sk, block_table: &bt, max_pages, page_size: ps, num_pages, host: Some(host) };
    attention_paged(&stream, &shape, paged, &opts, tensors, &dense).unwrap();
    let (c, p) = (stream.clone_dtoh(&out_c).unwrap(), stream.clone_dtoh(&out_p).unwrap());
    assert!(c.iter().zip(&p).all(|(a, b)| a.to_bits() == b.to_bits()), "paged and contiguous outputs differ");
}
