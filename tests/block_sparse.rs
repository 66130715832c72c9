//! The block-sparse descriptor: construction, validation (one test per error path),
//! adversarial index tensors, its element mask against a hand expansion of the block mask,
//! tile counts, and the block-sparse reference against dense masked attention.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::pattern::BlockSparse;
use sparse_attn::reference::{block_sparse_attention, masked_attention};
use sparse_attn::{AttnOptions, AttnShape, ElementMask, Error, SparsePattern};

/// Both results come from the same f64 row loop over the same keys, so anything above
/// rounding noise means the two paths disagree on a key.
const TOL: f64 = 1e-12;

/// A random `[B, H, MB, NB]` block mask: each row is empty, full, or Bernoulli(density).
fn random_block_mask(rng: &mut Rng, rows: usize, key_blocks: usize, density: f64) -> Vec<bool> {
    let mut mask = Vec::with_capacity(rows * key_blocks);
    for _ in 0..rows {
        let kind = rng.below(6);
        for _ in 0..key_blocks {
            mask.push(match kind {
                0 => false,
                1 => true,
                _ => rng.chance(density),
            });
        }
    }
    mask
}

/// The element mask a block mask means, written out per element, independently of the
/// descriptor code.
fn expand_by_hand(
    shape: &AttnShape,
    heads: usize,
    key_blocks: usize,
    block_mask: &[bool],
    causal: bool,
) -> ElementMask {
    let row_blocks = shape.seq_q().div_ceil(64);
    let group = shape.heads_q() / heads;
    ElementMask::from_fn(shape, |b, h, i, j| {
        let mh = h / group;
        let allowed = block_mask[((b * heads + mh) * row_blocks + i / 64) * key_blocks + j / 64];
        let causal_ok = !causal || (j as i64) <= i as i64 + shape.seq_k() as i64 - shape.seq_q() as i64;
        allowed && causal_ok
    })
}

/// A random problem with a random block mask over it, H chosen as heads_q or heads_kv.
fn random_case(rng: &mut Rng, max_seq: usize) -> (AttnShape, usize, usize, Vec<bool>) {
    let shape = random_shape(rng, max_seq);
    let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
    let row_blocks = shape.seq_q().div_ceil(64);
    let key_blocks = shape.seq_k().div_ceil(64);
    let density = [0.0, 0.1, 0.3, 0.6, 0.9, 1.0][rng.below(6)];
    let mask = random_block_mask(rng, shape.batch() * heads * row_blocks, key_blocks, density);
    (shape, heads, key_blocks, mask)
}

fn opts(causal: bool, scale: Option<f32>) -> AttnOptions {
    AttnOptions { causal, softmax_scale: scale, return_lse: true, ..AttnOptions::default() }
}

#[test]
fn element_mask_equals_block_mask_expanded_by_hand() {
    let mut rng = Rng::new(0xB10C_0001);
    for _ in 0..60 {
        let (shape, heads, key_blocks, mask) = random_case(&mut rng, 300);
        let row_blocks = shape.seq_q().div_ceil(64);
        let pattern =
            BlockSparse::from_block_mask(shape.batch(), heads, row_blocks, key_blocks, &mask).unwrap();
        for causal in [false, true] {
            let got = pattern.element_mask(&shape, causal).unwrap();
            assert_eq!(
                got,
                expand_by_hand(&shape, heads, key_blocks, &mask, causal),
                "{shape:?} H={heads} causal={causal}"
            );
        }
    }
}

#[test]
fn from_block_mask_lists_true_blocks_ascending_with_minus_one_padding() {
    // [B=1, H=2, MB=2, NB=4]
    let t = true;
    let f = false;
    let mask = [f, t, f, t, /**/ t, t, t, f, /**/ f, f, f, f, /**/ f, f, t, f];
    let p = BlockSparse::from_block_mask(1, 2, 2, 4, &mask).unwrap();
    assert_eq!(p.dims(), [1, 2, 2, 3]);
    assert_eq!(p.block_count(), &[2, 3, 0, 1]);
    assert_eq!(p.block_index(), &[1, 3, -1, 0, 1, 2, -1, -1, -1, 2, -1, -1]);
    assert_eq!(p.blocks(0, 0, 0).unwrap(), &[1, 3]);
    assert_eq!(p.blocks(0, 1, 0).unwrap(), &[] as &[i32]);
    assert_eq!(p.count(0, 0, 1).unwrap(), 3);

    // An all-empty mask still gets one padded slot per row, never an empty index tensor.
    let empty = BlockSparse::from_block_mask(2, 1, 3, 5, &[false; 30]).unwrap();
    assert_eq!(empty.max_blocks(), 1);
    assert_eq!(empty.block_count(), &[0; 6]);
    assert_eq!(empty.block_index(), &[-1; 6]);
}

