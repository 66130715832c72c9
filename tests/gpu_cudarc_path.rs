//! What only the cudarc path can get wrong: work on non-default streams, inputs written on
//! one stream and read on another (cudarc's event tracking and the launch's buffer guards
//! must order them), offset views, a buffer from another context, the module cache across
//! contexts, outputs aliasing an input (through the raw entry point), and the >48 KiB
//! shared-memory opt-in of every kernel that needs it. Runs on a real GPU, or on the
//! simulated driver with `SPARSE_ATTN_DEVICE=sim`, whose stream order breaks a missing
//! dependency; skips with the reason otherwise.

mod attention_cases;
mod common;

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use half::f16;
use sparse_attn::cuda::{attention_dense, AttnTensors};
use sparse_attn::reference::{dense_attention, RefInputs, RefOutput};
use sparse_attn::{AttnOptions, AttnShape, DType, Error};

const OPTS: AttnOptions = AttnOptions { causal: true, softmax_scale: None, return_lse: false, softcap: None, window_left: None };

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

/// The cudarc borrows keep a safe caller from passing one buffer as both an input and the
/// output; an engine on raw pointers can. `attention_raw` must refuse the overlap before
/// launching anything, naming the output, and leave the context usable.
#[test]
fn raw_outputs_aliasing_an_input_are_refused_before_any_launch() {
    use cudarc::driver::DevicePtr;
    use sparse_attn::cuda::attention_raw;
    use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
    use sparse_attn::Source;

    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let (q, k, v, want) = problem(shape, 26);
    let (qd, kd, vd) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    let out = stream.alloc_zeros::<f16>(shape.q_len()).unwrap();
    let lse = stream.alloc_zeros::<f32>(shape.lse_len()).unwrap();
    let addr = |p: u64, len: usize| DeviceBuffer { addr: p, len };
    let (qp, _g1) = qd.device_ptr(&stream);
    let (kp, _g2) = kd.device_ptr(&stream);
    let (vp, _g3) = vd.device_ptr(&stream);
    let (op, _g4) = out.device_ptr(&stream);
    let (lp, _g5) = lse.device_ptr(&stream);
    let bufs = |q: u64, out: u64, lse: Option<u64>| AttnBuffers {
        q: addr(q, shape.q_len()),
        k: addr(kp, shape.kv_len()),
        v: addr(vp, shape.kv_len()),
        out: addr(out, shape.q_len()),
        lse: lse.map(|l| addr(l, shape.lse_len())),
        sinks: None,
        layouts: AttnLayouts::contiguous(&shape),
    };
    let with_lse = AttnOptions { return_lse: true, ..OPTS };
    let raw = |opts: &AttnOptions, b: &AttnBuffers| {
        // SAFETY: a live stream of this context; every address is a live allocation of it
        // holding at least the given length, and nothing else uses them meanwhile.
        unsafe { attention_raw(stream.cu_stream(), &shape, DType::F16, opts, b, &Source::Dense) }
    };
    // out = q, out inside k (one row in), and the LSE inside v.
    for (what, b, opts, name, other) in [
        ("out is q", bufs(qp, qp, None), &OPTS, "out", "`q`"),
        ("out starts one row into k", bufs(qp, kp + 128, None), &OPTS, "out", "`k`"),
        ("lse inside v", bufs(qp, op, Some(vp + 64)), &with_lse, "lse", "`v`"),
    ] {
        let err = raw(opts, &b).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name: n, reason } if *n == name && reason.contains(other)),
            "{what}: {err}"
        );
    }
    // Nothing ran: q is intact, and the same buffers without the overlap launch fine.
    stream.synchronize().unwrap();
    assert_eq!(stream.clone_dtoh(&qd).unwrap(), q, "q was written");
    raw(&with_lse, &bufs(qp, op, Some(lp))).unwrap();
    stream.synchronize().unwrap();
    check(&stream.clone_dtoh(&out).unwrap(), &want, "after the refused launches");
}

