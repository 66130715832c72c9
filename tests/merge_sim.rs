//! Merging partial attention states by their LSE (kernels/merge.cu, `plan::merge`):
//!
//! - the f64 host merge of an attention problem split into key parts (some empty) equals the
//!   unsplit reference;
//! - the kernels on the PTX simulator (memcheck always on) equal the host merge for f32,
//!   bf16 and f16 outputs, 1 to 40 states, head_dim 4 to 260, contiguous, strided, varlen
//!   and split-KV decode layouts, empty and NaN states; and the in-place form;
//! - validation: every bad size, stride, alignment or overlap is an error naming the
//!   argument, and whatever the planner accepts (fuzzed strides and lengths) runs in bounds.
//!
//! Without a CUDA compiler the simulator tests skip with the reason, unless
//! SPARSE_ATTN_REQUIRE_KERNELS=1 makes that a failure.

mod attention_cases;
mod common;

use attention_cases::{out_tolerance_at, sim_backend_or_skip, Rng};
use ptx_sim::LaunchOptions;
use sparse_attn::plan::merge::{
    plan, plan_in_place, InPlaceBuffers, InPlaceLayouts, LseLayout, MergeBuffers, MergeDtype, MergeElement, MergeLayouts, MergeShape, PartialLseLayout,
    PartialOutLayout, RowLayout,
};
use sparse_attn::plan::DeviceBuffer;
use sparse_attn::reference::{attend_rows, dense_attention, merge_states_reference, RefInputs, RefMerged};
use sparse_attn::sim::SimBackend;
use sparse_attn::{AttnOptions, AttnShape, DType, Error};

// ---- Offsets under the layouts (what the kernels compute) ----

fn po_at(l: &PartialOutLayout, s: usize, b: usize, t: usize, h: usize) -> usize {
    (s as i64 * l.state + b as i64 * l.batch + t as i64 * l.seq + h as i64 * l.head) as usize
}
fn pl_at(l: &PartialLseLayout, s: usize, b: usize, t: usize, h: usize) -> usize {
    (s as i64 * l.state + b as i64 * l.batch + h as i64 * l.head + t as i64) as usize
}
fn row_at(l: &RowLayout, b: usize, t: usize, h: usize) -> usize {
    (b as i64 * l.batch + t as i64 * l.seq + h as i64 * l.head) as usize
}
fn lse_at(l: &LseLayout, b: usize, t: usize, h: usize) -> usize {
    (b as i64 * l.batch + h as i64 * l.head + t as i64) as usize
}

/// Every (b, t, h) of a shape.
fn rows(shape: &MergeShape) -> impl Iterator<Item = (usize, usize, usize)> {
    let (b, t, h) = (shape.batch(), shape.seq(), shape.heads());
    (0..b).flat_map(move |bi| (0..t).flat_map(move |ti| (0..h).map(move |hi| (bi, ti, hi))))
}

/// Contiguous offsets (the reference's layouts).
fn contiguous(shape: &MergeShape) -> MergeLayouts {
    MergeLayouts::contiguous(shape)
}

// ---- (a) the host merge of split attention equals the unsplit reference ----

/// Each part's attention over its own keys (a row that sees none of them gets output 0 and
/// LSE -inf), stacked as f32 partials `[S, B, seq, H, D]` and `[S, B, H, seq]`.
fn split_states(inputs: &RefInputs, causal: bool, part_of: &[usize], parts: usize) -> (Vec<f32>, Vec<f32>) {
    let s = inputs.shape;
    let scale = 1.0 / (s.head_dim() as f64).sqrt();
    let (mut po, mut pl) = (Vec::new(), Vec::new());
    for p in 0..parts {
        let part = attend_rows(inputs, scale, |_, _, i, list| {
            list.extend((0..s.visible_keys(i, causal)).filter(|&j| part_of[j] == p));
        })
        .unwrap();
        po.extend(part.out.iter().map(|&x| x as f32));
        pl.extend(part.lse.iter().map(|&x| x as f32));
    }
    (po, pl)
}

#[test]
fn host_merge_of_split_attention_equals_the_unsplit_reference() {
    let mut rng = Rng::new(7001);
    let mut empty_parts = 0;
    for (case, &(batch, seq_q, seq_k, heads_q, heads_kv, causal)) in
        [(2, 37, 150, 4, 2, false), (2, 37, 150, 4, 2, true), (1, 40, 20, 2, 2, true), (1, 1, 300, 8, 1, true), (3, 16, 64, 2, 1, false)].iter().enumerate()
    {
        let shape = AttnShape::new(batch, seq_q, seq_k, heads_q, heads_kv, 64).unwrap();
        let inputs = common::random_inputs(&mut rng, shape);
        let opts = AttnOptions { causal, ..Default::default() };
        let full = dense_attention(&inputs, &opts).unwrap();
        for parts in [1, 3, 5, 16] {
            // Contiguous chunks of keys (split-KV), or keys dealt at random with part 1 kept
            // empty (a state with no keys: LSE -inf on every row).
            let chunked = rng.chance(0.5);
            let part_of: Vec<usize> = (0..seq_k)
                .map(|j| {
                    if chunked {
                        j * parts / seq_k
                    } else {
                        let p = rng.below(parts);
                        if parts > 1 && p == 1 { 0 } else { p }
                    }
                })
                .collect();
            empty_parts += (0..parts).filter(|p| !part_of.contains(p)).count();
            let (po, pl) = split_states(&inputs, causal, &part_of, parts);
            let merge_shape = MergeShape::new(parts, batch, seq_q, heads_q, 64).unwrap();
            let merged = merge_states_reference(&merge_shape, &po, &pl).unwrap();
            let label = format!("case {case} parts {parts} chunked {chunked}");
            for (i, (&got, &want)) in merged.out.iter().zip(&full.out).enumerate() {
                assert!((got - want).abs() <= 1e-5, "{label}: out[{i}] = {got}, unsplit {want}");
            }
            for (i, (&got, &want)) in merged.lse.iter().zip(&full.lse).enumerate() {
                assert!(lse_close(got, want, 1e-5), "{label}: lse[{i}] = {got}, unsplit {want}");
            }
        }
    }
    assert!(empty_parts > 0, "no case had an empty part");
}

