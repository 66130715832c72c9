//! MInference-style vertical-slash estimation: structure of the output (counts, order,
//! ranges, forced entries, ties), the top-k property against scores derived from the dense
//! reference's LSE, planted columns and diagonals, and input errors.

mod common;

use common::{random_inputs, random_shape, Rng};
use sparse_attn::pattern::vs_estimate::{estimate_vertical_slash, estimate_vertical_slash_indices, VsEstimateConfig, VsSelection};
use sparse_attn::reference::{dense_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, Error, SparsePattern};

const SCALE: f64 = 0.125;

fn config(last_q: usize, vertical_size: usize, slash_size: usize, forced_cols: usize, forced_diags: usize) -> VsEstimateConfig {
    VsEstimateConfig { last_q, vertical_size, slash_size, forced_first_columns: forced_cols, forced_last_diagonals: forced_diags, per_kv_group: false }
}

fn head_rows(sel: &VsSelection, b: usize, h: usize) -> (&[i32], &[i32]) {
    let t = b * sel.heads + h;
    (&sel.vertical_indexes[t * sel.nnz_v..(t + 1) * sel.nnz_v], &sel.slash_indexes[t * sel.nnz_s..(t + 1) * sel.nnz_s])
}

/// Column and diagonal sums of the probe rows' attention probabilities, computed from the
/// dense causal reference: p_ij = exp(scale * q_i.k_j - lse_i). Shares no code with the
/// estimator's own softmax.
fn oracle_scores(inputs: &RefInputs, lse: &[f64], b: usize, h: usize, last_q: usize) -> (Vec<f64>, Vec<f64>) {
    let s = inputs.shape;
    let (d, group) = (s.head_dim(), s.heads_q() / s.heads_kv());
    let mut vertical = vec![0.0; s.seq_k()];
    let mut slash = vec![0.0; s.seq_k()];
    for i in s.seq_q().saturating_sub(last_q)..s.seq_q() {
        let diag = i as i64 + s.seq_k() as i64 - s.seq_q() as i64;
        let row_lse = lse[(b * s.heads_q() + h) * s.seq_q() + i];
        for j in 0..s.seq_k() {
            if j as i64 > diag {
                continue;
            }
            let q = &inputs.q[((b * s.seq_q() + i) * s.heads_q() + h) * d..][..d];
            let k = &inputs.k[((b * s.seq_k() + j) * s.heads_kv() + h / group) * d..][..d];
            let dot: f64 = q.iter().zip(k).map(|(x, y)| x * y).sum();
            let p = (SCALE * dot - row_lse).exp();
            vertical[j] += p;
            slash[(diag - j as i64) as usize] += p;
        }
    }
    (vertical, slash)
}

/// Checks one head's selection: count, strict order, range, and that it is a top set of
/// `scores` after forcing (every kept score >= every dropped score, up to rounding).
fn check_selection(picked: &[i32], ascending: bool, scores: &[f64], forced: usize, what: &str) {
    let n = scores.len();
    let expected_len = picked.len();
    assert!(expected_len <= n, "{what}: {expected_len} picked of {n}");
    for pair in picked.windows(2) {
        let in_order = if ascending { pair[0] < pair[1] } else { pair[0] > pair[1] };
        assert!(in_order, "{what}: {picked:?} not strictly {}", if ascending { "ascending" } else { "descending" });
    }
    assert!(picked.iter().all(|&x| x >= 0 && (x as usize) < n), "{what}: {picked:?} outside 0..{n}");
    let kept: Vec<bool> = (0..n).map(|x| picked.contains(&(x as i32))).collect();
    let forced = forced.min(n);
    if forced >= picked.len() {
        assert!((0..picked.len()).all(|x| kept[x]), "{what}: forced budget overflow must keep the lowest {}: {picked:?}", picked.len());
        return;
    }
    assert!((0..forced).all(|x| kept[x]), "{what}: forced 0..{forced} missing from {picked:?}");
    let min_kept = (forced..n).filter(|&x| kept[x]).map(|x| scores[x]).fold(f64::INFINITY, f64::min);
    let max_dropped = (0..n).filter(|&x| !kept[x]).map(|x| scores[x]).fold(f64::NEG_INFINITY, f64::max);
    assert!(min_kept >= max_dropped - 1e-9, "{what}: kept score {min_kept} below dropped {max_dropped}");
}