/// Every kernel (family and head_dim, f16) whose plan asks for more than the default 48 KiB
/// of dynamic shared memory, launched through cudarc: the launch path must opt the function
/// in first (the simulated driver, like a GPU, fails a launch above the function's
/// attribute). Each source keeps every causal key, so the dense reference is the answer.
#[test]
fn kernels_above_48_kib_of_shared_memory_opt_in() {
    use cudarc::driver::CudaSlice;
    use sparse_attn::cuda::{attention, decode, upload, DecodeTensors};
    use sparse_attn::params::HEAD_DIMS;
    use sparse_attn::pattern::{BlockSparse, TopkTokens, VerticalSlash, BLOCK_M, BLOCK_N};
    use sparse_attn::plan::decode::{workspace_len, DecodeOptions, DecodeSource};
    use sparse_attn::plan::{AttnLayouts, DEFAULT_SHARED_MEM_BYTES};
    use sparse_attn::{Source, SparsePattern};

    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let needs_opt_in = |bytes: u32| bytes > DEFAULT_SHARED_MEM_BYTES;
    // The head_dims at which `bytes` passes 48 KiB; none would leave this test nothing to do.
    let opt_in_dims = |family: &str, bytes: &dyn Fn(usize) -> u32| -> Vec<usize> {
        let dims: Vec<usize> = HEAD_DIMS.iter().copied().filter(|&d| needs_opt_in(bytes(d))).collect();
        assert!(!dims.is_empty(), "{family}: no head_dim needs the opt-in any more");
        for &d in &dims {
            println!("{family}: head_dim {d}, {} B of dynamic shared memory", bytes(d));
        }
        dims
    };
    let (seq, heads_q) = (80, 2);
    type MakeSource = fn(&AttnShape) -> Source<Vec<i32>>;
    let sources: [(&str, MakeSource); 4] = [
        ("dense", |_| Source::Dense),
        ("block-sparse (every block)", |s| {
            let (mb, nb) = (s.seq_q().div_ceil(BLOCK_M), s.seq_k().div_ceil(BLOCK_N));
            let p = BlockSparse::from_block_mask(1, s.heads_kv(), mb, nb, &vec![true; s.heads_kv() * mb * nb]).unwrap();
            p.source(s).unwrap().map(|_, c| c.into_owned())
        }),
        ("vertical-slash (every column)", |s| {
            let cols: Vec<i32> = (0..s.seq_k() as i32).collect();
            let p = VerticalSlash::new(1, s.heads_kv(), s.seq_k(), 0, cols, vec![]).unwrap();
            p.source(s).unwrap().map(|_, c| c.into_owned())
        }),
        ("top-k (every visible key)", |s| {
            let k = s.seq_k();
            let idx = (0..s.seq_q()).flat_map(|i| (0..k).map(move |j| if j <= i { j as i32 } else { -1 })).collect();
            TopkTokens::new(1, s.seq_q(), 1, k, idx).unwrap().source(s).unwrap().map(|_, c| c.into_owned())
        }),
    ];
    for (family, make) in sources {
        let probe = make(&AttnShape::new(1, seq, seq, heads_q, 1, 64).unwrap());
        let bytes = |d: usize| match &probe {
            Source::TopK(_) => sparse_attn::plan::topk_attention::shared_mem_bytes(d),
            s => sparse_attn::plan::prefill::shared_mem_bytes(s, d),
        };
        for d in opt_in_dims(family, &bytes) {
            let shape = AttnShape::new(1, seq, seq, heads_q, 1, d).unwrap();
            let (q, k, v, want) = problem(shape, 27 + d as u64);
            let (qd, kd, vd) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
            let mut out = stream.alloc_zeros::<f16>(shape.q_len()).unwrap();
            let source = upload(&stream, &make(&shape)).unwrap();
            attention(&stream, &shape, &OPTS, AttnTensors::contiguous(&shape, &qd, &kd, &vd, &mut out, None), &source).unwrap();
            check(&stream.clone_dtoh(&out).unwrap(), &want, &format!("{family}, head_dim {d}"));
        }
    }

    // Split-KV decode: one new token per sequence over the whole cache.
    for d in opt_in_dims("decode", &sparse_attn::plan::decode::shared_mem_bytes) {
        let shape = AttnShape::new(1, 1, seq, heads_q, 1, d).unwrap();
        let (q, k, v, want) = problem(shape, 40);
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: false, softcap: None, window_left: None, splits: None, sm_count: 132 };
        let host_source = DecodeSource::<Vec<i32>>::Dense;
        let seqlens = vec![seq as i32];
        let mut workspace: CudaSlice<f32> = stream.alloc_zeros(workspace_len(&shape, None, &opts, &host_source).unwrap().max(1)).unwrap();
        let (qd, kd, vd, sd) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap(), stream.clone_htod(&seqlens).unwrap());
        let mut out = stream.alloc_zeros::<f16>(shape.q_len()).unwrap();
        let tensors = AttnTensors { q: &qd, k: &kd, v: &vd, out: &mut out, lse: None, sinks: None, layouts: AttnLayouts::contiguous(&shape) };
        let meta = DecodeTensors { seqlens_k: &sd, host_seqlens_k: Some(&seqlens), pages: None, packed: None };
        decode(&stream, &shape, &opts, tensors, meta, &mut workspace, &DecodeSource::<CudaSlice<i32>>::Dense).unwrap();
        check(&stream.clone_dtoh(&out).unwrap(), &want, &format!("decode, head_dim {d}"));
    }
}

