//! Host-side validation of prefill attention launches: every check in
//! `plan::prefill::params` has a case here that trips it and nothing else, plus the
//! launch geometry and the kernel table. No GPU needed: buffers are described by made-up
//! (but aligned, disjoint) device addresses.

use sparse_attn::plan::prefill::{kernel_name, shared_mem_bytes, THREADS};
use sparse_attn::plan::{self, AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::source::{BlockSparseDims, BlockSparseIndex, Source, TopkDims, TopkIndex, VsIndex, VsIndexDims};
use sparse_attn::supports;
use sparse_attn::{kernel_scale_range, AttnOptions, AttnShape, Bshd, DType, Error};

/// Buffers for `shape`, contiguous, each at its own 1 GiB-aligned address.
fn buffers(shape: &AttnShape, lse: bool) -> AttnBuffers {
    let at = |slot: u64, len: usize| DeviceBuffer { addr: slot << 30, len };
    AttnBuffers {
        q: at(1, shape.q_len()),
        k: at(2, shape.kv_len()),
        v: at(3, shape.kv_len()),
        out: at(4, shape.q_len()),
        lse: lse.then(|| at(5, shape.lse_len())),
        sinks: None,
        layouts: AttnLayouts::contiguous(shape),
    }
}

fn index_at(slot: u64, len: usize) -> DeviceBuffer {
    DeviceBuffer { addr: (16 + slot) << 30, len }
}

/// A block-sparse source with `heads` descriptor heads and 3 slots per row block.
fn block_sparse(shape: &AttnShape, heads: usize) -> Source<DeviceBuffer> {
    let rows = shape.batch() * heads * shape.seq_q().div_ceil(64);
    Source::BlockSparse(BlockSparseIndex {
        dims: BlockSparseDims::new(shape.batch(), heads, shape.seq_q().div_ceil(64), 3).unwrap(),
        block_count: index_at(0, rows),
        block_index: index_at(1, rows * 3),
    })
}

fn vertical_slash(shape: &AttnShape, heads: usize) -> Source<DeviceBuffer> {
    let dims = VsIndexDims::new(shape.batch(), heads, shape.seq_q().div_ceil(64), 5, 2).unwrap();
    let rows = dims.batch() * dims.heads() * dims.row_blocks();
    Source::VerticalSlash(VsIndex {
        dims,
        block_count: index_at(0, rows),
        block_offset: index_at(1, rows * 2),
        column_count: index_at(2, rows),
        column_index: index_at(3, rows * 5),
    })
}

fn shape() -> AttnShape {
    AttnShape::new(2, 130, 200, 8, 2, 128).unwrap()
}

fn plan_err(shape: &AttnShape, opts: &AttnOptions, bufs: &AttnBuffers, source: &Source<DeviceBuffer>) -> Error {
    plan::attention(shape, DType::BF16, opts, bufs, source).expect_err("the launch must be refused")
}

#[test]
fn a_valid_launch_has_the_documented_geometry_and_params() {
    let s = shape();
    let opts = AttnOptions { causal: true, softmax_scale: Some(0.5), return_lse: true, ..AttnOptions::default() };
    let bufs = buffers(&s, true);
    let p = plan::attention(&s, DType::BF16, &opts, &bufs, &block_sparse(&s, 2)).unwrap();
    assert_eq!(p.module(), "prefill");
    assert_eq!(p.kernel(), "attn_fwd_block_sparse_bf16_hd128");
    // ceil(130 / 64) = 3 row blocks, 2 per block-sparse CTA (rows 2c and 2c + 1 share the
    // K/V tile loads): ceil(3 / 2) = 2 CTAs along x, of THREADS threads (each warp runs 16
    // rows of both row blocks).
    assert_eq!(p.grid(), [2, 8, 2], "ceil(3 row blocks / 2), heads_q, batch");
    assert_eq!(p.block(), [THREADS, 1, 1]);
    assert_eq!(p.shared_mem_bytes(), (128 + 64 + 64) * 128 * 2, "a 128-row Q tile, one K and one V tile, x 128 x 2 bytes");
    let params: sparse_attn::params::AttnParams = bytemuck::pod_read_unaligned(p.params());
    let t = params.tensors;
    assert_eq!((t.q, t.k, t.v, t.out, t.lse), (1 << 30, 2 << 30, 3 << 30, 4 << 30, 5 << 30));
    assert_eq!((t.q_batch_stride, t.q_seq_stride, t.q_head_stride), (130 * 8 * 128, 8 * 128, 128));
    assert_eq!((t.k_batch_stride, t.k_seq_stride, t.k_head_stride), (200 * 2 * 128, 2 * 128, 128));
    assert_eq!((params.batch, params.seq_q, params.seq_k, params.heads_q, params.heads_kv), (2, 130, 200, 8, 2));
    assert_eq!((params.desc_heads, params.row_blocks, params.max_blocks, params.causal), (2, 3, 3, 1));
    assert_eq!((params.block_count, params.block_index), (16 << 30, 17 << 30));
    assert_eq!(params.softmax_scale, 0.5);
    assert!((params.scale_log2 - 0.5 * std::f32::consts::LOG2_E).abs() < 1e-7);

    // Dense, f16, head_dim 64, no LSE: 48 KiB of shared memory (Q, K and V tiles of 128 rows)
    // and a null LSE address.
    let s64 = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let p = plan::attention(&s64, DType::F16, &AttnOptions::default(), &buffers(&s64, false), &Source::Dense).unwrap();
    assert_eq!((p.kernel(), p.grid(), p.shared_mem_bytes()), ("attn_fwd_dense_f16_hd64", [1, 1, 1], 3 * 128 * 64 * 2));
    let params: sparse_attn::params::AttnParams = bytemuck::pod_read_unaligned(p.params());
    assert_eq!((params.tensors.lse, params.desc_heads, params.causal), (0, 0, 0));
    assert!((params.softmax_scale - 0.125).abs() < 1e-7, "default scale is 1/sqrt(64)");
}

#[test]
fn a_stride_of_a_single_entry_dimension_is_not_passed_on() {
    // batch = 1: the batch stride is never stepped, so any value is accepted and sent as 0.
    let s = AttnShape::new(1, 64, 64, 2, 2, 64).unwrap();
    let mut bufs = buffers(&s, false);
    bufs.layouts.q = Bshd { batch: 12345, ..bufs.layouts.q };
    let p = plan::attention(&s, DType::BF16, &AttnOptions::default(), &bufs, &Source::Dense).unwrap();
    let params: sparse_attn::params::AttnParams = bytemuck::pod_read_unaligned(p.params());
    assert_eq!(params.tensors.q_batch_stride, 0);
}

#[test]
fn unsupported_head_dims_are_refused() {
    for d in [32, 80, 192, 512] {
        let s = AttnShape::new(1, 64, 64, 1, 1, d).unwrap();
        let e = plan_err(&s, &AttnOptions::default(), &buffers(&s, false), &Source::Dense);
        assert!(matches!(e, Error::UnsupportedHeadDim { head_dim, .. } if head_dim == d), "{e}");
    }
}

#[test]
fn an_unvalidated_shape_is_refused() {
    // AttnShape's fields are private: the shapes a launch used to re-check cannot be built.
    assert_eq!(AttnShape::new(2, 130, 200, 8, 3, 128), Err(Error::HeadsNotDivisible { heads_q: 8, heads_kv: 3 }));
    assert_eq!(AttnShape::new(2, 130, 0, 8, 2, 128), Err(Error::ZeroDimension { dim: "seq_k" }));
}

#[test]
fn a_bad_softmax_scale_is_refused() {
    let s = shape();
    for value in [0.0, -0.0, -1.0, -1e-3, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let opts = AttnOptions { softmax_scale: Some(value), ..Default::default() };
        let e = plan_err(&s, &opts, &buffers(&s, false), &Source::Dense);
        assert!(matches!(&e, Error::InvalidSoftmaxScale { reason, .. } if reason.contains("finite and > 0")), "{value}: {e}");
    }
}

/// A launch of `source` at `scale` for `dtype` and head_dim 64 or 128.
fn plan_scale(dtype: DType, head_dim: usize, scale: f32, source: &str) -> Result<(), Error> {
    let s = AttnShape::new(1, 64, 64, 2, 1, head_dim).unwrap();
    let opts = AttnOptions { softmax_scale: Some(scale), ..Default::default() };
    let bufs = buffers(&s, false);
    let source = match source {
        "topk" => Source::TopK(TopkIndex { dims: TopkDims::new(1, 64, 1, 4).unwrap(), indices: index_at(0, 64 * 4) }),
        _ => Source::Dense,
    };
    plan::attention(&s, dtype, &opts, &bufs, &source).map(|_| ())
}

#[test]
fn the_kernel_scale_range_keeps_scores_finite_and_masks_exact() {
    // Bounds (sparse_attn::kernel_scale_range): scale * log2(e) a normal f32 (a subnormal
    // is flushed to 0 and -inf * 0 is NaN), and scale * log2(e) * 2 * head_dim * 65504^2
    // <= f32::MAX (no f16-range input overflows the scaled score).
    let log2e = std::f64::consts::LOG2_E;
    for dtype in [DType::F16, DType::BF16] {
        for head_dim in [64, 128] {
            let (min, max) = kernel_scale_range(dtype, head_dim);
            assert!((min * std::f32::consts::LOG2_E).is_normal(), "{min:e}");
            assert!(!(f32::from_bits(min.to_bits() - 1) * std::f32::consts::LOG2_E).is_normal());
            let bound = f32::MAX as f64 / (log2e * 2.0 * head_dim as f64 * 65504.0 * 65504.0);
            assert!(max as f64 <= bound && f32::from_bits(max.to_bits() + 1) as f64 > bound, "{max:e} vs {bound:e}");
            for source in ["dense", "topk"] {
                // Every scale in use is far inside: 1/sqrt(d), 1, and temperatures around them.
                for ok in [min, 1e-30, 1e-3, 1.0 / (head_dim as f32).sqrt(), 1.0, 30.0, 1e6, max] {
                    plan_scale(dtype, head_dim, ok, source).unwrap_or_else(|e| panic!("{dtype:?} d{head_dim} {source} {ok:e}: {e}"));
                }
                for (bad, why) in [(f32::from_bits(min.to_bits() - 1), "subnormal"), (1e-40, "subnormal"), (f32::MIN_POSITIVE / 2.0, "subnormal"), (f32::from_bits(max.to_bits() + 1), "overflows"), (1e30, "overflows"), (f32::MAX, "overflows")] {
                    let e = plan_scale(dtype, head_dim, bad, source).expect_err("out of range");
                    assert!(matches!(&e, Error::InvalidSoftmaxScale { value, reason } if *value == bad && reason.contains(why)), "{dtype:?} d{head_dim} {source} {bad:e}: {e}");
                }
            }
        }
        // The bound halves with head_dim (twice the products in q.k).
        assert_eq!(kernel_scale_range(dtype, 64).1 / 2.0, kernel_scale_range(dtype, 128).1);
    }
    // The message names the scale, the bound and the reason.
    let e = plan_scale(DType::BF16, 128, 1e30, "dense").unwrap_err().to_string();
    assert!(e.contains("softmax_scale 1e30") && e.contains("head_dim 128") && e.contains("at most 2.1"), "{e}");
    // The reference computes in f64 and takes any finite positive scale.
    let opts = AttnOptions { softmax_scale: Some(1e30), ..Default::default() };
    assert_eq!(opts.scale(128), Ok(1e30));
}

#[test]
fn short_buffers_are_named() {
    let s = shape();
    let opts = AttnOptions::default();
    let shorten = |f: fn(&mut AttnBuffers) -> &mut DeviceBuffer, name: &str| {
        let mut bufs = buffers(&s, false);
        f(&mut bufs).len -= 1;
        let e = plan_err(&s, &opts, &bufs, &Source::Dense);
        assert!(matches!(e, Error::BufferTooSmall { tensor, .. } if tensor == name), "{name}: {e}");
    };
    shorten(|b| &mut b.q, "q");
    shorten(|b| &mut b.k, "k");
    shorten(|b| &mut b.v, "v");
    shorten(|b| &mut b.out, "out");
}

#[test]
fn overlapping_output_strides_are_refused() {
    let s = shape();
    let mut bufs = buffers(&s, false);
    // seq stride smaller than heads * head_dim: rows of different heads would share memory.
    bufs.layouts.out = Bshd { batch: s.seq_q() * 8 * 128, seq: 512, head: 128 };
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidStrides { tensor: "out", .. }), "{e}");
}

