//! Top-k token descriptor: validation, element mask, and the reference that enumerates keys
//! straight from the index tensor, checked against dense masked attention.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::pattern::topk::TopkTokens;
use sparse_attn::reference::{dense_attention, masked_attention, topk_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, Error, SparsePattern};

/// Both the sparse reference and the masked one are f64 sums over the same keys, only in a
/// different order, so they agree to rounding (~1e-15); 1e-12 leaves room for long rows.
const TOL: f64 = 1e-12;

/// Random index tensor for `shape`: each row holds a random number of distinct keys in
/// random slots, padded with -1; about one row in eight is all padding. Keys are drawn
/// from the whole `0..seq_k`, so causal rows also carry hidden keys.
fn random_indices(rng: &mut Rng, shape: &AttnShape, k: usize) -> TopkTokens {
    let rows = shape.batch() * shape.seq_q() * shape.heads_kv();
    let mut indices = Vec::with_capacity(rows * k);
    let mut pool: Vec<i32> = (0..shape.seq_k() as i32).collect();
    for _ in 0..rows {
        let n = if rng.chance(0.125) { 0 } else { rng.range(0, k.min(shape.seq_k())) };
        // Partial Fisher-Yates: the first n of the pool become n distinct random keys.
        for t in 0..n {
            let u = rng.range(t, pool.len() - 1);
            pool.swap(t, u);
        }
        let mut row = vec![-1; k];
        let mut slots: Vec<usize> = (0..k).collect();
        for (t, &key) in pool[..n].iter().enumerate() {
            let u = rng.range(t, k - 1);
            slots.swap(t, u);
            row[slots[t]] = key;
        }
        indices.extend(row);
    }
    TopkTokens::new(shape.batch(), shape.seq_q(), shape.heads_kv(), k, indices).expect("generated tensor has the right length")
}

/// The element mask the format defines, computed by scanning raw rows (independent of
/// `TopkTokens`'s own enumeration).
fn expected_allowed(t: &TopkTokens, s: &AttnShape, causal: bool, b: usize, h: usize, i: usize, j: usize) -> bool {
    let k = t.k();
    let start = ((b * s.seq_q() + i) * s.heads_kv() + h / (s.heads_q() / s.heads_kv())) * k;
    let listed = t.indices()[start..start + k].contains(&(j as i32));
    let limit = if causal { i as i64 + s.seq_k() as i64 - s.seq_q() as i64 } else { i64::MAX };
    listed && (j as i64) <= limit
}

fn check_against_mask(rng: &mut Rng, shape: AttnShape, k: usize, causal: bool) {
    let inputs = random_inputs(rng, shape);
    let pattern = random_indices(rng, &shape, k);
    let opts = AttnOptions { causal, ..AttnOptions::default() };
    let mask = pattern.element_mask(&shape, causal).expect("valid pattern");
    let sparse = topk_attention(&inputs, &opts, &pattern).expect("valid pattern");
    let masked = masked_attention(&inputs, &opts, &mask).expect("mask matches shape");
    let (out, lse) = sparse.max_abs_diff(&masked);
    assert!(out <= TOL && lse <= TOL, "{shape:?} k={k} causal={causal}: out diff {out}, lse diff {lse}");
    // Padding-only and fully hidden rows must produce the documented empty-row result.
    for b in 0..shape.batch() {
        for h in 0..shape.heads_q() {
            for i in 0..shape.seq_q() {
                if mask.row_keys(b, h, i).next().is_none() {
                    assert_eq!(sparse.lse[(b * shape.heads_q() + h) * shape.seq_q() + i], f64::NEG_INFINITY);
                }
            }
        }
    }
}

#[test]
fn element_mask_matches_the_format_definition() {
    let mut rng = Rng::new(0x70c1);
    for case in 0..40 {
        let shape = random_shape(&mut rng, 150);
        let causal = case % 2 == 0;
        let k = rng.range(1, shape.seq_k() + 8);
        let pattern = random_indices(&mut rng, &shape, k);
        let mask = pattern.element_mask(&shape, causal).unwrap();
        assert_eq!(mask.dims(), [shape.batch(), shape.heads_q(), shape.seq_q(), shape.seq_k()]);
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                for i in 0..shape.seq_q() {
                    for j in 0..shape.seq_k() {
                        let want = expected_allowed(&pattern, &shape, causal, b, h, i, j);
                        assert_eq!(mask.get(b, h, i, j), want, "{shape:?} causal={causal} at [{b}, {h}, {i}, {j}]");
                    }
                }
            }
        }
    }
}