/// Equal within `tol` (relative above 1), or both -inf, or both NaN.
fn lse_close(got: f64, want: f64, tol: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= tol * want.abs().max(1.0)
}

// ---- (b) the kernel equals the host merge ----

/// Random partial states of `shape`, contiguous: LSEs normal * 5, about one state in five
/// empty (-inf, its output row NaN: it must not be read), and rows listed in `empty_rows`
/// empty in every state.
fn random_states(rng: &mut Rng, shape: &MergeShape, empty_rows: &[(usize, usize, usize)]) -> (Vec<f32>, Vec<f32>) {
    let l = contiguous(shape);
    let d = shape.head_dim();
    let mut po: Vec<f32> = (0..shape.partial_out_len()).map(|_| rng.normal() as f32).collect();
    let mut pl: Vec<f32> = (0..shape.partial_lse_len()).map(|_| (rng.normal() * 5.0) as f32).collect();
    for (b, t, h) in rows(shape) {
        for s in 0..shape.states() {
            if empty_rows.contains(&(b, t, h)) || rng.chance(0.2) {
                pl[pl_at(&l.partial_lse, s, b, t, h)] = f32::NEG_INFINITY;
                let at = po_at(&l.partial_out, s, b, t, h);
                po[at..at + d].fill(f32::NAN);
            }
        }
    }
    (po, pl)
}

/// Elements a layout reaches (largest offset + 1), for sizing test buffers.
fn reach(offsets: impl Iterator<Item = usize>, inner: usize) -> usize {
    offsets.max().unwrap_or(0) + inner
}

/// The merge on the simulator through the plan, with every tensor laid out by `layouts`:
/// contiguous `po` and `pl` are scattered into buffers whose other elements are NaN (a read
/// of one would show in the output), the output and LSE buffers start as a sentinel that
/// must survive everywhere outside the rows. Returns the output (widened) and LSE gathered
/// back to contiguous.
fn run_merge<T: MergeElement + ptx_sim::Element>(sim: &SimBackend, shape: &MergeShape, layouts: &MergeLayouts, po: &[f32], pl: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (c, l, d) = (contiguous(shape), layouts, shape.head_dim());
    let states = || (0..shape.states()).flat_map(|s| rows(shape).map(move |r| (s, r)));
    let mut po_buf = vec![f32::NAN; reach(states().map(|(s, (b, t, h))| po_at(&l.partial_out, s, b, t, h)), d)];
    let mut pl_buf = vec![f32::NAN; reach(states().map(|(s, (b, t, h))| pl_at(&l.partial_lse, s, b, t, h)), 1)];
    for (s, (b, t, h)) in states() {
        let (from, to) = (po_at(&c.partial_out, s, b, t, h), po_at(&l.partial_out, s, b, t, h));
        po_buf[to..to + d].copy_from_slice(&po[from..from + d]);
        pl_buf[pl_at(&l.partial_lse, s, b, t, h)] = pl[pl_at(&c.partial_lse, s, b, t, h)];
    }
    const SENTINEL: f32 = 12345.0;
    let out_len = reach(rows(shape).map(|(b, t, h)| row_at(&l.out, b, t, h)), d);
    let lse_len = reach(rows(shape).map(|(b, t, h)| lse_at(&l.lse, b, t, h)), 1);
    let bufs = MergeBuffers {
        partial_out: sim.upload(&po_buf).unwrap(),
        partial_lse: sim.upload(&pl_buf).unwrap(),
        out: sim.upload(&vec![T::from_f32(SENTINEL); out_len]).unwrap(),
        lse: Some(sim.upload(&vec![SENTINEL; lse_len]).unwrap()),
        layouts: *layouts,
    };
    let launch = plan(shape, T::DTYPE, &bufs).unwrap();
    sim.launch(&launch, &LaunchOptions::default()).unwrap();
    let out_buf: Vec<T> = sim.download(bufs.out).unwrap();
    let lse_buf: Vec<f32> = sim.download(bufs.lse.unwrap()).unwrap();
    let (mut out, mut lse) = (vec![0.0; shape.out_len()], vec![0.0; shape.lse_len()]);
    let mut out_written = vec![false; out_len];
    let mut lse_written = vec![false; lse_len];
    for (b, t, h) in rows(shape) {
        let (from, to) = (row_at(&l.out, b, t, h), row_at(&c.out, b, t, h));
        for k in 0..d {
            out[to + k] = out_buf[from + k].to_f32();
            out_written[from + k] = true;
        }
        lse[lse_at(&c.lse, b, t, h)] = lse_buf[lse_at(&l.lse, b, t, h)];
        lse_written[lse_at(&l.lse, b, t, h)] = true;
    }
    for (i, x) in out_buf.iter().enumerate().filter(|&(i, _)| !out_written[i]) {
        assert_eq!(x.to_f32(), T::from_f32(SENTINEL).to_f32(), "out[{i}] lies outside every row but was written");
    }
    for (i, &x) in lse_buf.iter().enumerate().filter(|&(i, _)| !lse_written[i]) {
        assert_eq!(x, SENTINEL, "lse[{i}] lies outside every row but was written");
    }
    (out, lse)
}