#[test]
fn rows_must_be_16_byte_aligned() {
    let s = shape();
    let mut bufs = buffers(&s, false);
    bufs.k.addr += 8;
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "k", .. }), "{e}");

    // A head stride of 132 elements (264 bytes) leaves every other head row misaligned.
    let mut bufs = buffers(&s, false);
    bufs.layouts.v = Bshd { batch: s.seq_k() * 2 * 132, seq: 2 * 132, head: 132 };
    bufs.v.len = s.batch() * s.seq_k() * 2 * 132;
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidStrides { tensor: "v", ref reason } if reason.contains("head stride 132")), "{e}");

    // A padded but aligned layout (head stride 136) is fine.
    bufs.layouts.v = Bshd { batch: s.seq_k() * 2 * 136, seq: 2 * 136, head: 136 };
    bufs.v.len = s.batch() * s.seq_k() * 2 * 136;
    plan::attention(&s, DType::BF16, &AttnOptions::default(), &bufs, &Source::Dense).unwrap();
}

#[test]
fn a_null_tensor_is_refused() {
    let s = shape();
    let mut bufs = buffers(&s, false);
    bufs.q.addr = 0;
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "q", ref reason } if reason.contains("null")), "{e}");
}

#[test]
fn the_lse_buffer_must_match_the_options() {
    let s = shape();
    let want = AttnOptions { return_lse: true, ..Default::default() };
    let e = plan_err(&s, &want, &buffers(&s, false), &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "lse", .. }), "{e}");
    let e = plan_err(&s, &AttnOptions::default(), &buffers(&s, true), &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "lse", .. }), "{e}");
    let mut bufs = buffers(&s, true);
    bufs.lse.as_mut().unwrap().len = s.lse_len() - 1;
    let e = plan_err(&s, &want, &bufs, &Source::Dense);
    assert_eq!(e, Error::BufferTooSmall { tensor: "lse", needed: s.lse_len(), len: s.lse_len() - 1 });
    let mut bufs = buffers(&s, true);
    bufs.lse.as_mut().unwrap().addr += 2;
    let e = plan_err(&s, &want, &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "lse", .. }), "{e}");
}