#[test]
fn reference_equals_masked_attention_on_random_shapes() {
    let mut rng = Rng::new(0xB10C_0002);
    for case in 0..24 {
        let (shape, heads, key_blocks, mask) = random_case(&mut rng, 300);
        let row_blocks = shape.seq_q().div_ceil(64);
        let pattern =
            BlockSparse::from_block_mask(shape.batch(), heads, row_blocks, key_blocks, &mask).unwrap();
        let inputs = random_inputs(&mut rng, shape);
        let causal = case % 2 == 0;
        let scale = if rng.chance(0.5) { None } else { Some(0.05 + rng.unit() as f32) };
        let o = opts(causal, scale);
        let element = pattern.element_mask(&shape, causal).unwrap();
        let want = masked_attention(&inputs, &o, &element).unwrap();
        let got = block_sparse_attention(&inputs, &o, &pattern).unwrap();
        let (d_out, d_lse) = got.max_abs_diff(&want);
        assert!(
            d_out <= TOL && d_lse <= TOL,
            "case {case} {shape:?} H={heads}: out {d_out:e}, lse {d_lse:e}"
        );
        // Rows with no key follow the convention, so -inf == -inf above compared something real.
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                for i in 0..shape.seq_q() {
                    let lse = got.lse[(b * shape.heads_q() + h) * shape.seq_q() + i];
                    assert_eq!(lse == f64::NEG_INFINITY, element.row_keys(b, h, i).next().is_none());
                }
            }
        }
    }
}

#[test]
fn reference_on_a_4096_token_problem() {
    let mut rng = Rng::new(0xB10C_0003);
    let shape = AttnShape::new(1, 4096, 4096, 2, 1, 64).unwrap();
    let row_blocks = 64;
    let key_blocks = 64;
    // Causal block mask of ~20% of the visible blocks, sink and diagonal always kept.
    let mut mask = vec![false; row_blocks * key_blocks];
    for m in 0..row_blocks {
        for n in 0..=m {
            mask[m * key_blocks + n] = n == 0 || n == m || rng.chance(0.2);
        }
    }
    let pattern = BlockSparse::from_block_mask(1, 1, row_blocks, key_blocks, &mask).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let o = opts(true, None);
    let start = std::time::Instant::now();
    let got = block_sparse_attention(&inputs, &o, &pattern).unwrap();
    eprintln!("block-sparse reference, 4096 tokens x 2 heads (CPU, f64): {:?}", start.elapsed());
    let want = masked_attention(&inputs, &o, &pattern.element_mask(&shape, true).unwrap()).unwrap();
    let (d_out, d_lse) = got.max_abs_diff(&want);
    assert!(d_out <= TOL && d_lse <= TOL, "out {d_out:e}, lse {d_lse:e}");
}

#[test]
fn kept_tiles_counts_tiles_with_a_visible_element() {
    let mut rng = Rng::new(0xB10C_0004);
    for _ in 0..40 {
        let (shape, heads, key_blocks, mask) = random_case(&mut rng, 300);
        let row_blocks = shape.seq_q().div_ceil(64);
        let pattern =
            BlockSparse::from_block_mask(shape.batch(), heads, row_blocks, key_blocks, &mask).unwrap();
        for causal in [false, true] {
            // Count tiles from element masks: a tile counts if any of its elements is set.
            let tiles_of = |m: &ElementMask| {
                let mut n = 0;
                for b in 0..shape.batch() {
                    for h in 0..shape.heads_q() {
                        for rb in 0..row_blocks {
                            for kb in 0..key_blocks {
                                let rows = rb * 64..((rb + 1) * 64).min(shape.seq_q());
                                let live = rows.into_iter().any(|i| {
                                    (kb * 64..((kb + 1) * 64).min(shape.seq_k())).any(|j| m.get(b, h, i, j))
                                });
                                n += live as usize;
                            }
                        }
                    }
                }
                n
            };
            let kept = tiles_of(&expand_by_hand(&shape, heads, key_blocks, &mask, causal));
            let dense = tiles_of(&ElementMask::dense(&shape, causal));
            assert_eq!(
                pattern.kept_tiles(&shape, causal).unwrap(),
                (kept, dense),
                "{shape:?} causal={causal}"
            );
        }
    }
}

