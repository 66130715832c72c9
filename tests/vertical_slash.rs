//! The vertical-slash descriptor: validation (every error path), adversarial tensors,
//! the converted element mask against the pure pattern, GQA head mapping, and the sparse
//! reference against dense masked attention.

mod common;

use common::{distinct, Rng};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::pattern::{VerticalSlash, BLOCK_M, BLOCK_N};
use sparse_attn::reference::{masked_attention, vertical_slash_attention};
use sparse_attn::{AttnOptions, AttnShape, Error, SparsePattern};

fn shape(batch: usize, seq_q: usize, seq_k: usize, heads_q: usize, heads_kv: usize) -> AttnShape {
    AttnShape::new(batch, seq_q, seq_k, heads_q, heads_kv, 32).unwrap()
}

fn single(seq_q: usize, seq_k: usize, verticals: Vec<i32>, slashes: Vec<i32>) -> (AttnShape, VerticalSlash) {
    let vs = VerticalSlash::new(1, 1, verticals.len(), slashes.len(), verticals, slashes).unwrap();
    (shape(1, seq_q, seq_k, 1, 1), vs)
}

fn random_vs(rng: &mut Rng, shape: &AttnShape, heads: usize, max_nnz: usize) -> VerticalSlash {
    common::random_vertical_slash(rng, shape, heads, max_nnz, false)
}

// ---- construction and validation errors ---------------------------------------------

#[test]
fn new_rejects_zero_dimensions() {
    assert!(matches!(VerticalSlash::new(0, 1, 0, 0, vec![], vec![]), Err(Error::ZeroDimension { dim: "batch" })));
    assert!(matches!(VerticalSlash::new(1, 0, 0, 0, vec![], vec![]), Err(Error::ZeroDimension { dim: "heads" })));
}

#[test]
fn new_rejects_wrong_lengths() {
    let err = VerticalSlash::new(2, 3, 4, 1, vec![0; 23], vec![0; 6]).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "vertical_indexes", expected: 24, len: 23, .. }), "{err}");
    let err = VerticalSlash::new(2, 3, 4, 1, vec![0; 24], vec![0; 7]).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "slash_indexes", expected: 6, len: 7, .. }), "{err}");
}

#[test]
fn new_rejects_sizes_beyond_i32_and_overflowing_products() {
    let big = i32::MAX as usize + 1;
    let err = VerticalSlash::new(1, 1, big, 0, vec![], vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "nnz_v", value, .. } if value == big), "{err}");
    let err = VerticalSlash::new(1, 1, 0, big, vec![], vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "nnz_s", .. }), "{err}");
    let err = VerticalSlash::new(big, 1, 0, 0, vec![], vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "batch", .. }), "{err}");
    // Each factor fits in i32, but batch * heads * nnz_v would need ~2^93 elements.
    let m = i32::MAX as usize;
    let err = VerticalSlash::new(m, m, m, 0, vec![], vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { dim: "batch * heads * nnz_v", .. }), "{err}");
}

#[test]
fn zero_nnz_is_allowed_and_attends_nothing() {
    let (s, vs) = single(100, 100, vec![], vec![]);
    vs.validate(&s).unwrap();
    assert_eq!(vs.element_mask(&s, true).unwrap().count(), 0);
    assert_eq!(vs.pure_mask(&s).unwrap().count(), 0);
}

#[test]
fn validate_rejects_batch_and_head_mismatch() {
    let vs = VerticalSlash::new(1, 3, 1, 1, vec![0; 3], vec![0; 3]).unwrap();
    let err = vs.validate(&shape(2, 10, 10, 3, 3)).unwrap_err();
    assert!(matches!(err, Error::DescriptorMismatch { .. }), "{err}");
    // H = 3 is neither heads_q = 4 nor heads_kv = 2.
    let err = vs.validate(&shape(1, 10, 10, 4, 2)).unwrap_err();
    assert!(matches!(err, Error::DescriptorMismatch { .. }), "{err}");
    // Both heads_q and heads_kv are accepted.
    VerticalSlash::new(1, 4, 1, 1, vec![0; 4], vec![0; 4]).unwrap().validate(&shape(1, 10, 10, 4, 2)).unwrap();
    VerticalSlash::new(1, 2, 1, 1, vec![0; 2], vec![0; 2]).unwrap().validate(&shape(1, 10, 10, 4, 2)).unwrap();
}

