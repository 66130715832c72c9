//! The host block top-k estimator: its errors, forced blocks, per-row counts, causal
//! exclusion, GQA grouping, a planted high-scoring block, and its full selection against a
//! brute-force oracle written here from the definition.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::pattern::{estimate_block_topk, BlockSparse, BlockTopkConfig};
use sparse_attn::reference::{block_sparse_attention, masked_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, Error, SparsePattern};

fn config(
    top_k: usize,
    causal: bool,
    force_sink: bool,
    force_diagonal: bool,
    per_kv_group: bool,
) -> BlockTopkConfig {
    BlockTopkConfig { top_k, causal, force_sink, force_diagonal, per_kv_group }
}

/// Diagonal key block of row block `m`, written from the definition (None: sees no key).
fn diagonal(shape: &AttnShape, m: usize) -> Option<usize> {
    let last_row = ((m + 1) * 64).min(shape.seq_q()) as i64 - 1;
    let last_key = (last_row + shape.seq_k() as i64 - shape.seq_q() as i64).min(shape.seq_k() as i64 - 1);
    (last_key >= 0).then_some(last_key as usize / 64)
}

/// Key blocks row block `m` may pick from.
fn candidates(shape: &AttnShape, m: usize, causal: bool) -> usize {
    if causal {
        diagonal(shape, m).map_or(0, |d| d + 1)
    } else {
        shape.seq_k().div_ceil(64)
    }
}

/// Mean of rows `block*64..` of head `h` in batch `b` of a BSHD tensor with `heads` heads.
fn block_mean(x: &[f64], seq: usize, heads: usize, dim: usize, b: usize, h: usize, block: usize) -> Vec<f64> {
    let rows: Vec<usize> = (block * 64..((block + 1) * 64).min(seq)).collect();
    let mut mean = vec![0.0; dim];
    for &r in &rows {
        for (e, m) in mean.iter_mut().enumerate() {
            *m += x[((b * seq + r) * heads + h) * dim + e];
        }
    }
    mean.iter().map(|m| m / rows.len() as f64).collect()
}

/// The selection by brute force: forced blocks that are candidates, then candidates by
/// descending mean score (mean over the heads the mask serves), ties to the lower id.
fn oracle(inputs: &RefInputs, cfg: &BlockTopkConfig, scale: f64) -> Vec<Vec<i32>> {
    let s = inputs.shape;
    let heads = if cfg.per_kv_group { s.heads_kv() } else { s.heads_q() };
    let per = s.heads_q() / heads;
    let mut rows = Vec::new();
    for b in 0..s.batch() {
        for mh in 0..heads {
            for m in 0..s.seq_q().div_ceil(64) {
                let cand = candidates(&s, m, cfg.causal);
                let score = |n: usize| {
                    let mut total = 0.0;
                    for h in mh * per..(mh + 1) * per {
                        let q = block_mean(&inputs.q, s.seq_q(), s.heads_q(), s.head_dim(), b, h, m);
                        let k = block_mean(
                            &inputs.k,
                            s.seq_k(),
                            s.heads_kv(),
                            s.head_dim(),
                            b,
                            h / (s.heads_q() / s.heads_kv()),
                            n,
                        );
                        total += scale * q.iter().zip(&k).map(|(x, y)| x * y).sum::<f64>();
                    }
                    total / per as f64
                };
                let mut forced = Vec::new();
                if cfg.force_sink && cand > 0 {
                    forced.push(0);
                }
                if let (true, Some(d)) = (cfg.force_diagonal, diagonal(&s, m)) {
                    if !forced.contains(&d) {
                        forced.push(d);
                    }
                }
                let mut rest: Vec<(f64, usize)> =
                    (0..cand).filter(|n| !forced.contains(n)).map(|n| (score(n), n)).collect();
                rest.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
                let mut kept = forced.clone();
                kept.extend(rest.iter().take(cfg.top_k.saturating_sub(forced.len())).map(|&(_, n)| n));
                kept.sort();
                rows.push(kept.into_iter().map(|n| n as i32).collect());
            }
        }
    }
    rows
}