#[test]
fn kept_tiles_hand_example() {
    // 128 x 128 causal, one head: the upper-right tile is dead, so dense work is 3 tiles.
    let shape = AttnShape::new(1, 128, 128, 1, 1, 64).unwrap();
    let full = BlockSparse::from_block_mask(1, 1, 2, 2, &[true; 4]).unwrap();
    assert_eq!(full.kept_tiles(&shape, true).unwrap(), (3, 3));
    assert_eq!(full.kept_tiles(&shape, false).unwrap(), (4, 4));
    let diag = BlockSparse::from_block_mask(1, 1, 2, 2, &[true, false, false, true]).unwrap();
    assert_eq!(diag.kept_tiles(&shape, true).unwrap(), (2, 3));
}

#[test]
fn padding_past_the_count_is_ignored() {
    let shape = AttnShape::new(1, 100, 200, 2, 2, 64).unwrap();
    // Two row blocks, four key blocks; garbage past each count.
    let p =
        BlockSparse::new(1, 2, 2, 3, vec![1, 2, 0, 3], vec![2, i32::MIN, 7, 0, 3, -5, 99, 99, 99, 0, 1, 2])
            .unwrap();
    p.validate(&shape).unwrap();
    assert_eq!(p.blocks(0, 0, 0).unwrap(), &[2]);
    assert_eq!(p.blocks(0, 0, 1).unwrap(), &[0, 3]);
}

// ---- construction errors -------------------------------------------------------------

#[test]
fn new_rejects_zero_batch_heads_or_row_blocks() {
    assert_eq!(BlockSparse::new(0, 1, 1, 1, vec![], vec![]), Err(Error::ZeroDimension { dim: "batch" }));
    assert_eq!(BlockSparse::new(1, 0, 1, 1, vec![], vec![]), Err(Error::ZeroDimension { dim: "heads" }));
    assert_eq!(BlockSparse::new(1, 1, 0, 1, vec![], vec![]), Err(Error::ZeroDimension { dim: "row_blocks" }));
}

#[test]
fn new_rejects_wrong_block_count_length() {
    let err = BlockSparse::new(2, 3, 4, 5, vec![0; 23], vec![0; 120]).unwrap_err();
    assert_eq!(
        err,
        Error::WrongLength { tensor: "block_count", expected: 24, dims: "2 x 3 x 4".into(), len: 23 }
    );
}

#[test]
fn new_rejects_wrong_block_index_length() {
    let err = BlockSparse::new(2, 3, 4, 5, vec![0; 24], vec![0; 121]).unwrap_err();
    assert_eq!(
        err,
        Error::WrongLength { tensor: "block_index", expected: 120, dims: "2 x 3 x 4 x 5".into(), len: 121 }
    );
}

#[test]
fn new_allows_max_blocks_zero_only_with_zero_counts() {
    let p = BlockSparse::new(1, 2, 2, 0, vec![0; 4], vec![]).unwrap();
    let shape = AttnShape::new(1, 128, 64, 2, 1, 64).unwrap();
    assert_eq!(p.element_mask(&shape, false).unwrap().count(), 0);
    let err = BlockSparse::new(1, 2, 2, 0, vec![0, 0, 1, 0], vec![]).unwrap_err();
    assert_eq!(
        err,
        Error::CountOutOfRange { tensor: "block_count", at: "[0, 1, 0]".into(), value: 1, max: 0 }
    );
}

