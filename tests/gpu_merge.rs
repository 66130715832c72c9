//! The merge kernels on a real GPU, through cudarc (`cuda::merge_states`,
//! `cuda::merge_state_in_place`), against the f64 host merge. Skips with the reason when no
//! GPU is usable (the usual case here); tests/merge_sim.rs runs the same kernels on the
//! simulator.

mod common;

use common::Rng;
use cudarc::driver::{CudaSlice, DevicePtrMut};
use sparse_attn::cuda::{merge_state_in_place, merge_states};
use sparse_attn::plan::merge::{InPlaceLayouts, MergeElement, MergeLayouts, MergeShape};
use sparse_attn::reference::merge_states_reference;

/// Random states: LSEs normal * 5, one in five -inf (its row NaN, which must not be read).
fn states(rng: &mut Rng, shape: &MergeShape) -> (Vec<f32>, Vec<f32>) {
    let d = shape.head_dim();
    let mut po: Vec<f32> = (0..shape.partial_out_len()).map(|_| rng.normal() as f32).collect();
    let pl: Vec<f32> = (0..shape.partial_lse_len()).map(|_| if rng.chance(0.2) { f32::NEG_INFINITY } else { (rng.normal() * 5.0) as f32 }).collect();
    let (rows, lse_len) = (shape.out_len() / d, shape.lse_len());
    let (t, h) = (shape.seq(), shape.heads());
    for s in 0..shape.states() {
        for row in 0..rows {
            let (hi, bt) = (row % h, row / h);
            let (ti, bi) = (bt % t, bt / t);
            if pl[s * lse_len + (bi * h + hi) * t + ti] == f32::NEG_INFINITY {
                po[(s * rows + row) * d..(s * rows + row + 1) * d].fill(f32::NAN);
            }
        }
    }
    (po, pl)
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan()) || (got - want).abs() <= tol * want.abs().max(1.0)
}

fn run<T: MergeElement + cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(tol: f64) {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(31);
    for (states_n, head_dim) in [(1, 64), (3, 96), (16, 128), (40, 256), (5, 4)] {
        let shape = MergeShape::new(states_n, 2, 5, 4, head_dim).unwrap();
        let (po, pl) = states(&mut rng, &shape);
        let want = merge_states_reference(&shape, &po, &pl).unwrap();
        let po_d = stream.clone_htod(&po).unwrap();
        let pl_d = stream.clone_htod(&pl).unwrap();
        let mut out: CudaSlice<T> = stream.alloc_zeros(shape.out_len()).unwrap();
        let mut lse: CudaSlice<f32> = stream.alloc_zeros(shape.lse_len()).unwrap();
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse;
        merge_states(&stream, &shape, &po_d, &pl_d, &mut out, Some(lse_ref), &MergeLayouts::contiguous(&shape)).unwrap();
        let out: Vec<T> = stream.clone_dtoh(&out).unwrap();
        let lse: Vec<f32> = stream.clone_dtoh(&lse).unwrap();
        stream.synchronize().unwrap();
        for (i, (got, &w)) in out.iter().zip(&want.out).enumerate() {
            assert!(close(got.to_f32() as f64, w, tol), "{shape:?} {}: out[{i}] = {}, host {w}", T::DTYPE.name(), got.to_f32());
        }
        for (i, (&got, &w)) in lse.iter().zip(&want.lse).enumerate() {
            assert!(close(got as f64, w, 1e-5), "{shape:?}: lse[{i}] = {got}, host {w}");
        }

        // The in-place form on the first two states of the same data.
        let pair = MergeShape::new(2, 2, 5, 4, head_dim).unwrap();
        let (po2, pl2) = states(&mut rng, &pair);
        let po2: Vec<f32> = po2.iter().map(|&x| T::from_f32(x).to_f32()).collect();
        let want = merge_states_reference(&pair, &po2, &pl2).unwrap();
        let (n, m) = (pair.out_len(), pair.lse_len());
        let widen = |x: &[f32]| x.iter().map(|&v| T::from_f32(v)).collect::<Vec<T>>();
        let mut v = stream.clone_htod(&widen(&po2[..n])).unwrap();
        let vo = stream.clone_htod(&widen(&po2[n..])).unwrap();
        let mut l = stream.clone_htod(&pl2[..m]).unwrap();
        let lo = stream.clone_htod(&pl2[m..]).unwrap();
        merge_state_in_place(&stream, &pair, &mut v, &mut l, &vo, &lo, &InPlaceLayouts::contiguous(&pair)).unwrap();
        let v: Vec<T> = stream.clone_dtoh(&v).unwrap();
        let l: Vec<f32> = stream.clone_dtoh(&l).unwrap();
        stream.synchronize().unwrap();
        for (i, (got, &w)) in v.iter().zip(&want.out).enumerate() {
            assert!(close(got.to_f32() as f64, w, tol), "in place {}: v[{i}] = {}, host {w}", T::DTYPE.name(), got.to_f32());
        }
        for (i, (&got, &w)) in l.iter().zip(&want.lse).enumerate() {
            assert!(close(got as f64, w, 1e-5), "in place: lse[{i}] = {got}, host {w}");
        }
    }
}

#[test]
fn gpu_merge_f32_equals_the_host_merge() {
    run::<f32>(1e-5);
}

#[test]
fn gpu_merge_bf16_equals_the_host_merge() {
    // Half a bf16 ulp, relative, plus the f32 error.
    run::<half::bf16>(2f64.powi(-8));
}

#[test]
fn gpu_merge_f16_equals_the_host_merge() {
    run::<half::f16>(2f64.powi(-11));
}