#[test]
fn reference_equals_masked_attention_on_random_shapes() {
    let mut rng = Rng::new(0x70c2);
    for case in 0..48 {
        let shape = random_shape(&mut rng, 300);
        // Alternate k below and above seq_k (the latter forces -1 padding in every row).
        let k = if case % 3 == 0 { shape.seq_k() + rng.range(1, 20) } else { rng.range(1, shape.seq_k().min(96)) };
        check_against_mask(&mut rng, shape, k, case % 2 == 0);
    }
}

#[test]
fn reference_equals_masked_attention_gqa_and_mha_with_unaligned_lengths() {
    let mut rng = Rng::new(0x70c3);
    for (heads_q, heads_kv) in [(8, 2), (2, 2), (4, 1)] {
        for (seq_q, seq_k) in [(65, 65), (100, 163), (130, 70), (1, 200), (127, 1)] {
            let shape = AttnShape::new(2, seq_q, seq_k, heads_q, heads_kv, 64).unwrap();
            for causal in [false, true] {
                check_against_mask(&mut rng, shape, 17, causal);
            }
        }
    }
}

#[test]
fn reference_equals_masked_attention_at_4096_tokens() {
    let mut rng = Rng::new(0x70c4);
    let shape = AttnShape::new(1, 4096, 4096, 4, 1, 64).unwrap();
    check_against_mask(&mut rng, shape, 64, true);
}

/// Listing every key (in shuffled order) must reproduce dense attention: checks the
/// reference against the one path that involves no sparse descriptor at all.
#[test]
fn full_rows_reproduce_dense_attention() {
    let mut rng = Rng::new(0x70c5);
    for causal in [false, true] {
        let shape = AttnShape::new(1, 77, 90, 4, 2, 32).unwrap();
        let inputs = random_inputs(&mut rng, shape);
        let mut indices = Vec::new();
        for _ in 0..shape.seq_q() * shape.heads_kv() {
            let mut row: Vec<i32> = (0..shape.seq_k() as i32).collect();
            for t in (1..row.len()).rev() {
                row.swap(t, rng.range(0, t));
            }
            indices.extend(row);
        }
        let pattern = TopkTokens::new(1, shape.seq_q(), shape.heads_kv(), shape.seq_k(), indices).unwrap();
        let opts = AttnOptions { causal, ..AttnOptions::default() };
        let sparse = topk_attention(&inputs, &opts, &pattern).unwrap();
        let dense = dense_attention(&inputs, &opts).unwrap();
        let (out, lse) = sparse.max_abs_diff(&dense);
        assert!(out <= TOL && lse <= TOL, "causal={causal}: out diff {out}, lse diff {lse}");
    }
}

/// Hand-checkable rows: one key gives exactly that key's V and LSE = scale * q.k; padding
/// only, or a causally hidden key only, gives output 0 and LSE -inf.
#[test]
fn single_key_padding_and_hidden_rows() {
    let shape = AttnShape::new(1, 3, 4, 1, 1, 2).unwrap();
    let q = vec![1.0, 2.0, 0.5, -1.0, 3.0, 1.5];
    let k = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0];
    let v = vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0];
    let inputs = RefInputs::from_f64(shape, q, k, v).unwrap();
    // Row 0 -> key 3 (hidden under causal: row 0 sees keys <= 1), row 1 -> padding,
    // row 2 -> key 1 (visible).
    let pattern = TopkTokens::new(1, 3, 1, 2, vec![-1, 3, -1, -1, 1, -1]).unwrap();
    let opts = AttnOptions { softmax_scale: Some(0.5), ..AttnOptions::default() };
    let out = topk_attention(&inputs, &opts, &pattern).unwrap();
    assert_eq!(&out.out[0..2], &[70.0, 80.0]);
    assert_eq!(out.lse[0], 0.5 * (1.0 * 2.0 + 2.0 * 1.0));
    assert_eq!(&out.out[2..4], &[0.0, 0.0]);
    assert_eq!(out.lse[1], f64::NEG_INFINITY);
    assert_eq!(&out.out[4..6], &[30.0, 40.0]);
    assert_eq!(out.lse[2], 0.5 * 1.5);

    let causal = AttnOptions { causal: true, ..opts };
    let out = topk_attention(&inputs, &causal, &pattern).unwrap();
    assert_eq!(&out.out[0..2], &[0.0, 0.0]);
    assert_eq!(out.lse[0], f64::NEG_INFINITY);
    assert_eq!(&out.out[4..6], &[30.0, 40.0]);
}