#[test]
fn new_rejects_dimensions_whose_product_overflows() {
    let err = BlockSparse::new(usize::MAX / 2, 4, 1, 1, vec![], vec![]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { value: 4, .. }), "{err:?}");
}

#[test]
fn from_block_mask_rejects_zero_dims() {
    for (i, dim) in ["batch", "heads", "row_blocks", "key_blocks"].into_iter().enumerate() {
        let mut d = [1, 1, 1, 1];
        d[i] = 0;
        assert_eq!(
            BlockSparse::from_block_mask(d[0], d[1], d[2], d[3], &[]),
            Err(Error::ZeroDimension { dim })
        );
    }
}

#[test]
fn from_block_mask_rejects_wrong_mask_length() {
    let err = BlockSparse::from_block_mask(1, 2, 3, 4, &[true; 25]).unwrap_err();
    assert_eq!(
        err,
        Error::WrongLength { tensor: "block_mask", expected: 24, dims: "1 x 2 x 3 x 4".into(), len: 25 }
    );
}

#[test]
fn from_block_mask_rejects_key_blocks_beyond_i32() {
    let key_blocks = i32::MAX as usize + 1;
    let err = BlockSparse::from_block_mask(1, 1, 1, key_blocks, &[]).unwrap_err();
    assert_eq!(
        err,
        Error::DimensionTooLarge { dim: "key_blocks", value: key_blocks, max: i32::MAX as usize }
    );
}

#[test]
fn from_block_mask_rejects_overflowing_product() {
    let err = BlockSparse::from_block_mask(usize::MAX / 4, 1, 8, 1, &[]).unwrap_err();
    assert!(matches!(err, Error::DimensionTooLarge { value: 8, .. }), "{err:?}");
}

#[test]
fn accessors_reject_positions_outside_the_descriptor() {
    let p = BlockSparse::from_block_mask(1, 2, 3, 2, &[true; 12]).unwrap();
    let err = p.count(0, 2, 0).unwrap_err();
    assert_eq!(
        err,
        Error::IndexOutOfRange {
            tensor: "block_count",
            at: "[0, 2, 0]".into(),
            value: 2,
            range: "0..2 (heads)".into()
        }
    );
    assert!(matches!(p.blocks(1, 0, 0), Err(Error::IndexOutOfRange { value: 1, .. })));
    assert!(matches!(p.blocks(0, 0, 3), Err(Error::IndexOutOfRange { value: 3, .. })));
}

#[test]
fn accessors_reject_a_stored_count_out_of_range() {
    let p = BlockSparse::new(1, 1, 2, 2, vec![3, -1], vec![0; 4]).unwrap();
    assert_eq!(
        p.count(0, 0, 0),
        Err(Error::CountOutOfRange { tensor: "block_count", at: "[0, 0, 0]".into(), value: 3, max: 2 })
    );
    assert!(matches!(p.blocks(0, 0, 1), Err(Error::CountOutOfRange { value: -1, .. })));
}

// ---- validation errors ---------------------------------------------------------------

/// 1 batch, 4 query heads over 2 kv heads, 130 queries (3 row blocks), 200 keys (4 key blocks).
fn shape_130x200() -> AttnShape {
    AttnShape::new(1, 130, 200, 4, 2, 64).unwrap()
}

/// A valid 1 x H x 3 x 2 descriptor for `shape_130x200`, then `edit` applied to its tensors.
fn edited(heads: usize, edit: impl FnOnce(&mut Vec<i32>, &mut Vec<i32>)) -> BlockSparse {
    let mut count = vec![2; heads * 3];
    let mut index: Vec<i32> = (0..heads * 3).flat_map(|_| [1, 3]).collect();
    edit(&mut count, &mut index);
    BlockSparse::new(1, heads, 3, 2, count, index).unwrap()
}

#[test]
fn validate_accepts_heads_q_and_heads_kv() {
    edited(4, |_, _| {}).validate(&shape_130x200()).unwrap();
    edited(2, |_, _| {}).validate(&shape_130x200()).unwrap();
}