fn all_rows(p: &BlockSparse) -> Vec<Vec<i32>> {
    let mut rows = Vec::new();
    for b in 0..p.batch() {
        for h in 0..p.heads() {
            for m in 0..p.row_blocks() {
                rows.push(p.blocks(b, h, m).unwrap().to_vec());
            }
        }
    }
    rows
}

#[test]
fn rejects_top_k_zero() {
    let mut rng = Rng::new(1);
    let inputs = random_inputs(&mut rng, AttnShape::new(1, 64, 64, 1, 1, 32).unwrap());
    let err = estimate_block_topk(&inputs, &config(0, true, true, true, false), 0.1).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "top_k", .. }), "{err:?}");
}

#[test]
fn rejects_a_scale_that_is_not_finite_and_positive() {
    let mut rng = Rng::new(2);
    let inputs = random_inputs(&mut rng, AttnShape::new(1, 64, 64, 1, 1, 32).unwrap());
    for scale in [0.0, -0.5, f64::INFINITY] {
        let err = estimate_block_topk(&inputs, &config(2, false, false, false, false), scale).unwrap_err();
        assert!(matches!(err, Error::InvalidSoftmaxScale { value, .. } if value == scale as f32), "{err}");
    }
    let err = estimate_block_topk(&inputs, &config(2, false, false, false, false), f64::NAN).unwrap_err();
    assert!(matches!(err, Error::InvalidSoftmaxScale { value, .. } if value.is_nan()));
}

#[test]
fn rejects_inputs_whose_lengths_or_shape_are_wrong() {
    let mut rng = Rng::new(3);
    let inputs = random_inputs(&mut rng, AttnShape::new(1, 100, 90, 4, 2, 32).unwrap());
    let cfg = config(2, true, false, false, false);
    let mut short_q = inputs.clone();
    short_q.q.pop();
    assert!(matches!(estimate_block_topk(&short_q, &cfg, 0.1), Err(Error::WrongLength { tensor: "q", .. })));
    let mut long_k = inputs.clone();
    long_k.k.push(0.0);
    assert!(matches!(estimate_block_topk(&long_k, &cfg, 0.1), Err(Error::WrongLength { tensor: "k", .. })));
    // The shape the estimator used to re-check cannot be built (AttnShape's fields are private).
    let s = inputs.shape;
    let no_kv = AttnShape::new(s.batch(), s.seq_q(), s.seq_k(), s.heads_q(), 0, s.head_dim());
    assert_eq!(no_kv, Err(Error::ZeroDimension { dim: "heads_kv" }));
}

#[test]
fn selection_equals_brute_force_on_random_problems() {
    let mut rng = Rng::new(0x70_9001);
    for case in 0..60 {
        let shape = random_shape(&mut rng, 400);
        let inputs = random_inputs(&mut rng, shape);
        let cfg = config(rng.range(1, 5), rng.chance(0.5), rng.chance(0.5), rng.chance(0.5), rng.chance(0.5));
        let scale = 0.01 + rng.unit();
        let p = estimate_block_topk(&inputs, &cfg, scale).unwrap();
        p.validate(&shape).unwrap();
        let want_heads = if cfg.per_kv_group { shape.heads_kv() } else { shape.heads_q() };
        assert_eq!(
            (p.batch(), p.heads(), p.row_blocks()),
            (shape.batch(), want_heads, shape.seq_q().div_ceil(64))
        );
        assert_eq!(all_rows(&p), oracle(&inputs, &cfg, scale), "case {case} {shape:?} {cfg:?}");
    }
}

#[test]
fn forced_blocks_present_and_counts_are_min_of_top_k_and_visible() {
    let mut rng = Rng::new(0x70_9002);
    for _ in 0..60 {
        let shape = random_shape(&mut rng, 400);
        let inputs = random_inputs(&mut rng, shape);
        let causal = rng.chance(0.5);
        // top_k >= 2 so the two forced blocks always fit.
        let top_k = rng.range(2, 6);
        let p =
            estimate_block_topk(&inputs, &config(top_k, causal, true, true, rng.chance(0.5)), 0.125).unwrap();
        for b in 0..p.batch() {
            for h in 0..p.heads() {
                for m in 0..p.row_blocks() {
                    let row = p.blocks(b, h, m).unwrap();
                    let visible = candidates(&shape, m, causal);
                    assert_eq!(row.len(), top_k.min(visible), "{shape:?} m={m} causal={causal}");
                    if visible > 0 {
                        assert_eq!(row[0], 0, "sink missing");
                    }
                    if let Some(d) = diagonal(&shape, m) {
                        assert!(row.contains(&(d as i32)), "diagonal {d} missing from {row:?}");
                    }
                    assert!(row.windows(2).all(|w| w[0] < w[1]));
                    assert!(row.iter().all(|&n| (n as usize) < visible));
                }
            }
        }
    }
}