#[test]
fn validate_rejects_an_unvalidated_shape() {
    // The shape validate and convert used to re-check cannot be built (private fields).
    let bad = AttnShape::new(1, 10, 10, 1, 0, 32);
    assert!(matches!(bad, Err(Error::ZeroDimension { dim: "heads_kv" })));
}

#[test]
fn validate_rejects_out_of_range_verticals() {
    for bad in [-1, 10, 11, i32::MAX, i32::MIN] {
        let (s, vs) = single(10, 10, vec![0, bad], vec![0]);
        let err = vs.validate(&s).unwrap_err();
        match err {
            Error::IndexOutOfRange { tensor: "vertical_indexes", ref at, value, .. } => {
                assert_eq!((at.as_str(), value), ("[0, 0, 1]", bad as i64));
            }
            other => panic!("vertical {bad}: wrong error {other}"),
        }
    }
}

#[test]
fn validate_rejects_out_of_range_slashes() {
    // seq_k = 10: distance 10 would need a row whose diagonal key is 10 or more.
    for bad in [-1, 10, i32::MAX, i32::MIN] {
        let (s, vs) = single(4, 10, vec![], vec![bad]);
        let err = vs.validate(&s).unwrap_err();
        assert!(matches!(err, Error::IndexOutOfRange { tensor: "slash_indexes", value, .. } if value == bad as i64), "{bad}: {err}");
    }
    // Distance 9 is the largest valid one: the last row (diagonal key 9) sees key 0 on it.
    let (s, vs) = single(4, 10, vec![], vec![9]);
    vs.validate(&s).unwrap();
    assert!(vs.pure_mask(&s).unwrap().get(0, 0, 3, 0));
}

#[test]
fn validate_rejects_unsorted_and_duplicated_verticals() {
    for verticals in [vec![3, 2], vec![2, 2], vec![0, 5, 5, 6]] {
        let (s, vs) = single(10, 10, verticals.clone(), vec![]);
        let err = vs.validate(&s).unwrap_err();
        assert!(matches!(err, Error::IndexNotAscending { tensor: "vertical_indexes", .. }), "{verticals:?}: {err}");
    }
}

#[test]
fn validate_rejects_ascending_and_duplicated_slashes() {
    for slashes in [vec![0, 5], vec![4, 4], vec![9, 3, 3, 0]] {
        let (s, vs) = single(10, 10, vec![], slashes.clone());
        let err = vs.validate(&s).unwrap_err();
        assert!(matches!(err, Error::IndexNotDescending { tensor: "slash_indexes", .. }), "{slashes:?}: {err}");
    }
    let (s, vs) = single(10, 10, vec![], vec![9, 4, 0]);
    let err = VerticalSlash::new(1, 1, 0, 3, vec![], vec![0, 4, 9]).unwrap().validate(&s).unwrap_err();
    assert!(matches!(err, Error::IndexNotDescending { prev: 0, value: 4, .. }), "{err}");
    vs.validate(&s).unwrap();
}

#[test]
fn errors_name_the_position_in_a_batched_tensor() {
    // Batch 2, 2 heads, 2 verticals: the bad entry is at [1, 1, 0].
    let verticals = vec![0, 1, 0, 1, 0, 1, 7, 8];
    let vs = VerticalSlash::new(2, 2, 2, 0, verticals, vec![]).unwrap();
    let err = vs.validate(&shape(2, 5, 5, 2, 2)).unwrap_err();
    assert!(matches!(err, Error::IndexOutOfRange { ref at, value: 7, .. } if at == "[1, 1, 0]"), "{err}");
}

#[test]
fn non_causal_is_rejected_everywhere() {
    let (s, vs) = single(10, 10, vec![0], vec![0]);
    assert!(matches!(vs.element_mask(&s, false), Err(Error::InvalidParameter { name: "causal", .. })));
    let mut rng = Rng::new(1);
    let inputs = common::random_inputs(&mut rng, s);
    let err = vertical_slash_attention(&inputs, &AttnOptions::default(), &vs).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "causal", .. }), "{err}");
}

