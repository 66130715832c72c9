//! The dense reference against facts that hold independently of its implementation.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::reference::{dense_attention, masked_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, ElementMask, Error};

/// Naive single-threaded attention, written directly from the formula.
fn naive(inputs: &RefInputs, scale: f64, causal: bool) -> (Vec<f64>, Vec<f64>) {
    let s = inputs.shape;
    let (d, g) = (s.head_dim(), s.group_size());
    let mut out = vec![0.0; s.q_len()];
    let mut lse = vec![f64::NEG_INFINITY; s.lse_len()];
    for b in 0..s.batch() {
        for h in 0..s.heads_q() {
            for i in 0..s.seq_q() {
                let qo = ((b * s.seq_q() + i) * s.heads_q() + h) * d;
                let n = s.visible_keys(i, causal);
                if n == 0 {
                    continue;
                }
                let kv = |j: usize| ((b * s.seq_k() + j) * s.heads_kv() + h / g) * d;
                let scores: Vec<f64> =
                    (0..n).map(|j| scale * (0..d).map(|x| inputs.q[qo + x] * inputs.k[kv(j) + x]).sum::<f64>()).collect();
                let z: f64 = scores.iter().map(|x| x.exp()).sum();
                lse[(b * s.heads_q() + h) * s.seq_q() + i] = z.ln();
                for x in 0..d {
                    out[qo + x] = (0..n).map(|j| scores[j].exp() / z * inputs.v[kv(j) + x]).sum();
                }
            }
        }
    }
    (out, lse)
}

#[test]
fn dense_matches_naive_formula() {
    let mut rng = Rng::new(7);
    for _ in 0..12 {
        let shape = random_shape(&mut rng, 150);
        let inputs = random_inputs(&mut rng, shape);
        for causal in [false, true] {
            let opts = AttnOptions { causal, ..Default::default() };
            let got = dense_attention(&inputs, &opts).unwrap();
            // The kernels take the scale as f32, so the reference does too.
            let scale = (1.0 / (shape.head_dim() as f32).sqrt()) as f64;
            let (out, lse) = naive(&inputs, scale, causal);
            for (a, b) in got.out.iter().zip(&out) {
                assert!((a - b).abs() < 1e-12, "{shape:?} causal={causal}: {a} vs {b}");
            }
            for (a, b) in got.lse.iter().zip(&lse) {
                assert!(a == b || (a - b).abs() < 1e-12, "{shape:?} causal={causal}: lse {a} vs {b}");
            }
        }
    }
}

#[test]
fn rows_that_see_no_key_give_zero_and_minus_infinity() {
    let mut rng = Rng::new(3);
    let shape = AttnShape::new(1, 9, 4, 2, 1, 32).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let got = dense_attention(&inputs, &AttnOptions::causal()).unwrap();
    // Bottom-right: rows 0..5 see no key (i + 4 - 9 < 0).
    for h in 0..2 {
        for i in 0..9 {
            let lse = got.lse[h * 9 + i];
            let row = &got.out[(i * 2 + h) * 32..][..32];
            if i < 5 {
                assert_eq!(lse, f64::NEG_INFINITY);
                assert!(row.iter().all(|&x| x == 0.0));
            } else {
                assert!(lse.is_finite());
            }
        }
    }
    assert!(got.out.iter().all(|x| x.is_finite()));
}

#[test]
fn masked_reference_with_dense_mask_equals_dense() {
    let mut rng = Rng::new(11);
    for _ in 0..6 {
        let shape = random_shape(&mut rng, 200);
        let inputs = random_inputs(&mut rng, shape);
        for causal in [false, true] {
            let opts = AttnOptions { causal, ..Default::default() };
            let dense = dense_attention(&inputs, &opts).unwrap();
            let masked = masked_attention(&inputs, &opts, &ElementMask::dense(&shape, causal)).unwrap();
            assert_eq!(dense.max_abs_diff(&masked), (0.0, 0.0));
        }
    }
}

#[test]
fn a_single_key_returns_its_value_row() {
    let mut rng = Rng::new(5);
    let shape = AttnShape::new(1, 4, 6, 1, 1, 16).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let mask = ElementMask::from_fn(&shape, |_, _, i, j| j == i + 1);
    let got = masked_attention(&inputs, &AttnOptions::default(), &mask).unwrap();
    for i in 0..4 {
        assert_eq!(&got.out[i * 16..][..16], &inputs.v[(i + 1) * 16..][..16]);
        let score: f64 = (0..16).map(|x| inputs.q[i * 16 + x] * inputs.k[(i + 1) * 16 + x]).sum::<f64>() * 0.25;
        assert!((got.lse[i] - score).abs() < 1e-12);
    }
}

#[test]
fn mask_of_the_wrong_shape_is_rejected() {
    let mut rng = Rng::new(1);
    let shape = AttnShape::new(1, 8, 8, 2, 2, 16).unwrap();
    let other = AttnShape::new(1, 8, 9, 2, 2, 16).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let err = masked_attention(&inputs, &AttnOptions::default(), &ElementMask::dense(&other, false)).unwrap_err();
    assert!(matches!(err, Error::DescriptorMismatch { .. }), "{err}");
}

#[test]
fn wrong_tensor_length_is_named() {
    let shape = AttnShape::new(1, 8, 8, 2, 1, 16).unwrap();
    let err = RefInputs::from_f64(shape, vec![0.0; shape.q_len()], vec![0.0; 5], vec![0.0; shape.kv_len()]).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "k", expected, len: 5, .. } if expected == shape.kv_len()));
}

#[test]
fn causal_mask_helper_matches_visibility() {
    let mut rng = Rng::new(9);
    for _ in 0..20 {
        let shape = random_shape(&mut rng, 300);
        let mut mask = ElementMask::dense(&shape, false);
        mask.apply_causal(&shape);
        assert_eq!(mask, ElementMask::dense(&shape, true));
        assert!((mask.density(&shape, true) - 1.0).abs() < 1e-15 || mask.count() == 0);
    }
}

#[test]
fn reference_is_fast_at_4k_tokens() {
    // 4K causal tokens, 2 heads, head_dim 64: ~2.2 GFLOP in f64. A regression that made the
    // reference single-threaded or quadratic in the wrong place would blow well past this.
    let mut rng = Rng::new(2);
    let shape = AttnShape::new(1, 4096, 4096, 2, 1, 64).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let start = std::time::Instant::now();
    let got = dense_attention(&inputs, &AttnOptions::causal()).unwrap();
    let took = start.elapsed();
    assert!(got.out.iter().all(|x| x.is_finite()));
    assert!(took.as_secs_f64() < 30.0, "4K-token dense reference took {took:?}");
}