#[test]
fn outputs_must_not_alias_inputs() {
    let s = shape();
    let mut bufs = buffers(&s, false);
    bufs.out.addr = bufs.q.addr + 1024; // inside q
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "out", ref reason } if reason.contains("`q`")), "{e}");

    let opts = AttnOptions { return_lse: true, ..Default::default() };
    let mut bufs = buffers(&s, true);
    bufs.lse.as_mut().unwrap().addr = bufs.v.addr + 64; // inside v
    let e = plan_err(&s, &opts, &bufs, &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "lse", .. }), "{e}");

    // Reading q, k and v from one buffer is fine: only writes must not alias.
    let mut bufs = buffers(&s, false);
    bufs.k = bufs.v;
    plan::attention(&s, DType::BF16, &AttnOptions::default(), &bufs, &Source::Dense).unwrap();
}

#[test]
fn block_sparse_descriptor_dims_must_fit_the_problem() {
    let s = shape();
    let opts = AttnOptions::causal();
    let bufs = buffers(&s, false);
    // H = heads_q and H = heads_kv are both accepted.
    for heads in [8, 2] {
        plan::attention(&s, DType::BF16, &opts, &bufs, &block_sparse(&s, heads)).unwrap();
    }
    let mismatch = |source: Source<DeviceBuffer>, what: &str| {
        let e = plan_err(&s, &opts, &bufs, &source);
        assert!(matches!(e, Error::DescriptorMismatch { ref reason } if reason.contains(what)), "{what}: {e}");
    };
    mismatch(block_sparse(&s, 4), "4 heads");
    let Source::BlockSparse(BlockSparseIndex { dims, block_count, block_index }) = block_sparse(&s, 2) else { unreachable!() };
    let [b, h, mb, cap] = dims.to_array();
    let with_dims = |dims| Source::BlockSparse(BlockSparseIndex { dims, block_count, block_index });
    mismatch(with_dims(BlockSparseDims::new(1, h, mb, cap).unwrap()), "batch 1");
    mismatch(with_dims(BlockSparseDims::new(b, h, 2, cap).unwrap()), "2 row blocks");
    let short = |count_len: usize, index_len: usize, name: &str| {
        let source = Source::BlockSparse(BlockSparseIndex {
            dims,
            block_count: DeviceBuffer { len: count_len, ..block_count },
            block_index: DeviceBuffer { len: index_len, ..block_index },
        });
        let e = plan_err(&s, &opts, &bufs, &source);
        assert!(matches!(e, Error::BufferTooSmall { tensor, .. } if tensor == name), "{name}: {e}");
    };
    short(block_count.len - 1, block_index.len, "block_count");
    short(block_count.len, block_index.len - 1, "block_index");
    let misaligned = Source::BlockSparse(BlockSparseIndex { dims, block_count: DeviceBuffer { addr: block_count.addr + 2, ..block_count }, block_index });
    let e = plan_err(&s, &opts, &bufs, &misaligned);
    assert!(matches!(e, Error::InvalidParameter { name: "block_count", .. }), "{e}");
    // Dims whose element count overflows cannot be built (the dims type validates once).
    let e = BlockSparseDims::new(b, h, mb, usize::MAX / 2).unwrap_err();
    assert!(matches!(e, Error::DimensionTooLarge { dim: "block_index", .. }), "{e}");
}

