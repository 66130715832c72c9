//! Caller input that used to panic (or silently misbehave) instead of returning an
//! `Error`: hand-built `RefInputs` (public fields) and invalid `AttnShape`s (now refused by
//! its only constructor), key lists handed to
//! `attend_rows`, counts that overflow `usize`, and a top-k row too long for the kernel's
//! 32-bit tile arithmetic. Each test names the defect it pins down.

use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::source::{Source, TopkDims, TopkIndex, VsIndex, VsIndexDims};
use sparse_attn::pattern::{TopkTokens, VerticalSlash};
use sparse_attn::reference::{attend_rows, dense_attention, masked_attention, vertical_slash_attention, RefInputs};
use sparse_attn::shape::DType;
use sparse_attn::{plan, AttnOptions, AttnShape, ElementMask, Error, SparsePattern};

fn shape() -> AttnShape {
    AttnShape::new(1, 5, 7, 2, 1, 8).unwrap()
}

/// `RefInputs` has public fields, so a caller can pair a shape with tensors of any length.
fn inputs_with_q_len(shape: AttnShape, q_len: usize) -> RefInputs {
    RefInputs { shape, q: vec![0.5; q_len], k: vec![0.25; shape.kv_len()], v: vec![1.0; shape.kv_len()], sinks: None }
}

#[test]
fn dense_reference_rejects_a_short_q_instead_of_panicking() {
    let inputs = inputs_with_q_len(shape(), 3);
    let err = dense_attention(&inputs, &AttnOptions::default()).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "q", .. }), "{err:?}");
}

#[test]
fn dense_reference_rejects_an_invalid_hand_built_shape() {
    // heads_kv = 0 used to divide by zero in `kv_head`; head_dim = 0 gave an infinite scale.
    // Such a shape can no longer be built: AttnShape's fields are private.
    for (heads_kv, head_dim) in [(0, 8), (1, 0)] {
        let err = AttnShape::new(1, 5, 7, 2, heads_kv, head_dim).unwrap_err();
        assert!(matches!(err, Error::ZeroDimension { .. }), "{heads_kv} {head_dim}: {err:?}");
    }
}

#[test]
fn masked_reference_rejects_a_short_q_instead_of_panicking() {
    let s = shape();
    let inputs = inputs_with_q_len(s, 3);
    let mask = ElementMask::dense(&s, false);
    let err = masked_attention(&inputs, &AttnOptions::default(), &mask).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "q", .. }), "{err:?}");
}

#[test]
fn vertical_slash_reference_rejects_a_short_q_instead_of_panicking() {
    let s = shape();
    let inputs = inputs_with_q_len(s, 3);
    let vs = VerticalSlash::new(1, 1, 1, 1, vec![0], vec![0]).unwrap();
    let err = vertical_slash_attention(&inputs, &AttnOptions::causal(), &vs).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "q", .. }), "{err:?}");
}

#[test]
fn attend_rows_rejects_a_key_outside_seq_k() {
    let s = shape();
    let inputs = inputs_with_q_len(s, s.q_len());
    // A key list naming key seq_k used to panic inside a worker thread.
    let err = attend_rows(&inputs, 0.5, |_, _, i, list| list.push(if i == 3 { s.seq_k() } else { 0 })).unwrap_err();
    assert!(matches!(err, Error::IndexOutOfRange { .. }), "{err:?}");
    // ...and inconsistent inputs are an error, not a slice panic.
    let short = inputs_with_q_len(s, 1);
    assert!(matches!(attend_rows(&short, 0.5, |_, _, _, _| {}), Err(Error::WrongLength { tensor: "q", .. })));
    // Valid keys still work.
    let ok = attend_rows(&inputs, 0.5, |_, _, _, list| list.push(0)).unwrap();
    assert!(ok.out.iter().all(|&x| x == 1.0));
}