#[test]
fn kept_fraction_counts_visible_listed_keys() {
    let shape = AttnShape::new(1, 4, 4, 2, 1, 8).unwrap();
    // Every row lists keys 0 and 1 plus padding.
    let pattern = TopkTokens::new(1, 4, 1, 3, [0, -1, 1].repeat(4)).unwrap();
    // Non-causal: 2 of 4 keys per row.
    assert_eq!(pattern.kept_fraction(&shape, false).unwrap(), 0.5);
    // Causal: row 0 sees only key 0 of its two (1 kept), rows 1..3 keep 2; dense 1+2+3+4.
    assert_eq!(pattern.kept_fraction(&shape, true).unwrap(), 7.0 / 10.0);

    let mut rng = Rng::new(0x70c6);
    for case in 0..20 {
        let shape = random_shape(&mut rng, 120);
        let causal = case % 2 == 1;
        let k = rng.range(1, 40);
        let pattern = random_indices(&mut rng, &shape, k);
        let density = pattern.element_mask(&shape, causal).unwrap().density(&shape, causal);
        assert_eq!(pattern.kept_fraction(&shape, causal).unwrap(), density);
    }
}

#[test]
fn accessors_report_dims_and_rows() {
    let pattern = TopkTokens::new(2, 3, 2, 2, (0..24).collect()).unwrap();
    assert_eq!(pattern.dims(), [2, 3, 2, 2]);
    assert_eq!((pattern.batch(), pattern.seq_q(), pattern.heads_kv(), pattern.k()), (2, 3, 2, 2));
    assert_eq!(pattern.indices().len(), 24);
    // Row [b=1, i=2, h=1] starts at ((1 * 3 + 2) * 2 + 1) * 2 = 22.
    assert_eq!(pattern.row(1, 2, 1), Some(&[22, 23][..]));
    assert_eq!(pattern.row(0, 0, 0), Some(&[0, 1][..]));
    assert_eq!(pattern.row(2, 0, 0), None);
    assert_eq!(pattern.row(0, 3, 0), None);
    assert_eq!(pattern.row(0, 0, 2), None);
}

#[test]
fn construction_errors() {
    for (dims, dim) in [([0, 1, 1, 1], "batch"), ([1, 0, 1, 1], "seq_q"), ([1, 1, 0, 1], "heads_kv"), ([1, 1, 1, 0], "k")] {
        let err = TopkTokens::new(dims[0], dims[1], dims[2], dims[3], vec![]).unwrap_err();
        assert_eq!(err, Error::ZeroDimension { dim });
    }
    let err = TopkTokens::new(2, 3, 1, 4, vec![-1; 23]).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "indices", expected: 24, len: 23, .. }), "{err:?}");
    let too_big = i32::MAX as usize + 1;
    let err = TopkTokens::new(1, 1, 1, too_big, vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "k", .. }), "{err:?}");
    let max = i32::MAX as usize;
    let err = TopkTokens::new(max, max, max, max, vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "indices", .. }), "{err:?}");
}