#[test]
fn adversarial_tensors_error_and_never_panic() {
    let mut rng = Rng::new(0xbad5eed);
    let specials = [i32::MIN, -1, 0, 1, 63, 64, 65, i32::MAX];
    let mut accepted = 0;
    for _ in 0..2000 {
        let s = common::random_shape(&mut rng, 150);
        let heads = if rng.chance(0.5) { s.heads_q() } else { s.heads_kv() };
        let (nnz_v, nnz_s) = (rng.range(0, 6), rng.range(0, 6));
        let value = |rng: &mut Rng| match rng.below(3) {
            0 => specials[rng.below(specials.len())],
            1 => rng.below(s.seq_k()) as i32,
            _ => rng.next_u64() as i32,
        };
        let verticals: Vec<i32> = (0..s.batch() * heads * nnz_v).map(|_| value(&mut rng)).collect();
        let slashes: Vec<i32> = (0..s.batch() * heads * nnz_s).map(|_| value(&mut rng)).collect();
        let vs = VerticalSlash::new(s.batch(), heads, nnz_v, nnz_s, verticals, slashes).unwrap();
        let valid = vs.validate(&s).is_ok();
        // Every entry point validates first: they agree with validate and never panic.
        assert_eq!(convert(&vs, &s).is_ok(), valid);
        assert_eq!(vs.element_mask(&s, true).is_ok(), valid);
        assert_eq!(vs.pure_mask(&s).is_ok(), valid);
        accepted += usize::from(valid);
    }
    assert!(accepted > 0, "the generator should sometimes produce valid tensors too");
}

// ---- element mask versus the pure pattern ----------------------------------------------

/// The converted mask contains the pure pattern, and every extra element lies within
/// 2 * BLOCK_N - 1 diagonals of a slash that crosses the row's block (the bound argued in
/// src/pattern/vs_convert.rs). Elements outside the causal mask never appear.
fn check_against_pure(vs: &VerticalSlash, s: &AttnShape) {
    let full = vs.element_mask(s, true).unwrap();
    let pure = vs.pure_mask(s).unwrap();
    let offset = s.causal_offset();
    for b in 0..s.batch() {
        for hq in 0..s.heads_q() {
            // The GQA mapping, restated: a heads_kv descriptor serves groups of heads_q / heads_kv.
            let h = if vs.heads() == s.heads_q() { hq } else { hq / (s.heads_q() / s.heads_kv()) };
            for i in 0..s.seq_q() {
                let diagonal = i as i64 + offset;
                let hi = ((i / BLOCK_M + 1) * BLOCK_M) as i64 + offset;
                for j in pure.row_keys(b, hq, i) {
                    assert!(full.get(b, hq, i, j), "pure element ({b},{hq},{i},{j}) missing from the converted mask");
                }
                for j in full.row_keys(b, hq, i) {
                    assert!(j < s.visible_keys(i, true), "non-causal element ({b},{hq},{i},{j})");
                    if pure.get(b, hq, i, j) {
                        continue;
                    }
                    let near = vs.slashes(b, h).unwrap().iter().map(|&d| d as i64).filter(|&d| d < hi).any(|d| {
                        ((diagonal - j as i64) - d).abs() < 2 * BLOCK_N as i64
                    });
                    assert!(near, "extra element ({b},{hq},{i},{j}) is far from every slash of {:?}", vs.slashes(b, h).unwrap());
                }
            }
        }
    }
}

#[test]
fn converted_mask_contains_pure_mask_with_bounded_excess() {
    let mut rng = Rng::new(0x5eed_0010);
    for _ in 0..150 {
        let s = common::random_shape(&mut rng, 350);
        let heads = if rng.chance(0.5) { s.heads_q() } else { s.heads_kv() };
        let vs = random_vs(&mut rng, &s, heads, 10);
        check_against_pure(&vs, &s);
    }
}