#[test]
fn default_scale_of_a_zero_head_dim_is_an_error() {
    let err = AttnOptions::default().scale(0).unwrap_err();
    assert!(matches!(err, Error::ZeroDimension { dim: "head_dim" }), "{err:?}");
}

#[test]
fn topk_kept_fraction_does_not_overflow_on_a_large_problem() {
    // 2^20 rows x 2^21 keys x 2^24 query heads = 2^65 dense elements: the count used to
    // overflow usize (a panic here, a wrapped fraction in release). The index tensor is
    // only 2^20 entries.
    let (seq_q, seq_k, heads_q) = (1 << 20, 1 << 21, 1 << 24);
    let shape = AttnShape::new(1, seq_q, seq_k, heads_q, 1, 1).unwrap();
    let mut indices = vec![-1; seq_q];
    indices[seq_q - 1] = 0;
    let topk = TopkTokens::new(1, seq_q, 1, 1, indices).unwrap();
    let f = topk.kept_fraction(&shape, false).unwrap();
    let want = heads_q as f64 / (seq_q as f64 * seq_k as f64 * heads_q as f64);
    assert!((f - want).abs() <= want * 1e-9, "{f} vs {want}");
}

#[test]
fn contiguous_layouts_of_an_absurd_hand_built_shape_do_not_panic() {
    // Used to overflow computing the strides, before any validation could run; now the
    // shape itself cannot be built (private fields, validating constructor).
    let err = AttnShape::new(1, usize::MAX / 2, 64, 4, 1, 64).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { .. }), "{err:?}");
    // Strides of absurd sizes still saturate instead of overflowing.
    let l = sparse_attn::Bshd::contiguous(usize::MAX / 2, 4, 64);
    assert_eq!(l.batch, usize::MAX);
}

/// Fake, well-aligned, non-overlapping device buffers for a contiguous problem: the plan
/// builders only do arithmetic on them.
fn fake_buffers(shape: &AttnShape) -> AttnBuffers {
    let q = shape.q_len();
    let kv = shape.kv_len();
    let at = |n: u64| 0x100_0000 * n;
    AttnBuffers {
        q: DeviceBuffer { addr: at(1), len: q },
        k: DeviceBuffer { addr: at(2), len: kv },
        v: DeviceBuffer { addr: at(3), len: kv },
        out: DeviceBuffer { addr: at(4), len: q },
        lse: None,
        sinks: None,
        layouts: AttnLayouts::contiguous(shape),
    }
}

#[test]
fn topk_rows_longer_than_the_kernel_can_tile_are_rejected() {
    // topk_attention.cu computes ceil(topk / 32) in i32: for topk > i32::MAX - 31 that overflows
    // and the kernel silently attends nothing. The host must refuse such a row length.
    let shape = AttnShape::new(1, 1, 64, 1, 1, 64).unwrap();
    let bufs = fake_buffers(&shape);
    let opts = AttnOptions::default();
    let topk = |k: usize| Source::TopK(TopkIndex { dims: TopkDims::new(1, 1, 1, k).unwrap(), indices: DeviceBuffer { addr: 0x800_0000, len: k } });
    for k in [i32::MAX as usize - 30, i32::MAX as usize] {
        let err = plan::attention(&shape, DType::F16, &opts, &bufs, &topk(k)).unwrap_err();
        assert!(matches!(err, Error::DimensionTooLarge { dim: "k", .. }), "k = {k}: {err:?}");
    }
    // The longest row the kernel tiles exactly is still accepted.
    plan::attention(&shape, DType::F16, &opts, &bufs, &topk(i32::MAX as usize - 31)).unwrap();
}

