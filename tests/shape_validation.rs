//! Every validation error of shapes, strides, varlen and options, one test each.

use sparse_attn::{AttnOptions, AttnShape, Bshd, Error, Varlen};

#[test]
fn zero_dimension_is_named() {
    let dims = ["batch", "seq_q", "seq_k", "heads_q", "heads_kv", "head_dim"];
    for (n, dim) in dims.iter().enumerate() {
        let mut d = [1usize, 8, 8, 4, 2, 64];
        d[n] = 0;
        let err = AttnShape::new(d[0], d[1], d[2], d[3], d[4], d[5]).unwrap_err();
        assert_eq!(err, Error::ZeroDimension { dim }, "zeroing {dim}");
    }
}

#[test]
fn too_long_sequence_is_rejected() {
    let too_long = i32::MAX as usize + 1;
    let err = AttnShape::new(1, 1, too_long, 1, 1, 64).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "seq_k", value, .. } if value == too_long));
}

#[test]
fn gqa_heads_must_divide() {
    let err = AttnShape::new(1, 8, 8, 6, 4, 64).unwrap_err();
    assert_eq!(err, Error::HeadsNotDivisible { heads_q: 6, heads_kv: 4 });
    let ok = AttnShape::new(1, 8, 8, 8, 2, 64).unwrap();
    assert_eq!(ok.group_size(), 4);
    assert_eq!(ok.kv_head(5), 1);
}

#[test]
fn causal_visibility_is_bottom_right() {
    // seq_q < seq_k: the last query row sees every key.
    let s = AttnShape::new(1, 3, 10, 1, 1, 64).unwrap();
    assert_eq!([s.visible_keys(0, true), s.visible_keys(2, true)], [8, 10]);
    // seq_q > seq_k: the first rows see nothing.
    let s = AttnShape::new(1, 10, 3, 1, 1, 64).unwrap();
    assert_eq!([s.visible_keys(0, true), s.visible_keys(6, true), s.visible_keys(7, true)], [0, 0, 1]);
    assert_eq!(s.visible_keys(0, false), 3);
}

#[test]
fn buffer_too_small_is_reported() {
    let s = AttnShape::new(2, 5, 5, 4, 4, 64).unwrap();
    let layout = s.q_layout();
    assert!(layout.validate("q", [2, 5, 4, 64], s.q_len(), false).is_ok());
    let err = layout.validate("q", [2, 5, 4, 64], s.q_len() - 1, false).unwrap_err();
    assert_eq!(err, Error::BufferTooSmall { tensor: "q", needed: s.q_len(), len: s.q_len() - 1 });
}

#[test]
fn overlapping_output_strides_are_rejected() {
    // Head stride smaller than head_dim: rows of neighbouring heads alias.
    let bad = Bshd { batch: 4096, seq: 256, head: 32 };
    let err = bad.validate("out", [1, 4, 4, 64], 1 << 20, true).unwrap_err();
    assert!(matches!(err, Error::InvalidStrides { tensor: "out", .. }), "{err}");
    // The same strides are fine for an input (reads may alias).
    assert!(bad.validate("q", [1, 4, 4, 64], 1 << 20, false).is_ok());
    // Head-major (BHSD) output is a valid permutation.
    let bhsd = Bshd { batch: 4 * 16 * 64, seq: 64, head: 16 * 64 };
    assert!(bhsd.validate("out", [1, 16, 4, 64], 4 * 16 * 64, true).is_ok());
}

#[test]
fn overflowing_strides_are_an_error_not_a_panic() {
    let huge = Bshd { batch: usize::MAX / 2, seq: 1, head: 1 };
    let err = huge.validate("k", [3, 1, 1, 64], 100, false).unwrap_err();
    assert!(matches!(err, Error::InvalidStrides { tensor: "k", .. }), "{err}");
}

#[test]
fn softmax_scale_must_be_finite_and_positive() {
    let d = AttnOptions::default();
    assert_eq!(d.scale(64).unwrap(), 0.125);
    for value in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let opts = AttnOptions { softmax_scale: Some(value), ..d };
        let err = opts.scale(64).unwrap_err();
        assert!(matches!(err, Error::InvalidSoftmaxScale { value: v, .. } if v.to_bits() == value.to_bits()));
    }
}

#[test]
fn cu_seqlens_errors() {
    let bad = |q: Vec<i32>, k: Vec<i32>, tensor: &str| {
        let err = Varlen::new(q, k).unwrap_err();
        assert!(matches!(err, Error::InvalidCuSeqlens { tensor: t, .. } if t == tensor), "{err}");
    };
    bad(vec![0], vec![0, 4], "cu_seqlens_q");
    bad(vec![1, 4], vec![0, 4], "cu_seqlens_q");
    bad(vec![0, 4, 3], vec![0, 4, 8], "cu_seqlens_q");
    bad(vec![0, 4], vec![0, -1], "cu_seqlens_k");
    bad(vec![0, 4, 8], vec![0, 4], "cu_seqlens_k");
    let v = Varlen::new(vec![0, 3, 3, 10], vec![0, 5, 9, 20]).unwrap();
    assert_eq!((v.batch(), v.total_q(), v.total_k()), (3, 10, 20));
    assert_eq!(v.seqlens(1), (0, 4));
    assert_eq!(v.max_seqlens(), (7, 11));
}

#[test]
fn element_count_overflow_is_rejected() {
    let big = i32::MAX as usize;
    let err = AttnShape::new(big, big, 1, big, 1, 64).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "q elements", .. }), "{err}");
}

#[test]
fn hand_built_shapes_are_revalidated() {
    // The fields are private: the only way to a shape is the validating constructor.
    assert_eq!(AttnShape::new(1, 8, 8, 4, 0, 64).unwrap_err(), Error::ZeroDimension { dim: "heads_kv" });
}