#[test]
fn selection_is_a_top_set_of_reference_probabilities() {
    let mut rng = Rng::new(0x75e1);
    for case in 0..30 {
        let shape = random_shape(&mut rng, 200);
        let inputs = random_inputs(&mut rng, shape);
        let cfg = config(
            [1, 16, 64][case % 3],
            rng.range(1, shape.seq_k() + 10),
            rng.range(1, shape.seq_k() + 10),
            rng.range(0, 20),
            rng.range(0, 20),
        );
        let sel = estimate_vertical_slash_indices(&inputs, &cfg, SCALE).unwrap();
        assert_eq!((sel.batch, sel.heads), (shape.batch(), shape.heads_q()));
        assert_eq!(sel.nnz_v, cfg.vertical_size.min(shape.seq_k()));
        assert_eq!(sel.nnz_s, cfg.slash_size.min(shape.seq_k()));
        assert_eq!(sel.vertical_indexes.len(), shape.batch() * shape.heads_q() * sel.nnz_v);
        assert_eq!(sel.slash_indexes.len(), shape.batch() * shape.heads_q() * sel.nnz_s);

        let opts = AttnOptions { causal: true, softmax_scale: Some(SCALE as f32), return_lse: true, ..AttnOptions::default() };
        let lse = dense_attention(&inputs, &opts).unwrap().lse;
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                let (vertical, slash) = oracle_scores(&inputs, &lse, b, h, cfg.last_q);
                let (v_row, s_row) = head_rows(&sel, b, h);
                let what = format!("case {case} {shape:?} {cfg:?} [b={b}, h={h}]");
                check_selection(v_row, true, &vertical, cfg.forced_first_columns, &format!("{what} verticals"));
                check_selection(s_row, false, &slash, cfg.forced_last_diagonals, &format!("{what} slashes"));
            }
        }
    }
}

#[test]
fn minference_forced_columns_and_diagonals_are_present() {
    let mut rng = Rng::new(0x75e2);
    let shape = AttnShape::new(2, 500, 530, 4, 2, 64).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let cfg = VsEstimateConfig::new(40, 120);
    assert_eq!((cfg.last_q, cfg.forced_first_columns, cfg.forced_last_diagonals), (64, 30, 100));
    let sel = estimate_vertical_slash_indices(&inputs, &cfg, SCALE).unwrap();
    assert_eq!((sel.nnz_v, sel.nnz_s), (40, 120));
    for b in 0..2 {
        for h in 0..4 {
            let (v_row, s_row) = head_rows(&sel, b, h);
            assert!((0..30).all(|j| v_row.contains(&j)), "verticals {v_row:?}");
            assert!((0..100).all(|d| s_row.contains(&d)), "slashes {s_row:?}");
        }
    }
}

/// Plants a key whose K is a large multiple of the mean of the probe queries of every
/// query head that reads it, so each probe row puts most of its mass on that column.
#[test]
fn planted_strong_column_is_selected() {
    let mut rng = Rng::new(0x75e3);
    let shape = AttnShape::new(1, 300, 300, 4, 2, 64).unwrap();
    let (d, col) = (shape.head_dim(), 150);
    let base = random_inputs(&mut rng, shape);
    let cfg = config(64, 5, 4, 4, 4);

    // Control: without the plant the column does not make the single free slot.
    let sel = estimate_vertical_slash_indices(&base, &cfg, SCALE).unwrap();
    for h in 0..4 {
        assert!(!head_rows(&sel, 0, h).0.contains(&(col as i32)), "control head {h}");
    }

    let mut planted = base.clone();
    for h_kv in 0..2 {
        let mut mean = vec![0.0; d];
        for h in 2 * h_kv..2 * h_kv + 2 {
            for i in 300 - 64..300 {
                for (m, x) in mean.iter_mut().zip(&base.q[(i * 4 + h) * d..][..d]) {
                    *m += x / 128.0;
                }
            }
        }
        let k_row = &mut planted.k[(col * 2 + h_kv) * d..][..d];
        for (k, m) in k_row.iter_mut().zip(&mean) {
            *k = 100.0 * m;
        }
    }
    let sel = estimate_vertical_slash_indices(&planted, &cfg, SCALE).unwrap();
    for h in 0..4 {
        assert_eq!(head_rows(&sel, 0, h).0, &[0, 1, 2, 3, col as i32], "head {h}");
    }
}