/// Compares a kernel's merged output and LSE with the host merge: f32 within 1e-5 relative
/// (above 1), f16 / bf16 within the attention output tolerance; rows the host merge gives 0
/// and -inf must be exactly that.
fn check_merged(label: &str, dtype: MergeDtype, want: &RefMerged, out: &[f32], lse: &[f32]) {
    for (i, (&got, &w)) in out.iter().zip(&want.out).enumerate() {
        let got = got as f64;
        let ok = match dtype {
            _ if w.is_nan() => got.is_nan(),
            MergeDtype::F32 => (got - w).abs() <= 1e-5 * w.abs().max(1.0),
            MergeDtype::F16 => (got - w).abs() <= out_tolerance_at(DType::F16, w),
            MergeDtype::BF16 => (got - w).abs() <= out_tolerance_at(DType::BF16, w),
        };
        assert!(ok, "{label} {}: out[{i}] = {got}, host merge {w}", dtype.name());
    }
    for (i, (&got, &w)) in lse.iter().zip(&want.lse).enumerate() {
        assert!(lse_close(got as f64, w, 1e-5), "{label} {}: lse[{i}] = {got}, host merge {w}", dtype.name());
    }
}

/// The merge of every dtype through `run_merge`, against the host merge.
fn check_all_dtypes(sim: &SimBackend, label: &str, shape: &MergeShape, layouts: &MergeLayouts, po: &[f32], pl: &[f32]) {
    let want = merge_states_reference(shape, po, pl).unwrap();
    let (out, lse) = run_merge::<f32>(sim, shape, layouts, po, pl);
    check_merged(label, MergeDtype::F32, &want, &out, &lse);
    let (out, lse) = run_merge::<half::bf16>(sim, shape, layouts, po, pl);
    check_merged(label, MergeDtype::BF16, &want, &out, &lse);
    let (out, lse) = run_merge::<half::f16>(sim, shape, layouts, po, pl);
    check_merged(label, MergeDtype::F16, &want, &out, &lse);
}

#[test]
fn kernel_equals_the_host_merge_for_every_dtype_state_count_and_head_dim() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7002);
    for states in [1, 3, 16, 40] {
        for head_dim in [64, 96, 128, 256, 4, 132] {
            let shape = MergeShape::new(states, 2, 3, 3, head_dim).unwrap();
            let (po, pl) = random_states(&mut rng, &shape, &[(0, 1, 2), (1, 2, 0)]);
            let label = format!("S {states} D {head_dim}");
            check_all_dtypes(&sim, &label, &shape, &contiguous(&shape), &po, &pl);
            // The rows whose every state is empty: exactly 0 and -inf.
            let want = merge_states_reference(&shape, &po, &pl).unwrap();
            let (out, lse) = sim.merge_states::<half::bf16>(&shape, &po, &pl, &contiguous(&shape)).unwrap();
            let c = contiguous(&shape);
            for (b, t, h) in [(0, 1, 2), (1, 2, 0)] {
                assert_eq!(lse[lse_at(&c.lse, b, t, h)], f32::NEG_INFINITY, "{label}: empty row ({b}, {t}, {h})");
                let at = row_at(&c.out, b, t, h);
                assert!(out[at..at + head_dim].iter().all(|x| x.to_bits() == 0), "{label}: empty row ({b}, {t}, {h}) is not +0");
            }
            // SimBackend::merge_states (contiguous) agrees with the plan run above.
            check_merged(&label, MergeDtype::BF16, &want, &out.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), &lse);
        }
    }
}

#[test]
fn strided_and_permuted_layouts() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7003);
    for (states, head_dim) in [(3, 64), (16, 128), (5, 96), (2, 256)] {
        let (b, t, h, d) = (2i64, 5i64, 3i64, head_dim as i64);
        let shape = MergeShape::new(states, b as usize, t as usize, h as usize, head_dim).unwrap();
        // Padded rows, heads and tokens (strides multiples of 4 elements), LSEs with gaps.
        let padded = MergeLayouts {
            partial_out: PartialOutLayout { state: b * t * h * (d + 8) + 16, batch: t * h * (d + 8) + 4, seq: h * (d + 8), head: d + 8 },
            partial_lse: PartialLseLayout { state: b * h * (t + 3) + 7, batch: h * (t + 3) + 1, head: t + 3 },
            out: RowLayout { batch: t * h * (d + 4) + 12, seq: h * (d + 4) + 4, head: d + 4 },
            lse: LseLayout { batch: h * (t + 2) + 5, head: t + 2 },
        };
        // Permuted: states innermost of the outer dims, heads before tokens.
        let permuted = MergeLayouts {
            partial_out: PartialOutLayout { state: d, batch: t * h * states as i64 * d, seq: h * states as i64 * d, head: states as i64 * d },
            partial_lse: PartialLseLayout { state: b * h * t, batch: t, head: b * t },
            out: RowLayout { batch: h * t * d, seq: d, head: t * d },
            lse: LseLayout { batch: t, head: b * t },
        };
        for (name, layouts) in [("padded", padded), ("permuted", permuted)] {
            let (po, pl) = random_states(&mut rng, &shape, &[(1, 4, 1)]);
            check_all_dtypes(&sim, &format!("{name} S {states} D {head_dim}"), &shape, &layouts, &po, &pl);
        }
    }
}