#[test]
fn vertical_slash_needs_causal_and_matching_dims() {
    let s = shape();
    let bufs = buffers(&s, false);
    plan::attention(&s, DType::F16, &AttnOptions::causal(), &bufs, &vertical_slash(&s, 8)).unwrap();
    let e = plan_err(&s, &AttnOptions::default(), &bufs, &vertical_slash(&s, 8));
    assert!(matches!(e, Error::InvalidParameter { name: "causal", .. }), "{e}");
    let e = plan_err(&s, &AttnOptions::causal(), &bufs, &vertical_slash(&s, 3));
    assert!(matches!(e, Error::DescriptorMismatch { .. }), "{e}");
    let Source::VerticalSlash(VsIndex { dims, block_count, block_offset, column_count, column_index }) = vertical_slash(&s, 2) else {
        unreachable!()
    };
    let cases = [
        ("block_count", 0usize),
        ("block_offset", 1),
        ("column_count", 2),
        ("column_index", 3),
    ];
    for (name, which) in cases {
        let mut b = [block_count, block_offset, column_count, column_index];
        b[which].len -= 1;
        let source = Source::VerticalSlash(VsIndex { dims, block_count: b[0], block_offset: b[1], column_count: b[2], column_index: b[3] });
        let e = plan_err(&s, &AttnOptions::causal(), &bufs, &source);
        assert!(matches!(e, Error::BufferTooSmall { tensor, .. } if tensor == name), "{name}: {e}");
    }
    // No verticals at all: a zero-length column_index is fine (the kernel never reads it).
    let none = VsIndexDims::new(dims.batch(), dims.heads(), dims.row_blocks(), 0, dims.nnz_s()).unwrap();
    let column_index = DeviceBuffer { addr: 0, len: 0 };
    let source = Source::VerticalSlash(VsIndex { dims: none, block_count, block_offset, column_count, column_index });
    plan::attention(&s, DType::F16, &AttnOptions::causal(), &bufs, &source).unwrap();
}