/// Makes K at key `i + offset - lag` a copy of Q at row `i`: every probe row then puts most
/// of its mass at distance `lag` from its diagonal.
#[test]
fn planted_diagonal_is_selected() {
    let mut rng = Rng::new(0x75e4);
    // seq_k > seq_q exercises the bottom-right offset.
    let shape = AttnShape::new(2, 200, 260, 2, 2, 64).unwrap();
    let (d, lag, offset) = (shape.head_dim(), 37usize, 60usize);
    let base = random_inputs(&mut rng, shape);
    let cfg = config(64, 4, 5, 4, 4);

    let sel = estimate_vertical_slash_indices(&base, &cfg, SCALE).unwrap();
    for b in 0..2 {
        for h in 0..2 {
            assert!(!head_rows(&sel, b, h).1.contains(&(lag as i32)), "control [b={b}, h={h}]");
        }
    }

    let mut planted = base.clone();
    for b in 0..2 {
        for i in 0..200 {
            let Some(j) = (i + offset).checked_sub(lag) else { continue };
            for h in 0..2 {
                let q = base.q[((b * 200 + i) * 2 + h) * d..][..d].to_vec();
                planted.k[((b * 260 + j) * 2 + h) * d..][..d].copy_from_slice(&q);
            }
        }
    }
    let sel = estimate_vertical_slash_indices(&planted, &cfg, SCALE).unwrap();
    for b in 0..2 {
        for h in 0..2 {
            assert_eq!(head_rows(&sel, b, h).1, &[lag as i32, 3, 2, 1, 0], "[b={b}, h={h}]");
        }
    }
}

/// One probe row over zero q and k: every column and every distance gets exactly
/// 1 / seq_k, so the choice is decided by the tie rule alone.
#[test]
fn ties_go_to_the_lowest_column_and_the_nearest_diagonal() {
    let shape = AttnShape::new(1, 1, 50, 1, 1, 8).unwrap();
    let inputs = RefInputs::from_f64(shape, vec![0.0; 8], vec![0.0; 400], vec![0.0; 400]).unwrap();
    let sel = estimate_vertical_slash_indices(&inputs, &config(64, 10, 7, 0, 0), SCALE).unwrap();
    assert_eq!(sel.vertical_indexes, (0..10).collect::<Vec<i32>>());
    assert_eq!(sel.slash_indexes, vec![6, 5, 4, 3, 2, 1, 0]);
}

/// Forced entries beyond the budget: the lowest ones win (the tie rule among +inf).
#[test]
fn forced_entries_beyond_the_budget_keep_the_lowest() {
    let mut rng = Rng::new(0x75e5);
    let shape = AttnShape::new(1, 300, 300, 2, 1, 64).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let sel = estimate_vertical_slash_indices(&inputs, &config(64, 10, 5, 30, 100), SCALE).unwrap();
    for h in 0..2 {
        let (v_row, s_row) = head_rows(&sel, 0, h);
        assert_eq!(v_row, (0..10).collect::<Vec<i32>>());
        assert_eq!(s_row, &[4, 3, 2, 1, 0]);
    }
}