#[test]
fn varlen_and_split_kv_decode_layouts() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7004);
    // Varlen: batch 1, seq = total_q; out [total_q, H, D], LSE [H, total_q], as the attention
    // kernels write them; the partials of a context-parallel split likewise.
    for (states, total_q, heads, head_dim) in [(2, 23, 4, 128), (16, 9, 2, 64), (3, 70, 1, 256)] {
        let shape = MergeShape::new(states, 1, total_q, heads, head_dim).unwrap();
        let layouts = MergeLayouts::contiguous(&shape);
        assert_eq!(layouts.lse, LseLayout { batch: (heads * total_q) as i64, head: total_q as i64 });
        let (po, pl) = random_states(&mut rng, &shape, &[(0, 0, 0)]);
        check_all_dtypes(&sim, &format!("varlen S {states} total {total_q}"), &shape, &layouts, &po, &pl);
    }
    // Split-KV decode: partial_out [splits, rows, H, D], partial_lse [splits, H, rows], rows =
    // batch * q_len, seen as (batch, q_len); the output [batch, q_len, H, D] and LSE [batch,
    // H, q_len].
    for (splits, batch, q_len, heads, head_dim) in [(4, 3, 4, 8, 128), (16, 2, 1, 4, 64), (1, 1, 16, 2, 96), (7, 2, 3, 2, 256)] {
        let shape = MergeShape::new(splits, batch, q_len, heads, head_dim).unwrap();
        let rows = (batch * q_len) as i64;
        let (h, d, q) = (heads as i64, head_dim as i64, q_len as i64);
        let layouts = MergeLayouts {
            partial_out: PartialOutLayout { state: rows * h * d, batch: q * h * d, seq: h * d, head: d },
            partial_lse: PartialLseLayout { state: h * rows, batch: q, head: rows },
            ..MergeLayouts::contiguous(&shape)
        };
        let (po, pl) = random_states(&mut rng, &shape, &[(0, 0, 1)]);
        check_all_dtypes(&sim, &format!("decode splits {splits} b {batch} q_len {q_len}"), &shape, &layouts, &po, &pl);
    }
}

#[test]
fn nan_and_infinite_lse_are_not_hidden() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7005);
    let shape = MergeShape::new(5, 1, 4, 2, 64).unwrap();
    let (po, mut pl) = random_states(&mut rng, &shape, &[]);
    let c = contiguous(&shape);
    // Row (0, 0, 0): one NaN state among finite ones; row (0, 1, 1): a NaN state among
    // empty ones; row (0, 2, 0): a +inf state. Each row's output and LSE are NaN.
    for s in 0..5 {
        pl[pl_at(&c.partial_lse, s, 0, 0, 0)] = if s == 2 { f32::NAN } else { 1.0 + s as f32 };
        pl[pl_at(&c.partial_lse, s, 0, 1, 1)] = if s == 4 { f32::NAN } else { f32::NEG_INFINITY };
        pl[pl_at(&c.partial_lse, s, 0, 2, 0)] = if s == 0 { f32::INFINITY } else { 0.5 };
    }
    let po: Vec<f32> = po.iter().map(|x| if x.is_nan() { 0.0 } else { *x }).collect();
    let want = merge_states_reference(&shape, &po, &pl).unwrap();
    for (b, t, h) in [(0, 0, 0), (0, 1, 1), (0, 2, 0)] {
        assert!(want.lse[lse_at(&c.lse, b, t, h)].is_nan(), "reference row ({b}, {t}, {h})");
    }
    let (out, lse) = sim.merge_states::<f32>(&shape, &po, &pl, &c).unwrap();
    for (b, t, h) in [(0, 0, 0), (0, 1, 1), (0, 2, 0)] {
        assert!(lse[lse_at(&c.lse, b, t, h)].is_nan(), "row ({b}, {t}, {h}): LSE {}", lse[lse_at(&c.lse, b, t, h)]);
        let at = row_at(&c.out, b, t, h);
        assert!(out[at..at + 64].iter().all(|x| x.is_nan()), "row ({b}, {t}, {h}): output not NaN");
    }
    check_merged("nan", MergeDtype::F32, &want, &out, &lse);
}

// ---- (c) the in-place form ----

