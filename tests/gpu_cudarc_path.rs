//! What only the cudarc path can get wrong: work on non-default streams, inputs written on
//! one stream and read on another (cudarc's event tracking and the launch's buffer guards
//! must order them), offset views, a buffer from another context, and the module cache
//! across contexts. Runs on a real GPU, or on the simulated driver with
//! `SPARSE_ATTN_DEVICE=sim`, whose stream order breaks a missing dependency; skips with the
//! reason otherwise.

mod attention_cases;
mod common;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use half::f16;
use sparse_attn::cuda::{attention_dense, AttnTensors};
use sparse_attn::reference::{dense_attention, RefInputs, RefOutput};
use sparse_attn::{AttnOptions, AttnShape, DType, Error};

const OPTS: AttnOptions = AttnOptions { causal: true, softmax_scale: None, return_lse: false };

fn problem(shape: AttnShape, seed: u64) -> (Vec<f16>, Vec<f16>, Vec<f16>, RefOutput) {
    let mut rng = common::Rng::new(seed);
    let (q, k, v): (Vec<f16>, Vec<f16>, Vec<f16>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let want = dense_attention(&RefInputs::new(shape, &q, &k, &v).unwrap(), &OPTS).unwrap();
    (q, k, v, want)
}

fn check(got: &[f16], want: &RefOutput, what: &str) {
    for (i, (o, &e)) in got.iter().zip(&want.out).enumerate() {
        let o = o.to_f64();
        assert!((o - e).abs() <= attention_cases::out_tolerance_at(DType::F16, e), "{what}: out[{i}] = {o}, want {e}");
    }
}

/// Dense attention with q, k, v uploaded on `upload` and the launch and read-back on
/// `launch`.
fn across_streams(upload: &Arc<CudaStream>, launch: &Arc<CudaStream>, shape: AttnShape, seed: u64, what: &str) {
    let (q, k, v, want) = problem(shape, seed);
    let (qd, kd, vd) = (upload.clone_htod(&q).unwrap(), upload.clone_htod(&k).unwrap(), upload.clone_htod(&v).unwrap());
    let mut out = launch.alloc_zeros::<f16>(shape.q_len()).unwrap();
    attention_dense(launch, &shape, &OPTS, AttnTensors::contiguous(&shape, &qd, &kd, &vd, &mut out, None)).unwrap();
    check(&launch.clone_dtoh(&out).unwrap(), &want, what);
}

#[test]
fn non_default_streams_and_inputs_from_another_stream() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let (a, b) = (ctx.new_stream().unwrap(), ctx.new_stream().unwrap());
    // head_dim 128 needs the >48 KiB opt-in.
    let shape = AttnShape::new(1, 65, 130, 2, 1, 128).unwrap();
    across_streams(&a, &a, shape, 21, "one non-default stream");
    across_streams(&a, &b, shape, 22, "uploaded on a, launched on b");
    across_streams(&ctx.default_stream(), &b, shape, 23, "uploaded on the default stream, launched on b");
    ctx.synchronize().unwrap();
}

#[test]
fn offset_views_are_launched_at_their_offset() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let (q, k, v, want) = problem(shape, 24);
    // Each tensor 64 elements (one 128-byte row) into a larger buffer, garbage before it.
    let pad = 64;
    let padded = |x: &[f16]| {
        let mut p = vec![f16::from_f32(1e4); pad];
        p.extend_from_slice(x);
        stream.clone_htod(&p).unwrap()
    };
    let (qd, kd, vd) = (padded(&q), padded(&k), padded(&v));
    let mut out = stream.alloc_zeros::<f16>(pad + shape.q_len()).unwrap();
    let (qv, kv, vv) = (qd.slice(pad..), kd.slice(pad..), vd.slice(pad..));
    let mut ov = out.slice_mut(pad..);
    attention_dense(&stream, &shape, &OPTS, AttnTensors::contiguous(&shape, &qv, &kv, &vv, &mut ov, None)).unwrap();
    let all = stream.clone_dtoh(&out).unwrap();
    assert!(all[..pad].iter().all(|x| *x == f16::ZERO), "nothing written before the view");
    check(&all[pad..], &want, "offset views");
}

#[test]
fn a_buffer_of_another_context_is_refused_and_each_context_loads_its_own_modules() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let other = CudaContext::new_non_primary(ctx.ordinal(), 0).unwrap();
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let (q, k, v, want) = problem(shape, 25);
    let (s0, s1) = (ctx.default_stream(), other.default_stream());
    let (qd, kd, vd) = (s0.clone_htod(&q).unwrap(), s0.clone_htod(&k).unwrap(), s0.clone_htod(&v).unwrap());
    let foreign_q = s1.clone_htod(&q).unwrap();
    let mut out = s0.alloc_zeros::<f16>(shape.q_len()).unwrap();
    let err = attention_dense(&s0, &shape, &OPTS, AttnTensors::contiguous(&shape, &foreign_q, &kd, &vd, &mut out, None)).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "q", .. }), "{err}");
    // The same kernel in both contexts: each loads the module for itself.
    attention_dense(&s0, &shape, &OPTS, AttnTensors::contiguous(&shape, &qd, &kd, &vd, &mut out, None)).unwrap();
    check(&s0.clone_dtoh(&out).unwrap(), &want, "first context");
    let (kd1, vd1) = (s1.clone_htod(&k).unwrap(), s1.clone_htod(&v).unwrap());
    let mut out1 = s1.alloc_zeros::<f16>(shape.q_len()).unwrap();
    attention_dense(&s1, &shape, &OPTS, AttnTensors::contiguous(&shape, &foreign_q, &kd1, &vd1, &mut out1, None)).unwrap();
    check(&s1.clone_dtoh(&out1).unwrap(), &want, "second context");
}