#[test]
fn validation_errors_name_the_problem() {
    let shape = AttnShape::new(1, 2, 5, 2, 1, 8).unwrap();
    let make = |indices: Vec<i32>| TopkTokens::new(1, 2, 1, 3, indices).unwrap();
    assert_eq!(make(vec![0, 4, -1, -1, -1, -1]).validate(&shape), Ok(()));

    for bad in [5, -2, i32::MIN, i32::MAX] {
        let err = make(vec![0, 4, -1, 1, bad, -1]).validate(&shape).unwrap_err();
        let want = Error::IndexOutOfRange { tensor: "indices", at: "[0, 1, 0, 1]".into(), value: bad as i64, range: "-1 or 0..5".into() };
        assert_eq!(err, want);
    }

    let err = make(vec![-1, -1, -1, 3, -1, 3]).validate(&shape).unwrap_err();
    assert_eq!(err, Error::DuplicateIndex { tensor: "indices", at: "[0, 1, 0, 2]".into(), value: 3, first_slot: 0 });
    // The same key in different rows is fine, and so is repeated padding.
    assert_eq!(make(vec![3, -1, -1, 3, -1, -1]).validate(&shape), Ok(()));

    for (other, field) in [
        (AttnShape::new(2, 2, 5, 2, 1, 8).unwrap(), "batch"),
        (AttnShape::new(1, 3, 5, 2, 1, 8).unwrap(), "seq_q"),
        (AttnShape::new(1, 2, 5, 2, 2, 8).unwrap(), "heads_kv"),
    ] {
        let err = make(vec![-1; 6]).validate(&other).unwrap_err();
        match err {
            Error::DescriptorMismatch { reason } => assert!(reason.contains(field), "{reason}"),
            other => panic!("expected DescriptorMismatch for {field}, got {other:?}"),
        }
    }

    // Every entry point validates.
    let dup = make(vec![1, 1, -1, -1, -1, -1]);
    let mut rng = Rng::new(1);
    let inputs = random_inputs(&mut rng, shape);
    assert!(matches!(dup.element_mask(&shape, true), Err(Error::DuplicateIndex { .. })));
    assert!(matches!(dup.kept_fraction(&shape, false), Err(Error::DuplicateIndex { .. })));
    assert!(matches!(topk_attention(&inputs, &AttnOptions::default(), &dup), Err(Error::DuplicateIndex { .. })));
    let ok = make(vec![-1; 6]);
    let bad_scale = AttnOptions { softmax_scale: Some(f32::NAN), ..AttnOptions::default() };
    assert!(matches!(topk_attention(&inputs, &bad_scale, &ok), Err(Error::InvalidSoftmaxScale { .. })));

    // A broken shape cannot be built (AttnShape's fields are private); RefInputs has public
    // fields: a hand-broken tensor is an error, not an out-of-bounds slice.
    let broken = AttnShape::new(shape.batch(), shape.seq_q(), shape.seq_k(), 1, 2, shape.head_dim());
    assert_eq!(broken, Err(Error::HeadsNotDivisible { heads_q: 1, heads_kv: 2 }));
    for tensor in ["q", "k", "v"] {
        let mut short = inputs.clone();
        match tensor {
            "q" => short.q.pop(),
            "k" => short.k.pop(),
            _ => short.v.pop(),
        };
        let err = topk_attention(&short, &AttnOptions::default(), &ok).unwrap_err();
        assert!(matches!(err, Error::WrongLength { tensor: t, .. } if t == tensor), "{tensor}: {err:?}");
    }
}

/// Random i32 garbage: validation must agree with an independent statement of the rules,
/// and every entry point must return (Ok or the same Err), never panic.
#[test]
fn adversarial_indices_are_rejected_not_panicked_on() {
    let mut rng = Rng::new(0x70c7);
    let mut rejected = 0;
    for case in 0..300 {
        let shape = random_shape(&mut rng, 40);
        let k = rng.range(1, 12);
        let n = shape.batch() * shape.seq_q() * shape.heads_kv() * k;
        let mode = case % 3;
        let indices: Vec<i32> = (0..n)
            .map(|_| match mode {
                // Full-range garbage: almost always out of range.
                0 => rng.next_u64() as i32,
                // Near the valid range on both sides, with many repeats.
                1 => rng.range(0, shape.seq_k() + 3) as i32 - 2,
                // Mostly valid, occasionally one bad entry.
                _ if rng.chance(0.995) => rng.range(0, shape.seq_k()) as i32 - 1,
                _ => shape.seq_k() as i32,
            })
            .collect();
        let expect_ok = indices.chunks(k).all(|row| {
            row.iter().all(|&j| j == -1 || (0..shape.seq_k() as i32).contains(&j))
                && row.iter().enumerate().all(|(a, &x)| x == -1 || !row[..a].contains(&x))
        });
        let pattern = TopkTokens::new(shape.batch(), shape.seq_q(), shape.heads_kv(), k, indices).unwrap();
        let result = pattern.validate(&shape);
        assert_eq!(result.is_ok(), expect_ok, "case {case}: {result:?}");
        let inputs = random_inputs(&mut rng, shape);
        let opts = AttnOptions { causal: case % 2 == 0, ..AttnOptions::default() };
        match result {
            Ok(()) => {
                let mask = pattern.element_mask(&shape, opts.causal).unwrap();
                let sparse = topk_attention(&inputs, &opts, &pattern).unwrap();
                let masked = masked_attention(&inputs, &opts, &mask).unwrap();
                let (out, lse) = sparse.max_abs_diff(&masked);
                assert!(out <= TOL && lse <= TOL);
            }
            Err(err) => {
                rejected += 1;
                assert!(matches!(err, Error::IndexOutOfRange { .. } | Error::DuplicateIndex { .. }), "{err:?}");
                assert_eq!(pattern.element_mask(&shape, opts.causal).unwrap_err(), err);
                assert_eq!(topk_attention(&inputs, &opts, &pattern).unwrap_err(), err);
                assert_eq!(pattern.kept_fraction(&shape, opts.causal).unwrap_err(), err);
            }
        }
    }
    // The generator must exercise both outcomes, or the test proves nothing.
    assert!(rejected > 50 && rejected < 300, "rejected {rejected} of 300");
}