/// The in-place merge of `v`/`lse` with `v_other`/`lse_other` (contiguous, or with padded
/// strides) on the simulator, against the host merge of the two states.
fn check_in_place<T: MergeElement + ptx_sim::Element>(sim: &SimBackend, rng: &mut Rng, dtype: DType, shape: &MergeShape, padded: bool) {
    let (b, t, h, d) = (shape.batch() as i64, shape.seq() as i64, shape.heads() as i64, shape.head_dim() as i64);
    let layouts = if padded {
        InPlaceLayouts {
            v: RowLayout { batch: t * h * (d + 4) + 8, seq: h * (d + 4), head: d + 4 },
            lse: LseLayout { batch: h * (t + 1) + 2, head: t + 1 },
            v_other: RowLayout { batch: d, seq: b * d, head: t * b * d },
            lse_other: LseLayout { batch: h * t, head: t },
        }
    } else {
        InPlaceLayouts::contiguous(shape)
    };
    let c = contiguous(shape);
    let du = shape.head_dim();
    // The two states contiguous (the reference's [2, B, seq, H, D] and [2, B, H, seq]).
    let mut po = vec![0f32; 2 * shape.out_len()];
    let mut pl = vec![0f32; 2 * shape.lse_len()];
    for (bi, ti, hi) in rows(shape) {
        for s in 0..2 {
            let at = po_at(&c.partial_out, s, bi, ti, hi);
            for x in &mut po[at..at + du] {
                *x = T::from_f32(rng.normal() as f32).to_f32();
            }
            // All four cases of -inf across the pair, and plain rows.
            let code = (bi + 2 * ti + 3 * hi + rng.below(5)) % 5;
            pl[pl_at(&c.partial_lse, s, bi, ti, hi)] = match (code, s) {
                (1, 0) | (2, 1) | (3, _) => f32::NEG_INFINITY,
                _ => (rng.normal() * 4.0) as f32,
            };
        }
    }
    let want = merge_states_reference(&MergeShape::new(2, shape.batch(), shape.seq(), shape.heads(), du).unwrap(), &po, &pl).unwrap();
    // Scatter into the layouts' buffers (gaps hold NaN: never read, never written).
    let size = |f: &dyn Fn(usize, usize, usize) -> usize, inner: usize| reach(rows(shape).map(|(bi, ti, hi)| f(bi, ti, hi)), inner);
    let l = &layouts;
    let mut v = vec![T::from_f32(f32::NAN); size(&|bi, ti, hi| row_at(&l.v, bi, ti, hi), du)];
    let mut vo = vec![T::from_f32(f32::NAN); size(&|bi, ti, hi| row_at(&l.v_other, bi, ti, hi), du)];
    let mut lse = vec![f32::NAN; size(&|bi, ti, hi| lse_at(&l.lse, bi, ti, hi), 1)];
    let mut lo = vec![f32::NAN; size(&|bi, ti, hi| lse_at(&l.lse_other, bi, ti, hi), 1)];
    for (bi, ti, hi) in rows(shape) {
        for k in 0..du {
            v[row_at(&l.v, bi, ti, hi) + k] = T::from_f32(po[po_at(&c.partial_out, 0, bi, ti, hi) + k]);
            vo[row_at(&l.v_other, bi, ti, hi) + k] = T::from_f32(po[po_at(&c.partial_out, 1, bi, ti, hi) + k]);
        }
        lse[lse_at(&l.lse, bi, ti, hi)] = pl[pl_at(&c.partial_lse, 0, bi, ti, hi)];
        lo[lse_at(&l.lse_other, bi, ti, hi)] = pl[pl_at(&c.partial_lse, 1, bi, ti, hi)];
    }
    let (v_new, lse_new) = sim.merge_state_in_place::<T>(shape, &v, &lse, &vo, &lo, &layouts).unwrap();
    let label = format!("in place {} {shape:?} padded {padded}", T::DTYPE.name());
    let mut out = vec![0f32; shape.out_len()];
    let mut lse_got = vec![0f32; shape.lse_len()];
    let mut touched = vec![false; v.len()];
    for (bi, ti, hi) in rows(shape) {
        for k in 0..du {
            let at = row_at(&l.v, bi, ti, hi) + k;
            out[row_at(&c.out, bi, ti, hi) + k] = v_new[at].to_f32();
            touched[at] = true;
        }
        lse_got[lse_at(&c.lse, bi, ti, hi)] = lse_new[lse_at(&l.lse, bi, ti, hi)];
    }
    assert!(v_new.iter().zip(&touched).all(|(x, &t)| t || x.to_f32().is_nan()), "{label}: a gap of v was written");
    for (i, (&got, &w)) in out.iter().zip(&want.out).enumerate() {
        let got = got as f64;
        let tol = if T::DTYPE == MergeDtype::F32 { 1e-5 * w.abs().max(1.0) } else { out_tolerance_at(dtype, w) };
        assert!((got - w).abs() <= tol, "{label}: v[{i}] = {got}, host merge {w}");
    }
    for (i, (&got, &w)) in lse_got.iter().zip(&want.lse).enumerate() {
        assert!(lse_close(got as f64, w, 1e-5), "{label}: lse[{i}] = {got}, host merge {w}");
    }
    // Both states empty: exactly 0 and -inf.
    for (bi, ti, hi) in rows(shape) {
        if want.lse[lse_at(&c.lse, bi, ti, hi)] == f64::NEG_INFINITY {
            let at = row_at(&l.v, bi, ti, hi);
            assert!(v_new[at..at + du].iter().all(|x| x.to_f32() == 0.0), "{label}: empty row not 0");
        }
    }
}