#[test]
fn a_grid_beyond_the_hardware_limit_is_an_error() {
    // 70 000 query heads exceed gridDim.y = 65 535.
    let s = AttnShape::new(1, 64, 64, 70_000, 1, 64).unwrap();
    let e = plan_err(&s, &AttnOptions::default(), &buffers(&s, false), &Source::Dense);
    assert!(matches!(e, Error::InvalidParameter { name: "grid", .. }), "{e}");
}

#[test]
fn kernel_table_covers_every_instantiation_and_only_those() {
    let s = shape();
    let patterns = [(Source::Dense, "dense"), (block_sparse(&s, 2), "block_sparse"), (vertical_slash(&s, 2), "vertical_slash")];
    for (pattern, p) in &patterns {
        for (dtype, t) in [(DType::F16, "f16"), (DType::BF16, "bf16")] {
            for d in [64, 96, 128, 256] {
                assert_eq!(kernel_name(pattern, dtype, d).unwrap(), format!("attn_fwd_{p}_{t}_hd{d}"));
            }
            assert!(matches!(kernel_name(pattern, dtype, 80), Err(Error::UnsupportedHeadDim { head_dim: 80, .. })));
        }
    }
    // Dense: a 128-row Q tile, K and V tiles of 128 keys at head_dim 64 (FlashAttention-2's
    // choice) and 64 at 128; block-sparse: 64-key tiles; vertical-slash: two stages of K and
    // V. At head_dim 256 every pattern: a 64-row Q tile, one K and one V tile of 64 keys.
    let kib = |src: &Source<DeviceBuffer>, d| shared_mem_bytes(src, d) / 1024;
    assert_eq!((kib(&patterns[0].0, 64), kib(&patterns[0].0, 128), kib(&patterns[0].0, 256)), (48, 64, 96));
    assert_eq!((kib(&patterns[1].0, 64), kib(&patterns[1].0, 128), kib(&patterns[1].0, 256)), (32, 64, 96));
    assert_eq!((kib(&patterns[2].0, 64), kib(&patterns[2].0, 128), kib(&patterns[2].0, 256)), (32, 64, 96));
    // The grid: two row blocks per CTA for dense and block-sparse up to head_dim 128, one at
    // 256 and for vertical-slash.
    use sparse_attn::plan::prefill::row_blocks_per_cta;
    assert_eq!([64, 128, 256].map(|d| row_blocks_per_cta(&patterns[0].0, d)), [2, 2, 1]);
    assert_eq!([64, 128, 256].map(|d| row_blocks_per_cta(&patterns[1].0, d)), [2, 2, 1]);
    assert_eq!([64, 128, 256].map(|d| row_blocks_per_cta(&patterns[2].0, d)), [1, 1, 1]);
    // Every name the host asks for is an entry of the embedded PTX.
    let modules: Vec<_> = sparse_attn::ptx::modules().iter().filter(|m| m.name == "prefill").collect();
    if modules.is_empty() {
        eprintln!("skipped the PTX half: the crate was built without a CUDA compiler");
        return;
    }
    for m in modules {
        for (pattern, _) in &patterns {
            for dtype in [DType::F16, DType::BF16] {
                for d in [64, 96, 128, 256] {
                    let name = kernel_name(pattern, dtype, d).unwrap();
                    assert!(m.ptx.contains(&format!(".entry {name}(")), "{name} missing from {}", m.target.arch);
                }
            }
        }
    }
}

