//! A-shape (sink + local window): its block lists, its element mask against the definition
//! written out per element, and its reference against dense masked attention.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::pattern::AShape;
use sparse_attn::reference::{a_shape_attention, masked_attention};
use sparse_attn::{AttnOptions, AttnShape, ElementMask, Error, SparsePattern};

/// Same f64 loop over the same keys on both sides: only rounding may differ.
const TOL: f64 = 1e-12;

/// The A-shape element mask straight from its definition, one element at a time: the
/// anchor `d` is the key block of the last key the row block's last row sees (bottom-right
/// causal), the row keeps blocks `< sink` and the `local` blocks ending at `d`, never past
/// `d`, and `causal` additionally cuts each row at its own diagonal.
fn a_shape_by_definition(shape: &AttnShape, sink: usize, local: usize, causal: bool) -> ElementMask {
    let offset = shape.seq_k() as i64 - shape.seq_q() as i64;
    ElementMask::from_fn(shape, |_, _, i, j| {
        let m = i / 64;
        let last_row = ((m + 1) * 64).min(shape.seq_q()) as i64 - 1;
        let last_key = (last_row + offset).min(shape.seq_k() as i64 - 1);
        if last_key < 0 {
            return false;
        }
        let d = last_key as usize / 64;
        let n = j / 64;
        let kept = n <= d && (n < sink || n + local > d);
        kept && (!causal || j as i64 <= i as i64 + offset)
    })
}

#[test]
fn new_rejects_an_empty_local_window() {
    let err = AShape::new(1, 0).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "local_blocks", .. }), "{err:?}");
    assert_eq!(AShape::new(0, 1).map(|a| (a.sink_blocks(), a.local_blocks())), Ok((0, 1)));
}

#[test]
fn element_mask_equals_the_definition() {
    let mut rng = Rng::new(0xA5_0001);
    for _ in 0..80 {
        let shape = random_shape(&mut rng, 400);
        let a = AShape::new(rng.range(0, 3), rng.range(1, 4)).unwrap();
        for causal in [false, true] {
            let got = a.element_mask(&shape, causal).unwrap();
            let want = a_shape_by_definition(&shape, a.sink_blocks(), a.local_blocks(), causal);
            assert_eq!(got, want, "{shape:?} {a:?} causal={causal}");
        }
    }
}

#[test]
fn block_lists_hand_examples() {
    let lists = |seq_q, seq_k, sink, local| {
        let shape = AttnShape::new(1, seq_q, seq_k, 1, 1, 64).unwrap();
        let p = AShape::new(sink, local).unwrap().to_block_sparse(&shape).unwrap();
        (0..p.row_blocks()).map(|m| p.blocks(0, 0, m).unwrap().to_vec()).collect::<Vec<_>>()
    };
    // Square, 5 blocks: each row block's diagonal is itself.
    assert_eq!(lists(300, 300, 1, 2), vec![vec![0], vec![0, 1], vec![0, 1, 2], vec![0, 2, 3], vec![0, 3, 4]]);
    // Sink and window overlap without repeats.
    assert_eq!(
        lists(300, 300, 2, 3),
        vec![vec![0], vec![0, 1], vec![0, 1, 2], vec![0, 1, 2, 3], vec![0, 1, 2, 3, 4]]
    );
    // Fewer queries than keys (decode-like prefill): both row blocks end at key 299, block 4.
    assert_eq!(lists(100, 300, 1, 1), vec![vec![0, 4], vec![0, 4]]);
    // More queries than keys: rows 0..199 see nothing, so row blocks 0..2 are empty;
    // row 255 sees key 55 (block 0); row 299 sees key 99 (block 1).
    assert_eq!(lists(300, 100, 1, 1), vec![vec![], vec![], vec![], vec![0], vec![0, 1]]);
    // A sink larger than the context stops at the diagonal.
    assert_eq!(lists(128, 128, 9, 1), vec![vec![0], vec![0, 1]]);
}

#[test]
fn one_mask_per_kv_head_all_the_same() {
    let shape = AttnShape::new(2, 300, 260, 8, 2, 64).unwrap();
    let a = AShape::new(1, 2).unwrap();
    let p = a.to_block_sparse(&shape).unwrap();
    assert_eq!((p.batch(), p.heads(), p.row_blocks()), (2, 2, 5));
    for b in 0..2 {
        for h in 0..2 {
            for m in 0..5 {
                assert_eq!(p.blocks(b, h, m).unwrap(), p.blocks(0, 0, m).unwrap());
            }
        }
    }
    a.validate(&shape).unwrap();
}

#[test]
fn reference_equals_masked_attention_on_random_shapes() {
    let mut rng = Rng::new(0xA5_0002);
    for case in 0..24 {
        let shape = random_shape(&mut rng, 300);
        let a = AShape::new(rng.range(0, 2), rng.range(1, 3)).unwrap();
        let causal = case % 2 == 1;
        let o = AttnOptions { causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
        let inputs = random_inputs(&mut rng, shape);
        let want = masked_attention(&inputs, &o, &a.element_mask(&shape, causal).unwrap()).unwrap();
        let got = a_shape_attention(&inputs, &o, &a).unwrap();
        let (d_out, d_lse) = got.max_abs_diff(&want);
        assert!(d_out <= TOL && d_lse <= TOL, "case {case} {shape:?} {a:?}: out {d_out:e}, lse {d_lse:e}");
    }
}

#[test]
fn rejects_an_unvalidated_shape() {
    // AttnShape's fields are private: the shape an A-shape used to re-check cannot be built.
    assert_eq!(AttnShape::new(1, 64, 64, 3, 2, 64), Err(Error::HeadsNotDivisible { heads_q: 3, heads_kv: 2 }));
}

#[test]
fn reference_rejects_a_bad_scale() {
    let mut rng = Rng::new(3);
    let inputs = random_inputs(&mut rng, AttnShape::new(1, 70, 70, 1, 1, 32).unwrap());
    let o = AttnOptions { softmax_scale: Some(f32::NAN), ..AttnOptions::default() };
    let err = a_shape_attention(&inputs, &o, &AShape::new(1, 1).unwrap()).unwrap_err();
    assert!(matches!(err, Error::InvalidSoftmaxScale { value, .. } if value.is_nan()), "{err:?}");
}