#[test]
fn in_place_merge_equals_the_host_merge() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7006);
    for (batch, seq, heads, head_dim) in [(2, 3, 4, 64), (1, 7, 2, 128), (3, 2, 1, 4), (1, 2, 3, 256)] {
        let shape = MergeShape::new(2, batch, seq, heads, head_dim).unwrap();
        for padded in [false, true] {
            check_in_place::<f32>(&sim, &mut rng, DType::F16, &shape, padded);
            check_in_place::<half::f16>(&sim, &mut rng, DType::F16, &shape, padded);
            check_in_place::<half::bf16>(&sim, &mut rng, DType::BF16, &shape, padded);
        }
    }
}

// ---- (d) validation ----

/// Aligned, disjoint fake device addresses (planning never dereferences them).
const PO: u64 = 0x1000_0000;
const PL: u64 = 0x2000_0000;
const OUT: u64 = 0x3000_0000;
const LSE: u64 = 0x4000_0000;

fn buffers(shape: &MergeShape) -> MergeBuffers {
    MergeBuffers {
        partial_out: DeviceBuffer { addr: PO, len: shape.partial_out_len() },
        partial_lse: DeviceBuffer { addr: PL, len: shape.partial_lse_len() },
        out: DeviceBuffer { addr: OUT, len: shape.out_len() },
        lse: Some(DeviceBuffer { addr: LSE, len: shape.lse_len() }),
        layouts: MergeLayouts::contiguous(shape),
    }
}

#[test]
fn shapes_are_validated() {
    assert!(matches!(MergeShape::new(0, 1, 1, 1, 64), Err(Error::ZeroDimension { dim: "states" })));
    assert!(matches!(MergeShape::new(2, 0, 1, 1, 64), Err(Error::ZeroDimension { dim: "batch" })));
    assert!(matches!(MergeShape::new(2, 1, 0, 1, 64), Err(Error::ZeroDimension { dim: "seq" })));
    assert!(matches!(MergeShape::new(2, 1, 1, 0, 64), Err(Error::ZeroDimension { dim: "heads" })));
    assert!(matches!(MergeShape::new(2, 1, 1, 1, 0), Err(Error::ZeroDimension { dim: "head_dim" })));
    for head_dim in [1, 2, 6, 66, 130] {
        assert!(matches!(MergeShape::new(2, 1, 1, 1, head_dim), Err(Error::InvalidParameter { name: "head_dim", .. })), "head_dim {head_dim}");
    }
    assert!(matches!(MergeShape::new(2, 1, 1 << 31, 1, 64), Err(Error::DimensionTooLarge { dim: "seq", .. })));
    assert!(matches!(MergeShape::new(usize::MAX, 1, 1, 1, 64), Err(Error::DimensionTooLarge { dim: "states", .. })));
    // Every size fits i32 but the element count does not fit i64.
    let big = i32::MAX as usize;
    assert!(matches!(MergeShape::new(big, big, big, 1, 4), Err(Error::DimensionTooLarge { .. })));
    // Fits, but a grid of more than 2^31 - 1 blocks is refused at planning, not launched.
    let huge = MergeShape::new(1, big, 2, 4, 4).unwrap();
    // Addresses far enough apart for the tensors' spans (2^38 bytes) not to overlap.
    let bufs = MergeBuffers {
        partial_out: DeviceBuffer { addr: 1 << 40, len: usize::MAX },
        partial_lse: DeviceBuffer { addr: 2 << 40, len: usize::MAX },
        out: DeviceBuffer { addr: 3 << 40, len: usize::MAX },
        lse: None,
        layouts: MergeLayouts::contiguous(&huge),
    };
    assert!(matches!(plan(&huge, MergeDtype::F32, &bufs), Err(Error::InvalidParameter { name: "grid", .. })));
}

