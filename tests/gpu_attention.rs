//! Prefill attention through cudarc on a real GPU, against the CPU reference, over the
//! whole shared test matrix (tests/attention_cases). Without a usable GPU every test
//! prints why and returns.

mod attention_cases;
mod common;

use std::sync::Arc;

use attention_cases::{check, matrix, problem, wide_group_topk_cases, Case};
use cudarc::driver::{CudaStream, DeviceRepr, ValidAsZeroBits};
use sparse_attn::cuda::{attention, gpu_context, upload, AttnTensors};
use sparse_attn::{AttnDtype, DType};

fn stream_or_skip() -> Option<Arc<CudaStream>> {
    match gpu_context(0) {
        Ok(ctx) => Some(ctx.default_stream()),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
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
    let cases: Vec<Case> = matrix(1).into_iter().chain(wide_group_topk_cases()).filter(|c| filter(c)).collect();
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
    println!("{} cases passed on the GPU", cases.len());
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