/// Budgets above seq_k clamp to seq_k for the whole tensor, including when seq_q > seq_k
/// and some probe rows see no key at all.
#[test]
fn budgets_clamp_to_seq_k() {
    let mut rng = Rng::new(0x75e6);
    for (seq_q, seq_k) in [(20, 20), (50, 20), (3, 20)] {
        let shape = AttnShape::new(2, seq_q, seq_k, 2, 2, 32).unwrap();
        let inputs = random_inputs(&mut rng, shape);
        let sel = estimate_vertical_slash_indices(&inputs, &config(64, 1000, 1000, 30, 100), SCALE).unwrap();
        assert_eq!((sel.nnz_v, sel.nnz_s), (20, 20));
        for t in 0..4 {
            assert_eq!(&sel.vertical_indexes[t * 20..][..20], (0..20).collect::<Vec<i32>>());
            assert_eq!(&sel.slash_indexes[t * 20..][..20], (0..20).rev().collect::<Vec<i32>>());
        }
    }
}

#[test]
fn invalid_configs_and_inputs_are_errors() {
    let mut rng = Rng::new(0x75e7);
    let shape = AttnShape::new(1, 70, 70, 2, 1, 32).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    for (cfg, name) in [
        (config(0, 10, 10, 0, 0), "last_q"),
        (config(64, 0, 10, 0, 0), "vertical_size"),
        (config(64, 10, 0, 0, 0), "slash_size"),
    ] {
        let err = estimate_vertical_slash_indices(&inputs, &cfg, SCALE).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: n, .. } if n == name), "{name}: {err:?}");
    }
    let cfg = config(64, 10, 10, 2, 2);
    for scale in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = estimate_vertical_slash_indices(&inputs, &cfg, scale).unwrap_err();
        assert!(matches!(err, Error::InvalidSoftmaxScale { .. }), "{scale}: {err:?}");
    }

    // The shape the estimator used to re-check cannot be built (AttnShape's fields are private).
    let s = inputs.shape;
    let err = AttnShape::new(s.batch(), s.seq_q(), s.seq_k(), s.heads_q(), 3, s.head_dim()).unwrap_err();
    assert_eq!(err, Error::HeadsNotDivisible { heads_q: 2, heads_kv: 3 });

    let mut short_q = inputs.clone();
    short_q.q.pop();
    let err = estimate_vertical_slash_indices(&short_q, &cfg, SCALE).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "q", .. }), "{err:?}");
    let mut short_k = inputs.clone();
    short_k.k.truncate(10);
    let err = estimate_vertical_slash_indices(&short_k, &cfg, SCALE).unwrap_err();
    assert!(matches!(err, Error::WrongLength { tensor: "k", .. }), "{err:?}");
}

/// Non-finite inputs produce NaN probabilities; the estimate must still be well formed.
#[test]
fn non_finite_inputs_still_give_well_formed_indices() {
    let mut rng = Rng::new(0x75e8);
    let shape = AttnShape::new(1, 90, 90, 1, 1, 32).unwrap();
    let mut inputs = random_inputs(&mut rng, shape);
    inputs.q[89 * 32] = f64::NAN;
    inputs.k[5 * 32 + 3] = f64::INFINITY;
    let sel = estimate_vertical_slash_indices(&inputs, &config(64, 12, 9, 2, 2), SCALE).unwrap();
    assert_eq!((sel.vertical_indexes.len(), sel.slash_indexes.len()), (12, 9));
    assert!(sel.vertical_indexes.windows(2).all(|p| p[0] < p[1]) && sel.vertical_indexes.iter().all(|&j| (0..90).contains(&j)));
    assert!(sel.slash_indexes.windows(2).all(|p| p[0] > p[1]) && sel.slash_indexes.iter().all(|&j| (0..90).contains(&j)));
}