#[test]
fn element_mask_accessors_outside_the_mask_neither_panic_nor_alias_another_row() {
    let s = AttnShape::new(1, 2, 3, 1, 1, 8).unwrap();
    let mut mask = ElementMask::empty(&s);
    mask.set(0, 0, 1, 0);
    // Key 64 of row 0 is word 1 of the bit array: row 1's first word. It used to read as
    // set (and `set` would have written row 1).
    assert!(!mask.get(0, 0, 0, 64));
    for (b, h, i, j) in [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 2, 0), (0, 0, 0, 3), (usize::MAX, 0, 0, usize::MAX)] {
        assert!(!mask.get(b, h, i, j), "get({b}, {h}, {i}, {j})");
        mask.set(b, h, i, j);
        mask.set_range(b, h, i, j, j.saturating_add(100));
        assert_eq!(mask.row_keys(b, h, i).count(), 0, "row_keys({b}, {h}, {i})");
    }
    mask.set(0, 0, 0, 64);
    assert_eq!(mask.count(), 1, "out-of-range coordinates must not set anything");
    assert_eq!(mask.row_keys(0, 0, 1).collect::<Vec<_>>(), vec![0]);
}

#[test]
fn shape_accessors_of_an_invalid_hand_built_shape_do_not_panic() {
    // These helpers used to divide by zero or overflow on hand-built shapes; AttnShape's
    // fields are private now, so its constructor refuses every one of them.
    let good = shape();
    let huge = usize::MAX;
    for bad in [(1, 5, 7, 2, 0, 8), (1, 5, 7, 1, 2, 8), (huge, huge, huge, huge, 1, huge), (1, 0, huge, 2, 1, 8)] {
        assert!(AttnShape::new(bad.0, bad.1, bad.2, bad.3, bad.4, bad.5).is_err(), "{bad:?}");
    }
    let _ = (good.visible_keys(huge, true), good.visible_keys(huge, false), good.kv_head(huge));
    // Valid shapes are unaffected.
    assert_eq!((good.group_size(), good.kv_head(1), good.q_len(), good.causal_offset()), (2, 0, 80, 2));
    assert_eq!((good.visible_keys(0, true), good.visible_keys(4, true), good.visible_keys(9, true)), (3, 7, 7));
}

#[test]
fn varlen_seqlens_past_the_batch_do_not_panic() {
    let v = sparse_attn::Varlen::new(vec![0, 3, 10], vec![0, 5, 9]).unwrap();
    assert_eq!(v.seqlens(1), (7, 4));
    // Sequence 2 does not exist: it used to index past cu_seqlens.
    assert_eq!(v.seqlens(2), (0, 0));
    assert_eq!(v.seqlens(usize::MAX), (0, 0));
}

#[test]
fn vs_convert_plan_of_huge_params_is_an_error_not_an_overflow() {
    // batch x heads x row_blocks used to overflow u64 computing the grid; now it is counted
    // in usize from validated dims, and a grid too large for one launch is an error.
    let plan_for = |batch: usize, heads: usize, seq_q: usize| {
        let shape = AttnShape::new(batch, seq_q, 64, heads, heads, 1).unwrap();
        let dims = VsIndexDims::new(batch, heads, seq_q.div_ceil(64), 1, 1).unwrap();
        let buf = |n: u64| DeviceBuffer { addr: n << 40, len: usize::MAX };
        let out = VsIndex { dims, block_count: buf(1), block_offset: buf(2), column_count: buf(3), column_index: buf(4) };
        plan::vs_convert::plan(&shape, buf(5), buf(6), &out)
    };
    let err = plan_for(1 << 16, 1 << 8, i32::MAX as usize).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "grid", .. }), "{err:?}");
    assert_eq!(plan_for(2, 3, 100 * 64).unwrap().grid(), [5, 1, 1]);
}

#[test]
fn element_mask_of_a_huge_valid_problem_is_an_error_not_a_panic() {
    // A 1 MiB index tensor on a valid shape whose element mask would need 2^20 x 2^28 x
    // 2^15 words: the bit count overflowed (capacity overflow panic) inside element_mask.
    let (seq_q, seq_k, heads_q) = (1 << 18, 1 << 21, 1 << 30);
    let shape = AttnShape::new(1, seq_q, seq_k, heads_q, 1, 1).unwrap();
    let topk = TopkTokens::new(1, seq_q, 1, 1, vec![-1; seq_q]).unwrap();
    assert!(topk.element_mask(&shape, true).is_err());
    // One that fits usize but not in any memory is refused too, instead of aborting.
    let shape = AttnShape::new(1, seq_q, seq_k, 1 << 26, 1, 1).unwrap();
    assert!(topk.element_mask(&shape, true).is_err());
}