#[test]
fn pure_mask_is_exact_on_a_small_case() {
    // seq_q = 3, seq_k = 5 (offset 2): row i's diagonal key is i + 2.
    let (s, vs) = single(3, 5, vec![1], vec![2, 0]);
    let pure = vs.pure_mask(&s).unwrap();
    let rows: Vec<Vec<usize>> = (0..3).map(|i| pure.row_keys(0, 0, i).collect()).collect();
    // Row 0: vertical 1, diagonal 2, distance-2 key 0. Row 1: 1, 3, 1. Row 2: 1, 4, 2.
    assert_eq!(rows, vec![vec![0, 1, 2], vec![1, 3], vec![1, 2, 4]]);
    // One row block covering keys 0..63 as a tile: everything causal is in.
    let full = vs.element_mask(&s, true).unwrap();
    assert_eq!(full, sparse_attn::ElementMask::dense(&s, true));
}

#[test]
fn gqa_descriptor_equals_one_repeated_per_query_head() {
    // A heads_kv descriptor must give every query head of a group the mask that an
    // explicit heads_q descriptor with that head's rows repeated gives.
    let mut rng = Rng::new(0x5eed_0011);
    for _ in 0..30 {
        let s = AttnShape::new(rng.range(1, 2), rng.range(1, 300), rng.range(1, 300), 6, 2, 32).unwrap();
        let kv = random_vs(&mut rng, &s, 2, 8);
        let (mut verticals, mut slashes) = (Vec::new(), Vec::new());
        for b in 0..s.batch() {
            for hq in 0..6 {
                verticals.extend_from_slice(kv.verticals(b, hq / 3).unwrap());
                slashes.extend_from_slice(kv.slashes(b, hq / 3).unwrap());
            }
        }
        let q = VerticalSlash::new(s.batch(), 6, kv.nnz_v(), kv.nnz_s(), verticals, slashes).unwrap();
        assert_eq!(kv.element_mask(&s, true).unwrap(), q.element_mask(&s, true).unwrap());
        assert_eq!(kv.pure_mask(&s).unwrap(), q.pure_mask(&s).unwrap());
    }
}

// ---- sparse reference versus dense masked attention ------------------------------------

fn check_reference(rng: &mut Rng, s: AttnShape, vs: &VerticalSlash) {
    let inputs = common::random_inputs(rng, s);
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let sparse = vertical_slash_attention(&inputs, &opts, vs).unwrap();
    let mask = vs.element_mask(&s, true).unwrap();
    let dense = masked_attention(&inputs, &opts, &mask).unwrap();
    let (out, lse) = sparse.max_abs_diff(&dense);
    assert!(out <= 1e-12 && lse <= 1e-12, "{s:?}: out diff {out}, lse diff {lse}");
    // Rows that see nothing must agree on -inf too (max_abs_diff treats one-sided -inf as infinite).
    assert_eq!(
        sparse.lse.iter().filter(|x| x.is_infinite()).count(),
        dense.lse.iter().filter(|x| x.is_infinite()).count()
    );
}

#[test]
fn reference_equals_masked_attention_on_random_shapes() {
    let mut rng = Rng::new(0x5eed_0012);
    for _ in 0..40 {
        let s = common::random_shape(&mut rng, 300);
        let heads = if rng.chance(0.5) { s.heads_q() } else { s.heads_kv() };
        let vs = random_vs(&mut rng, &s, heads, 12);
        check_reference(&mut rng, s, &vs);
    }
}

#[test]
fn reference_equals_masked_attention_at_4k_tokens() {
    let mut rng = Rng::new(0x5eed_0013);
    let s = AttnShape::new(1, 4096, 4096, 4, 2, 64).unwrap();
    // MInference-like: a few sink/scattered columns, the diagonal, and a spread of slashes.
    let (mut verticals, mut slashes) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        verticals.extend(distinct(&mut rng, 48, 4096));
        // Distances 1..4095 farthest first, then the diagonal itself.
        slashes.extend(distinct(&mut rng, 23, 4095).into_iter().rev().map(|d| d + 1));
        slashes.push(0);
    }
    let vs = VerticalSlash::new(1, 2, 48, 24, verticals, slashes).unwrap();
    let density = vs.element_mask(&s, true).unwrap().density(&s, true);
    assert!(density < 0.9, "the 4K case should be sparse, density {density}");
    check_reference(&mut rng, s, &vs);
}