#[test]
fn forced_blocks_beyond_top_k_are_all_kept() {
    let mut rng = Rng::new(4);
    let shape = AttnShape::new(1, 300, 300, 2, 2, 32).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let p = estimate_block_topk(&inputs, &config(1, true, true, true, false), 0.2).unwrap();
    for h in 0..2 {
        assert_eq!(p.blocks(0, h, 0).unwrap(), &[0]);
        for m in 1..5 {
            assert_eq!(p.blocks(0, h, m).unwrap(), &[0, m as i32]);
        }
    }
}

/// Overwrites every key of key block `n` (kv head `hk`) with `gain` times the pooled q of
/// row block `m` of query head `h`, so that pair's score dwarfs all others.
fn plant(inputs: &mut RefInputs, h: usize, m: usize, n: usize, gain: f64) {
    let s = inputs.shape;
    let pooled = block_mean(&inputs.q, s.seq_q(), s.heads_q(), s.head_dim(), 0, h, m);
    let hk = h / (s.heads_q() / s.heads_kv());
    for j in n * 64..((n + 1) * 64).min(s.seq_k()) {
        let off = (j * s.heads_kv() + hk) * s.head_dim();
        for (e, p) in pooled.iter().enumerate() {
            inputs.k[off + e] = gain * p;
        }
    }
}

#[test]
fn a_planted_block_is_selected() {
    let mut rng = Rng::new(0x70_9003);
    for (heads_q, heads_kv, per_kv_group) in [(2, 2, false), (4, 1, false), (4, 1, true), (8, 2, true)] {
        let shape = AttnShape::new(1, 300, 450, heads_q, heads_kv, 64).unwrap();
        let mut inputs = random_inputs(&mut rng, shape);
        // Row block 3 (rows 192..255) of query head 1; key block 2 is well inside its view.
        plant(&mut inputs, 1, 3, 2, 20.0);
        for causal in [false, true] {
            let p =
                estimate_block_topk(&inputs, &config(1, causal, false, false, per_kv_group), 0.125).unwrap();
            let mh = if per_kv_group { 1 / (heads_q / heads_kv) } else { 1 };
            assert_eq!(
                p.blocks(0, mh, 3).unwrap(),
                &[2],
                "H{heads_q}/{heads_kv} group={per_kv_group} causal={causal}"
            );
            // With forcing on, the planted block still takes the one free slot.
            let p =
                estimate_block_topk(&inputs, &config(3, causal, true, true, per_kv_group), 0.125).unwrap();
            let d = diagonal(&shape, 3).unwrap() as i32;
            assert_eq!(p.blocks(0, mh, 3).unwrap(), &[0, 2, d]);
        }
    }
}

#[test]
fn causal_excludes_blocks_no_row_can_see() {
    let mut rng = Rng::new(0x70_9004);
    let shape = AttnShape::new(1, 300, 300, 1, 1, 64).unwrap();
    let mut inputs = random_inputs(&mut rng, shape);
    // Row block 1 sees key blocks 0 and 1 only; plant its best match in block 4.
    plant(&mut inputs, 0, 1, 4, 20.0);
    let open = estimate_block_topk(&inputs, &config(1, false, false, false, false), 0.125).unwrap();
    assert_eq!(open.blocks(0, 0, 1).unwrap(), &[4]);
    let causal = estimate_block_topk(&inputs, &config(1, true, false, false, false), 0.125).unwrap();
    let row = causal.blocks(0, 0, 1).unwrap();
    assert_eq!(row.len(), 1);
    assert!(row[0] <= 1, "{row:?}");
    // Even a generous budget never reaches past the diagonal.
    let wide = estimate_block_topk(&inputs, &config(10, true, false, false, false), 0.125).unwrap();
    for m in 0..5 {
        assert_eq!(wide.blocks(0, 0, m).unwrap(), (0..=m as i32).collect::<Vec<_>>().as_slice());
    }
}