#[test]
fn validate_rejects_batch_mismatch() {
    let p = BlockSparse::new(2, 2, 3, 1, vec![0; 12], vec![0; 12]).unwrap();
    let err = p.validate(&shape_130x200()).unwrap_err();
    let Error::DescriptorMismatch { reason } = err else { panic!("{err:?}") };
    assert!(reason.contains("batch 2") && reason.contains("batch 1"), "{reason}");
}

#[test]
fn validate_rejects_head_count_naming_both_allowed_values() {
    let err = edited(3, |_, _| {}).validate(&shape_130x200()).unwrap_err();
    let Error::DescriptorMismatch { reason } = err else { panic!("{err:?}") };
    assert!(
        reason.contains("3 heads") && reason.contains("heads_q (4)") && reason.contains("heads_kv (2)"),
        "{reason}"
    );
}

#[test]
fn validate_rejects_row_block_mismatch() {
    let p = BlockSparse::new(1, 2, 2, 1, vec![0; 4], vec![0; 4]).unwrap();
    let err = p.validate(&shape_130x200()).unwrap_err();
    let Error::DescriptorMismatch { reason } = err else { panic!("{err:?}") };
    assert!(reason.contains("2 row blocks") && reason.contains("= 3"), "{reason}");
}

#[test]
fn validate_rejects_negative_count() {
    let err = edited(2, |c, _| c[4] = -1).validate(&shape_130x200()).unwrap_err();
    assert_eq!(
        err,
        Error::CountOutOfRange { tensor: "block_count", at: "[0, 1, 1]".into(), value: -1, max: 2 }
    );
}

#[test]
fn validate_rejects_count_above_max_blocks() {
    let err = edited(2, |c, _| c[2] = 3).validate(&shape_130x200()).unwrap_err();
    assert_eq!(
        err,
        Error::CountOutOfRange { tensor: "block_count", at: "[0, 0, 2]".into(), value: 3, max: 2 }
    );
}

#[test]
fn validate_rejects_negative_index() {
    let err = edited(2, |_, i| i[6] = -1).validate(&shape_130x200()).unwrap_err();
    assert_eq!(
        err,
        Error::IndexOutOfRange {
            tensor: "block_index",
            at: "[0, 1, 0, 0]".into(),
            value: -1,
            range: "0..4 (key blocks of seq_k = 200)".into()
        }
    );
}

#[test]
fn validate_rejects_index_past_the_last_key_block() {
    let err = edited(2, |_, i| i[3] = 4).validate(&shape_130x200()).unwrap_err();
    assert!(
        matches!(&err, Error::IndexOutOfRange { tensor: "block_index", at, value: 4, .. } if at == "[0, 0, 1, 1]"),
        "{err:?}"
    );
}

#[test]
fn validate_rejects_descending_indices() {
    let err = edited(2, |_, i| i[8..10].copy_from_slice(&[3, 1])).validate(&shape_130x200()).unwrap_err();
    assert_eq!(
        err,
        Error::IndexNotAscending { tensor: "block_index", at: "[0, 1, 1, 1]".into(), prev: 3, value: 1 }
    );
}

#[test]
fn validate_rejects_duplicate_indices() {
    let err = edited(2, |_, i| i[0..2].copy_from_slice(&[2, 2])).validate(&shape_130x200()).unwrap_err();
    assert_eq!(
        err,
        Error::IndexNotAscending { tensor: "block_index", at: "[0, 0, 0, 1]".into(), prev: 2, value: 2 }
    );
}

#[test]
fn validate_rejects_an_unvalidated_shape() {
    // AttnShape's fields are private: the shape validate used to re-check cannot be built.
    let s = shape_130x200();
    let bad = AttnShape::new(s.batch(), s.seq_q(), s.seq_k(), s.heads_q(), 0, s.head_dim());
    assert_eq!(bad, Err(Error::ZeroDimension { dim: "heads_kv" }));
}

