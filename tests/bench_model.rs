//! The GPU bench's model column (benches/common/model.rs): what it predicts, and where it
//! declines, from a calibration like the one perf_report writes.

#[allow(dead_code)]
#[path = "../benches/common/model.rs"]
mod model;

use model::core::{Calibration, FitRecord, Geometry, Linear, Work};
use model::{predict_with, Device, ModelInput};
use sparse_attn::pattern::Dense;
use sparse_attn::AttnShape;

/// A calibration whose dense kernel costs `per_cta` and `per_tile` of each resource.
fn calibration() -> Calibration {
    // Two geometries that pin per_cta = 1000 and per_tile = 10000 mma (and so on).
    let (a, b) = (Geometry { ctas: 1.0, tiles: 10.0 }, Geometry { ctas: 2.0, tiles: 30.0 });
    let work = |g: Geometry| Work([1e3 * g.ctas + 1e4 * g.tiles, 4e4 * g.tiles, 1.5e4 * g.tiles, 0.0]);
    let ours = Linear::fit((a, work(a)), (b, work(b)));
    Calibration { k: 1.5, fits: vec![FitRecord { head_dim: 128, causal: true, blocks: [2, 2], ours }] }
}

fn device(cc: (i32, i32)) -> Device {
    Device { name: "test".into(), compute_capability: cc, sm_count: 132, memory_bytes: 80 << 30 }
}

fn input<'a>(shape: &'a AttnShape, case: &'a str, kept: u64, device: Option<&'a Device>) -> ModelInput<'a> {
    ModelInput { case, shape, pattern: &Dense, causal: true, kept_elements: kept, dense_elements: 1000, flops: 0, device }
}

#[test]
fn the_model_scales_with_the_kept_share_and_declines_what_it_does_not_cover() {
    let cal = calibration();
    let s = AttnShape::new(1, 32768, 32768, 32, 8, 128).unwrap();
    let (h100, a100, other) = (device((9, 0)), device((8, 0)), device((8, 6)));
    let dense = predict_with(&input(&s, "dense", 1000, Some(&h100)), &cal).expect("dense is modelled");
    let sparse = predict_with(&input(&s, "block_sparse_10pct", 100, Some(&h100)), &cal).expect("block-sparse is modelled");
    assert!(dense > 0.0 && sparse > 0.0);
    // 10% of the tiles: at least 10% of dense (the per-CTA work stays), well below dense.
    assert!(sparse >= 0.1 * dense && sparse < 0.5 * dense, "dense {dense:e} s, 10% {sparse:e} s");
    // The A100 has fewer, slower SMs.
    assert!(predict_with(&input(&s, "dense", 1000, Some(&a100)), &cal).unwrap() > dense);
    // Not modelled: other kernels, other GPUs, no GPU, an uncalibrated mask.
    assert_eq!(predict_with(&input(&s, "topk_2048", 100, Some(&h100)), &cal), None);
    assert_eq!(predict_with(&input(&s, "vertical_slash_convert_h32", 0, Some(&h100)), &cal), None);
    assert_eq!(predict_with(&input(&s, "dense", 1000, Some(&other)), &cal), None);
    assert_eq!(predict_with(&input(&s, "dense", 1000, None), &cal), None);
    let mut non_causal = input(&s, "dense", 1000, Some(&h100));
    non_causal.causal = false;
    assert_eq!(predict_with(&non_causal, &cal), None);
}