#[test]
fn causal_row_blocks_that_see_nothing_get_no_blocks() {
    let mut rng = Rng::new(5);
    // 300 queries over 100 keys: row blocks 0..2 precede every key.
    let shape = AttnShape::new(1, 300, 100, 1, 1, 32).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let p = estimate_block_topk(&inputs, &config(2, true, true, true, false), 0.1).unwrap();
    assert_eq!(all_rows(&p), vec![vec![], vec![], vec![], vec![0], vec![0, 1]]);
}

#[test]
fn per_kv_group_is_per_head_when_groups_have_one_head() {
    let mut rng = Rng::new(0x70_9005);
    let shape = AttnShape::new(2, 260, 330, 3, 3, 32).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let a = estimate_block_topk(&inputs, &config(2, true, false, true, true), 0.1).unwrap();
    let b = estimate_block_topk(&inputs, &config(2, true, false, true, false), 0.1).unwrap();
    assert_eq!(a, b);
}

#[test]
fn estimated_pattern_runs_through_the_reference() {
    let mut rng = Rng::new(0x70_9006);
    let shape = AttnShape::new(1, 257, 300, 4, 1, 64).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let p = estimate_block_topk(&inputs, &config(2, true, true, false, true), 0.125).unwrap();
    let o = AttnOptions { causal: true, softmax_scale: Some(0.125), return_lse: true, ..AttnOptions::default() };
    let want = masked_attention(&inputs, &o, &p.element_mask(&shape, true).unwrap()).unwrap();
    let (d_out, d_lse) = block_sparse_attention(&inputs, &o, &p).unwrap().max_abs_diff(&want);
    assert!(d_out <= 1e-12 && d_lse <= 1e-12, "out {d_out:e}, lse {d_lse:e}");
}

#[test]
fn ties_go_to_the_lower_block_id() {
    let mut rng = Rng::new(6);
    let shape = AttnShape::new(1, 300, 300, 2, 1, 32).unwrap();
    let mut inputs = random_inputs(&mut rng, shape);
    // Zero keys make every score exactly 0.
    inputs.k.iter_mut().for_each(|x| *x = 0.0);
    let p = estimate_block_topk(&inputs, &config(2, false, false, false, false), 0.1).unwrap();
    assert!(all_rows(&p).iter().all(|row| row == &[0, 1]), "{:?}", all_rows(&p));
    let p = estimate_block_topk(&inputs, &config(3, true, false, true, true), 0.1).unwrap();
    assert_eq!(all_rows(&p), vec![vec![0], vec![0, 1], vec![0, 1, 2], vec![0, 1, 3], vec![0, 1, 4]]);
}

#[test]
fn a_partial_last_block_averages_only_its_real_rows() {
    let mut rng = Rng::new(7);
    // 300 keys: key block 4 holds 44 real keys.
    let shape = AttnShape::new(1, 64, 300, 1, 1, 32).unwrap();
    let mut inputs = random_inputs(&mut rng, shape);
    let q_mean = block_mean(&inputs.q, 64, 1, 32, 0, 0, 0);
    for j in 0..300 {
        // Block 4 equals the pooled q exactly; block 1 is 0.8 of it; the rest are zero.
        let gain = match j / 64 {
            4 => 1.0,
            1 => 0.8,
            _ => 0.0,
        };
        for (k, q) in inputs.k[j * 32..(j + 1) * 32].iter_mut().zip(&q_mean) {
            *k = gain * q;
        }
    }
    // Averaging block 4 over 64 slots would scale it by 44/64 < 0.8 and pick block 1.
    let p = estimate_block_topk(&inputs, &config(1, false, false, false, false), 0.1).unwrap();
    assert_eq!(p.blocks(0, 0, 0).unwrap(), &[4]);
}