#[test]
fn supports_reports_the_instantiated_combinations() {
    assert!(!supports(DType::BF16, 80, 90), "no head_dim 80 kernel");
    assert!(!supports(DType::BF16, 192, 90), "no head_dim 192 kernel");
    assert!(!supports(DType::F16, 64, 75), "sm_75 has no bf16 mma / cp.async");
    let built = sparse_attn::ptx::resource_report().is_some();
    for dtype in [DType::F16, DType::BF16] {
        for d in [64, 96, 128, 256] {
            for cc in [80, 86, 89, 90, 100] {
                assert_eq!(supports(dtype, d, cc), built, "{dtype:?} hd{d} sm_{cc}");
            }
        }
    }
}

#[test]
fn topk_launch_geometry_and_params() {
    use sparse_attn::params::TOPK_THREADS;
    use sparse_attn::plan::topk_attention::{kernel_name as topk_kernel_name, shared_mem_bytes as topk_shared_mem_bytes};
    // GQA 40:2 = 20 heads per group: two warps per (row, kv head), the second half full.
    let s = AttnShape::new(2, 70, 90, 40, 2, 64).unwrap();
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let source = Source::TopK(TopkIndex { dims: TopkDims::new(2, 70, 2, 7).unwrap(), indices: index_at(0, 2 * 70 * 2 * 7) });
    let p = plan::attention(&s, DType::F16, &opts, &buffers(&s, true), &source).unwrap();
    assert_eq!((p.module(), p.kernel()), ("topk_attention", "topk_attn_fwd_f16_hd64"));
    assert_eq!(p.grid(), [70, 2 * 2, 2], "seq_q, heads_kv x ceil(20 / 16), batch");
    assert_eq!(p.block(), [TOPK_THREADS, 1, 1]);
    assert_eq!(p.shared_mem_bytes(), (4 * 32 + 16) * 64 * 2);
    let params: sparse_attn::params::TopkParams = bytemuck::pod_read_unaligned(p.params());
    assert_eq!((params.topk, params.head_chunks, params.causal, params.indices), (7, 2, 1, 16 << 30));
    assert_eq!((params.heads_q, params.heads_kv, params.seq_q, params.seq_k), (40, 2, 70, 90));
    assert_eq!(topk_kernel_name(DType::BF16, 128).unwrap(), "topk_attn_fwd_bf16_hd128");
    assert_eq!(topk_kernel_name(DType::F16, 96).unwrap(), "topk_attn_fwd_f16_hd96");
    assert!(matches!(topk_kernel_name(DType::BF16, 80), Err(Error::UnsupportedHeadDim { .. })));
    assert!(topk_shared_mem_bytes(128) <= 48 * 1024, "no dynamic shared memory opt-in needed");
}