#[test]
fn buffers_strides_alignment_and_overlap_are_validated() {
    let shape = MergeShape::new(3, 2, 5, 4, 64).unwrap();
    assert!(plan(&shape, MergeDtype::F32, &buffers(&shape)).is_ok());
    assert!(plan(&shape, DType::BF16, &buffers(&shape)).is_ok(), "an attention dtype is accepted too");
    let expect = |bufs: MergeBuffers, dtype: MergeDtype, check: &dyn Fn(&Error) -> bool, what: &str| {
        let err = plan(&shape, dtype, &bufs).expect_err(what);
        assert!(check(&err), "{what}: {err}");
    };
    let too_small = |name: &'static str| move |e: &Error| matches!(e, Error::BufferTooSmall { tensor, .. } if *tensor == name);
    let strides = |name: &'static str| move |e: &Error| matches!(e, Error::InvalidStrides { tensor, .. } if *tensor == name);
    let param = |name: &'static str| move |e: &Error| matches!(e, Error::InvalidParameter { name: n, .. } if *n == name);

    let mut b = buffers(&shape);
    b.partial_out.len -= 1;
    expect(b, MergeDtype::F32, &too_small("partial_out"), "partial_out one short");
    let mut b = buffers(&shape);
    b.partial_lse.len -= 1;
    expect(b, MergeDtype::F32, &too_small("partial_lse"), "partial_lse one short");
    let mut b = buffers(&shape);
    b.out.len -= 1;
    expect(b, MergeDtype::F16, &too_small("out"), "out one short");
    let mut b = buffers(&shape);
    b.lse = Some(DeviceBuffer { addr: LSE, len: shape.lse_len() - 1 });
    expect(b, MergeDtype::F16, &too_small("lse"), "lse one short");
    // Strides reaching past the buffer.
    let mut b = buffers(&shape);
    b.layouts.out.head += 4;
    expect(b, MergeDtype::F32, &too_small("out"), "out head stride past the end");
    let mut b = buffers(&shape);
    b.layouts.partial_lse.head += 1;
    expect(b, MergeDtype::F32, &too_small("partial_lse"), "partial_lse head stride past the end");
    // Negative, huge and misaligned strides.
    for (stride, want) in [(-64i64, "negative"), (i64::MAX, "huge"), (i64::MAX / 3, "huge"), (66, "misaligned")] {
        let mut b = buffers(&shape);
        b.layouts.partial_out.seq = stride;
        expect(b, MergeDtype::F32, &strides("partial_out"), &format!("partial_out seq stride {stride} ({want})"));
    }
    let mut b = buffers(&shape);
    b.layouts.lse.batch = -1;
    expect(b, MergeDtype::F32, &strides("lse"), "negative lse stride");
    let mut b = buffers(&shape);
    b.layouts.out.seq = 258;
    expect(b, MergeDtype::BF16, &strides("out"), "out stride not a multiple of 4");
    // Output rows that overlap each other (two heads at one address).
    let mut b = buffers(&shape);
    b.layouts.out.head = 0;
    expect(b, MergeDtype::F32, &strides("out"), "out heads overlap");
    let mut b = buffers(&shape);
    b.layouts.lse.head = 1;
    expect(b, MergeDtype::F32, &strides("lse"), "lse heads overlap");
    // Strides of a dimension of extent 1 are never stepped: anything goes.
    let one = MergeShape::new(1, 1, 5, 4, 64).unwrap();
    let mut b = buffers(&one);
    b.layouts.partial_out.state = -7;
    b.layouts.out.batch = i64::MIN;
    b.layouts.lse.batch = i64::MAX;
    assert!(plan(&one, MergeDtype::F32, &b).is_ok());
    // Addresses: null, misaligned for the kernels' vector accesses.
    let mut b = buffers(&shape);
    b.partial_out.addr = 0;
    expect(b, MergeDtype::F32, &param("partial_out"), "null partial_out");
    let mut b = buffers(&shape);
    b.partial_out.addr = PO + 8;
    expect(b, MergeDtype::F32, &param("partial_out"), "partial_out 8-byte aligned");
    let mut b = buffers(&shape);
    b.out.addr = OUT + 8;
    assert!(plan(&shape, MergeDtype::F16, &b).is_ok(), "f16 rows need 8 bytes");
    expect(b, MergeDtype::F32, &param("out"), "f32 out 8-byte aligned");
    let mut b = buffers(&shape);
    b.out.addr = OUT + 4;
    expect(b, MergeDtype::BF16, &param("out"), "bf16 out 4-byte aligned");
    let mut b = buffers(&shape);
    b.lse = Some(DeviceBuffer { addr: LSE + 2, len: shape.lse_len() });
    expect(b, MergeDtype::F32, &param("lse"), "lse 2-byte aligned");
    // Outputs aliasing inputs or each other.
    let mut b = buffers(&shape);
    b.out.addr = PO;
    expect(b, MergeDtype::F32, &param("out"), "out aliases partial_out");
    let mut b = buffers(&shape);
    b.lse = Some(DeviceBuffer { addr: PL + 64, len: shape.lse_len() });
    expect(b, MergeDtype::F32, &param("lse"), "lse aliases partial_lse");
    let mut b = buffers(&shape);
    b.lse = Some(DeviceBuffer { addr: OUT + 16, len: shape.lse_len() });
    expect(b, MergeDtype::F32, &param("out"), "lse inside out");
    // Partial inputs may share a buffer: both are only read.
    let mut b = buffers(&shape);
    b.partial_lse = DeviceBuffer { addr: PO, len: shape.partial_out_len() };
    assert!(plan(&shape, MergeDtype::F32, &b).is_ok());
    // No LSE wanted.
    let mut b = buffers(&shape);
    b.lse = None;
    assert!(plan(&shape, MergeDtype::F32, &b).is_ok());
}