/// The descriptor wraps exactly the raw indices and passes the format's own validation,
/// and its pure pattern contains the forced sink columns and local diagonals in every row.
#[test]
fn descriptor_wraps_the_indices_and_validates() {
    let mut rng = Rng::new(0x75e9);
    for case in 0..8 {
        let shape = random_shape(&mut rng, 180);
        let inputs = random_inputs(&mut rng, shape);
        let cfg = config(64, rng.range(1, 70), rng.range(1, 70), 3, 2);
        let sel = estimate_vertical_slash_indices(&inputs, &cfg, SCALE).unwrap();
        let vs = estimate_vertical_slash(&inputs, &cfg, SCALE).unwrap();
        assert_eq!((vs.batch(), vs.heads(), vs.nnz_v(), vs.nnz_s()), (sel.batch, sel.heads, sel.nnz_v, sel.nnz_s));
        assert_eq!(vs.vertical_indexes(), &sel.vertical_indexes[..]);
        assert_eq!(vs.slash_indexes(), &sel.slash_indexes[..]);
        assert_eq!(vs.validate(&shape), Ok(()), "case {case} {shape:?}");
        let mask = vs.pure_mask(&shape).unwrap();
        for b in 0..shape.batch() {
            for h in 0..shape.heads_q() {
                for i in 0..shape.seq_q() {
                    let visible = shape.visible_keys(i, true);
                    let want_cols = 3.min(cfg.vertical_size).min(visible);
                    for j in 0..want_cols {
                        assert!(mask.get(b, h, i, j), "case {case}: column {j} missing at [{b}, {h}, {i}]");
                    }
                    for dist in 0..2.min(cfg.slash_size).min(visible) {
                        assert!(mask.get(b, h, i, visible - 1 - dist), "case {case}: distance {dist} missing at [{b}, {h}, {i}]");
                    }
                }
            }
        }
    }
    let err = estimate_vertical_slash(&random_inputs(&mut rng, AttnShape::new(1, 8, 8, 1, 1, 8).unwrap()), &config(64, 0, 1, 0, 0), SCALE);
    assert!(matches!(err, Err(Error::InvalidParameter { name: "vertical_size", .. })), "{err:?}");
}

/// Per kv group: every query head of a group gets the set the group's mean scores select,
/// which is the top of the oracle's group-averaged sums; with one query head per kv head it
/// is the per-head estimate.
#[test]
fn per_kv_group_ranks_the_group_mean_and_shares_the_set() {
    use sparse_attn::pattern::vs_estimate::estimate_vertical_slash_scores;
    let mut rng = Rng::new(77);
    let shape = AttnShape::new(2, 90, 130, 8, 2, 16).unwrap();
    let inputs = random_inputs(&mut rng, shape);
    let grouped = VsEstimateConfig { per_kv_group: true, ..config(32, 12, 9, 2, 2) };
    let sel = estimate_vertical_slash_indices(&inputs, &grouped, SCALE).unwrap();
    let scores = estimate_vertical_slash_scores(&inputs, &grouped, SCALE).unwrap();
    let per_head = estimate_vertical_slash_scores(&inputs, &config(32, 12, 9, 2, 2), SCALE).unwrap();
    for b in 0..2 {
        for h in 0..8 {
            let leader = h / 4 * 4;
            assert_eq!(head_rows(&sel, b, h), head_rows(&sel, b, leader), "batch {b} head {h}");
            // The group's scores are the mean of its heads' own.
            let (v, _) = &scores[b * 8 + h];
            for (j, &x) in v.iter().enumerate() {
                let mean: f64 = (leader..leader + 4).map(|g| per_head[b * 8 + g].0[j]).sum::<f64>() / 4.0;
                assert!((x - mean).abs() <= 1e-12 * mean.abs().max(1.0), "batch {b} head {h} column {j}");
            }
        }
    }
    // No grouping to do: the same estimate as per query head.
    let mha = AttnShape::new(1, 70, 70, 3, 3, 16).unwrap();
    let inputs = random_inputs(&mut rng, mha);
    let a = estimate_vertical_slash_indices(&inputs, &grouped, SCALE).unwrap();
    let b = estimate_vertical_slash_indices(&inputs, &config(32, 12, 9, 2, 2), SCALE).unwrap();
    assert_eq!(a, b);
}