#[test]
fn topk_index_dims_and_buffer_are_checked() {
    let s = AttnShape::new(1, 70, 90, 4, 2, 128).unwrap();
    let opts = AttnOptions::default();
    let bufs = buffers(&s, false);
    let topk = |[b, sq, h, k]: [usize; 4], len: usize| Source::TopK(TopkIndex { dims: TopkDims::new(b, sq, h, k).unwrap(), indices: index_at(0, len) });
    let run = |dims: [usize; 4], len: usize| plan::attention(&s, DType::BF16, &opts, &bufs, &topk(dims, len));
    run([1, 70, 2, 8], 70 * 2 * 8).unwrap();
    for (dims, what) in [([2, 70, 2, 8], "batch = 2"), ([1, 69, 2, 8], "seq_q = 69"), ([1, 70, 4, 8], "heads_kv = 4")] {
        let e = run(dims, 2 * 70 * 4 * 8).unwrap_err();
        assert!(matches!(e, Error::DescriptorMismatch { ref reason } if reason.contains(what)), "{what}: {e}");
    }
    assert_eq!(run([1, 70, 2, 0], 0).unwrap_err(), Error::ZeroDimension { dim: "k" });
    let e = run([1, 70, 2, 8], 70 * 2 * 8 - 1).unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { tensor: "indices", .. }), "{e}");
    // The dense-tensor checks are the same as the prefill kernels'.
    let mut bad = bufs;
    bad.out.addr = bad.q.addr;
    let e = plan::attention(&s, DType::BF16, &opts, &bad, &topk([1, 70, 2, 8], 70 * 2 * 8)).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "out", .. }), "{e}");
}

#[test]
fn support_answers_for_the_score_options_and_says_why() {
    use sparse_attn::{support, SupportQuery};
    let built = sparse_attn::ptx::resource_report().is_some();
    let base = SupportQuery::new(DType::BF16, 128, 90);
    // Every option is built at every dtype, head_dim and target.
    for softcap in [None, Some(50.0)] {
        for window_left in [None, Some(0), Some(4096)] {
            for sinks in [false, true] {
                let q = SupportQuery { softcap, window_left, sinks, ..base };
                assert_eq!(support(&q).is_ok(), built, "{q:?}: {:?}", support(&q));
            }
        }
    }
    let reason = |q: SupportQuery| support(&q).unwrap_err().reason;
    assert!(reason(SupportQuery { head_dim: 80, ..base }).contains("head_dim 80"));
    assert!(reason(SupportQuery { compute_capability: 75, ..base }).contains("7.5"));
    assert!(reason(SupportQuery { softcap: Some(0.0), ..base }).contains("softcap"));
    assert!(reason(SupportQuery { softcap: Some(f32::NAN), ..base }).contains("softcap"));
    assert!(reason(SupportQuery { window_left: Some(1 << 31), ..base }).contains("window_left"));
    if !built {
        assert!(reason(base).contains("PTX") || reason(base).contains("kernels"), "{}", reason(base));
    }
    let opts = AttnOptions { softcap: Some(30.0), window_left: Some(512), ..AttnOptions::causal() };
    assert_eq!(base.with_options(&opts, true), SupportQuery { softcap: Some(30.0), window_left: Some(512), sinks: true, ..base });
}