#[test]
fn shared_memory_sizes_of_any_head_dim_do_not_overflow() {
    use sparse_attn::plan::prefill::shared_mem_bytes;
    use sparse_attn::plan::topk_attention::shared_mem_bytes as topk_shared_mem_bytes;
    let dense = sparse_attn::Source::<&[i32]>::Dense;
    assert_eq!((shared_mem_bytes(&dense, 64), shared_mem_bytes(&dense, 128)), (48 * 1024, 64 * 1024));
    assert_eq!((topk_shared_mem_bytes(64), topk_shared_mem_bytes(128)), (18 * 1024, 36 * 1024));
    // Public functions of a caller's head_dim: they used to overflow (and truncate to u32).
    for hd in [1 << 24, usize::MAX] {
        assert_eq!(shared_mem_bytes(&dense, hd), u32::MAX, "{hd}");
        assert_eq!(topk_shared_mem_bytes(hd), u32::MAX, "{hd}");
    }
}

#[test]
fn a_scale_whose_exp2_form_overflows_f32_is_rejected() {
    // The kernels run the softmax in exp2 with scale * log2(e) folded in: a finite scale
    // above f32::MAX / log2(e) became an infinite scale_log2 and NaN outputs.
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let bufs = fake_buffers(&shape);
    let opts = AttnOptions { softmax_scale: Some(3.0e38), ..Default::default() };
    let err = plan::attention(&shape, DType::F16, &opts, &bufs, &Source::Dense).unwrap_err();
    assert!(matches!(err, Error::InvalidSoftmaxScale { .. }), "{err:?}");
    let indices = DeviceBuffer { addr: 0x800_0000, len: 64 };
    let topk = Source::TopK(TopkIndex { dims: TopkDims::new(1, 64, 1, 1).unwrap(), indices });
    let err = plan::attention(&shape, DType::F16, &opts, &bufs, &topk).unwrap_err();
    assert!(matches!(err, Error::InvalidSoftmaxScale { .. }), "{err:?}");
    // The bound is now tighter than the exp2 form's overflow (sparse_attn::kernel_scale_range):
    // 1e30 passed this check, yet overflowed once multiplied by a score of large inputs.
    let opts = AttnOptions { softmax_scale: Some(1.0e30), ..Default::default() };
    let err = plan::attention(&shape, DType::F16, &opts, &bufs, &Source::Dense).unwrap_err();
    assert!(matches!(err, Error::InvalidSoftmaxScale { .. }), "{err:?}");
    let (_, max) = sparse_attn::kernel_scale_range(DType::F16, 64);
    let opts = AttnOptions { softmax_scale: Some(max), ..Default::default() };
    plan::attention(&shape, DType::F16, &opts, &bufs, &Source::Dense).unwrap();
}

#[test]
fn strides_beyond_i64_are_rejected_not_wrapped_negative() {
    // The kernels take strides as i64. A buffer described as usize::MAX elements let a
    // seq stride of 2^63 + 8 through, which the kernel read as a negative stride.
    let shape = AttnShape::new(1, 2, 64, 1, 1, 64).unwrap();
    let mut bufs = fake_buffers(&shape);
    bufs.q.len = usize::MAX;
    bufs.layouts.q.seq = (1usize << 63) + 8;
    let err = plan::attention(&shape, DType::F16, &AttnOptions::default(), &bufs, &Source::Dense).unwrap_err();
    assert!(matches!(err, Error::InvalidStrides { tensor: "q", .. }), "{err:?}");
}