#[test]
fn reference_rejects_bad_scale_bad_lengths_and_mismatched_pattern() {
    let mut rng = Rng::new(7);
    let shape = shape_130x200();
    let inputs = random_inputs(&mut rng, shape);
    let p = edited(2, |_, _| {});
    let bad_scale = AttnOptions { softmax_scale: Some(-1.0), ..AttnOptions::default() };
    assert!(matches!(
        block_sparse_attention(&inputs, &bad_scale, &p),
        Err(Error::InvalidSoftmaxScale { value: -1.0, .. })
    ));

    let mut short = inputs.clone();
    short.v.pop();
    let err = block_sparse_attention(&short, &AttnOptions::default(), &p).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "v", .. }), "{err:?}");

    let other = random_inputs(&mut rng, AttnShape::new(shape.batch(), 300, shape.seq_k(), shape.heads_q(), shape.heads_kv(), shape.head_dim()).unwrap());
    assert!(matches!(
        block_sparse_attention(&other, &AttnOptions::default(), &p),
        Err(Error::DescriptorMismatch { .. })
    ));
}

// ---- adversarial index tensors ---------------------------------------------------------

/// A value drawn to hit every edge: in range, just outside, negative, extreme.
fn garbage(rng: &mut Rng, key_blocks: usize) -> i32 {
    match rng.below(8) {
        0 => -1,
        1 => i32::MIN,
        2 => i32::MAX,
        3 => key_blocks as i32,
        4 => -(rng.below(1000) as i32),
        5 => rng.next_u64() as i32,
        _ => rng.below(key_blocks) as i32,
    }
}

/// Independent validity rule from the format description.
fn valid_by_definition(count: &[i32], index: &[i32], max_blocks: usize, key_blocks: usize) -> bool {
    count.iter().enumerate().all(|(r, &c)| {
        if c < 0 || c as usize > max_blocks {
            return false;
        }
        let row = &index[r * max_blocks..r * max_blocks + c as usize];
        row.iter().all(|&n| n >= 0 && (n as usize) < key_blocks) && row.windows(2).all(|w| w[0] < w[1])
    })
}

#[test]
fn adversarial_indices_never_panic_and_are_rejected() {
    let mut rng = Rng::new(0xBAD_1D5);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..400 {
        let shape = random_shape(&mut rng, 200);
        let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
        let row_blocks = shape.seq_q().div_ceil(64);
        let key_blocks = shape.seq_k().div_ceil(64);
        let max_blocks = rng.range(1, 5);
        let rows = shape.batch() * heads * row_blocks;
        let clean = rng.chance(0.5);
        let mut count = Vec::new();
        let mut index = Vec::new();
        for _ in 0..rows {
            if clean && rng.chance(0.9) {
                // A valid row, so that some descriptors pass and the rest fail on one entry.
                let mut ids: Vec<i32> = (0..key_blocks as i32).filter(|_| rng.chance(0.5)).collect();
                ids.truncate(max_blocks);
                count.push(ids.len() as i32);
                ids.resize(max_blocks, garbage(&mut rng, key_blocks));
                index.extend(ids);
            } else {
                count.push(match rng.below(4) {
                    0 => -(rng.range(1, 3) as i32),
                    1 => (max_blocks + rng.range(1, 3)) as i32,
                    _ => rng.range(0, max_blocks) as i32,
                });
                index.extend((0..max_blocks).map(|_| garbage(&mut rng, key_blocks)));
            }
        }
        let expect_ok = valid_by_definition(&count, &index, max_blocks, key_blocks);
        let p = BlockSparse::new(shape.batch(), heads, row_blocks, max_blocks, count, index).unwrap();
        let causal = rng.chance(0.5);
        let inputs = random_inputs(&mut rng, shape);
        let o = opts(causal, None);
        assert_eq!(p.validate(&shape).is_ok(), expect_ok);
        assert_eq!(p.element_mask(&shape, causal).is_ok(), expect_ok);
        assert_eq!(p.kept_tiles(&shape, causal).is_ok(), expect_ok);
        assert_eq!(block_sparse_attention(&inputs, &o, &p).is_ok(), expect_ok);
        // The accessors must not panic on any position of the descriptor either.
        for b in 0..shape.batch() {
            for h in 0..heads {
                for m in 0..row_blocks {
                    let _ = p.blocks(b, h, m);
                }
            }
        }
        if expect_ok {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    // Both outcomes must actually be exercised for the test to mean anything.
    assert!(accepted > 20 && rejected > 20, "accepted {accepted}, rejected {rejected}");
}