/// The block selection sorts a row's key blocks in shared memory, past 48 KiB beyond 4096
/// key blocks (seq_k 256K): one non-causal row of 4097 key blocks, through cudarc, against
/// the host rule.
#[test]
fn block_selection_above_48_kib_of_shared_memory_opts_in() {
    use cudarc::driver::CudaSlice;
    use sparse_attn::cuda::{block_select, VarlenTensors};
    use sparse_attn::pattern::block_select::{select_row, BlockBudget, BlockSelectConfig, ScoreDims, ScoreKind};
    use sparse_attn::plan::block_select::plan_select;
    use sparse_attn::plan::{DeviceBuffer, DEFAULT_SHARED_MEM_BYTES};

    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let nb = 4097;
    let dims = ScoreDims { batch: 1, heads: 1, seq_q: 64, seq_k: nb * 64 };
    let config = BlockSelectConfig { budget: BlockBudget::TopK(16), kind: ScoreKind::Logits, causal: false, force_sink: true, force_diagonal: false };
    let max_blocks = config.max_blocks(nb);
    let fake = |len| DeviceBuffer { addr: 1 << 20, len };
    let plan = plan_select(&dims, &config, fake(nb), None, fake(1), fake(max_blocks)).unwrap();
    println!("block selection: {nb} key blocks, {} B of dynamic shared memory", plan.shared_mem_bytes());
    assert!(plan.shared_mem_bytes() > DEFAULT_SHARED_MEM_BYTES, "the selection no longer needs the opt-in at {nb} key blocks");
    // Distinct scores (a permutation of 0..nb), so the top 16 have no ties.
    let scores: Vec<f32> = (0..nb).map(|n| ((n * 7919) % nb) as f32).collect();
    let want = select_row(&scores.iter().map(|&s| s as f64).collect::<Vec<_>>(), nb, None, &config);
    let scores_d = stream.clone_htod(&scores).unwrap();
    let mut count = stream.alloc_zeros::<i32>(1).unwrap();
    let mut index = stream.alloc_zeros::<i32>(max_blocks).unwrap();
    block_select(&stream, &dims, &config, &scores_d, None::<&VarlenTensors<'_, CudaSlice<i32>>>, &mut count, &mut index).unwrap();
    let (count, index) = (stream.clone_dtoh(&count).unwrap(), stream.clone_dtoh(&index).unwrap());
    assert_eq!(count[0] as usize, want.len());
    assert_eq!(&index[..want.len()], &want[..]);
}