#[test]
fn in_place_arguments_are_validated() {
    let shape = MergeShape::new(2, 2, 3, 4, 64).unwrap();
    let bufs = |shape: &MergeShape| InPlaceBuffers {
        v: DeviceBuffer { addr: PO, len: shape.out_len() },
        lse: DeviceBuffer { addr: PL, len: shape.lse_len() },
        v_other: DeviceBuffer { addr: OUT, len: shape.out_len() },
        lse_other: DeviceBuffer { addr: LSE, len: shape.lse_len() },
        layouts: InPlaceLayouts::contiguous(shape),
    };
    assert!(plan_in_place(&shape, MergeDtype::F16, &bufs(&shape)).is_ok());
    let three = MergeShape::new(3, 2, 3, 4, 64).unwrap();
    assert!(matches!(plan_in_place(&three, MergeDtype::F16, &bufs(&three)), Err(Error::InvalidParameter { name: "states", .. })));
    let mut b = bufs(&shape);
    b.v_other.len -= 1;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::BufferTooSmall { tensor: "v_other", .. })));
    let mut b = bufs(&shape);
    b.lse_other.len -= 1;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::BufferTooSmall { tensor: "lse_other", .. })));
    let mut b = bufs(&shape);
    b.v.len -= 1;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::BufferTooSmall { tensor: "v", .. })));
    let mut b = bufs(&shape);
    b.v_other.addr = PO;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::InvalidParameter { name: "v", .. })));
    let mut b = bufs(&shape);
    b.lse.addr = PO + 64;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F32, &b), Err(Error::InvalidParameter { name: "v", .. } | Error::InvalidParameter { name: "lse", .. })));
    let mut b = bufs(&shape);
    b.layouts.v.seq = 4;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::InvalidStrides { tensor: "v", .. })));
    let mut b = bufs(&shape);
    b.layouts.lse_other.head = -3;
    assert!(matches!(plan_in_place(&shape, MergeDtype::F16, &b), Err(Error::InvalidStrides { tensor: "lse_other", .. })));
    // v_other and lse_other are only read: they may overlap each other.
    let mut b = bufs(&shape);
    b.lse_other.addr = OUT;
    assert!(plan_in_place(&shape, MergeDtype::F32, &b).is_ok());
}

/// Strides and lengths at random (negative, zero, huge, misaligned, short by a little): the
/// planner never panics, and whatever it accepts runs on the simulator, whose memcheck
/// faults on any access outside the buffers, with buffers of exactly the accepted lengths.
#[test]
fn whatever_the_planner_accepts_runs_in_bounds() {
    let Some(sim) = sim_backend_or_skip() else { return };
    let mut rng = Rng::new(7007);
    let mut launched = 0;
    for case in 0..300 {
        let shape = MergeShape::new(rng.range(1, 5), rng.range(1, 3), rng.range(1, 4), rng.range(1, 3), 4 * rng.range(1, 20)).unwrap();
        let c = MergeLayouts::contiguous(&shape);
        // Each stride is changed one time in four, so that about a third of the draws are
        // valid layouts that must run, and the rest test the refusals.
        let mut perturb = |s: i64| -> i64 {
            match rng.below(28) {
                0 => -s,
                1 => 0,
                2 => i64::MAX - rng.below(3) as i64,
                3 => s + 1,
                4 => s * 2 + 4 * rng.below(3) as i64,
                5 => s / 2,
                _ => s,
            }
        };
        let layouts = MergeLayouts {
            partial_out: PartialOutLayout { state: perturb(c.partial_out.state), batch: perturb(c.partial_out.batch), seq: perturb(c.partial_out.seq), head: perturb(c.partial_out.head) },
            partial_lse: PartialLseLayout { state: perturb(c.partial_lse.state), batch: perturb(c.partial_lse.batch), head: perturb(c.partial_lse.head) },
            out: RowLayout { batch: perturb(c.out.batch), seq: perturb(c.out.seq), head: perturb(c.out.head) },
            lse: LseLayout { batch: perturb(c.lse.batch), head: perturb(c.lse.head) },
        };
        let mut len = |n: usize| if rng.chance(0.7) { n } else { (n * rng.range(1, 3)).saturating_sub(rng.below(3)).max(1) };
        let (po_len, pl_len, out_len, lse_len) = (len(shape.partial_out_len()), len(shape.partial_lse_len()), len(shape.out_len()), len(shape.lse_len()));
        let po: Vec<f32> = (0..po_len).map(|_| rng.normal() as f32).collect();
        let pl: Vec<f32> = (0..pl_len).map(|_| if rng.chance(0.2) { f32::NEG_INFINITY } else { rng.normal() as f32 }).collect();
        let bufs = MergeBuffers {
            partial_out: sim.upload(&po).unwrap(),
            partial_lse: sim.upload(&pl).unwrap(),
            out: sim.alloc::<half::f16>(out_len).unwrap(),
            lse: Some(sim.alloc::<f32>(lse_len).unwrap()),
            layouts,
        };
        match plan(&shape, MergeDtype::F16, &bufs) {
            Ok(p) => {
                sim.launch(&p, &LaunchOptions::default()).unwrap_or_else(|e| panic!("case {case}: accepted {shape:?} {layouts:?} but: {e}"));
                launched += 1;
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        // The in-place form over the same draws.
        let ip = InPlaceLayouts { v: layouts.out, lse: layouts.lse, v_other: layouts.out, lse_other: layouts.lse };
        let pair = MergeShape::new(2, shape.batch(), shape.seq(), shape.heads(), shape.head_dim()).unwrap();
        let ibufs = InPlaceBuffers {
            v: sim.alloc::<f32>(out_len).unwrap(),
            lse: sim.alloc::<f32>(lse_len).unwrap(),
            v_other: sim.upload(&po[..out_len.min(po_len)]).unwrap(),
            lse_other: sim.upload(&pl[..lse_len.min(pl_len)]).unwrap(),
            layouts: ip,
        };
        if let Ok(p) = plan_in_place(&pair, MergeDtype::F32, &ibufs) {
            sim.launch(&p, &LaunchOptions::default()).unwrap_or_else(|e| panic!("case {case}: accepted in place {ip:?} but: {e}"));
            launched += 1;
        }
    }
    assert!(launched >= 60, "only {launched} fuzzed launches were accepted");
}
