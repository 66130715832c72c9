//! The vertical-slash conversion kernel on a real GPU, through cudarc, against the CPU
//! converter. Skips with the reason when no GPU is usable (the usual case here); the
//! simulator runs the same kernel in ptx-sim's tests.

mod common;

use common::Rng;
use sparse_attn::cuda::{convert_on_gpu, gpu_context};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::pattern::VerticalSlash;
use sparse_attn::AttnShape;

/// A random valid descriptor: `nnz_v` distinct ascending keys and `nnz_s` distinct
/// descending distances per head.
fn random_vs(rng: &mut Rng, shape: &AttnShape, heads: usize) -> VerticalSlash {
    let nnz_v = rng.range(1, shape.seq_k.min(40));
    let nnz_s = rng.range(1, shape.seq_k.min(40));
    let pick = |rng: &mut Rng, n: usize, descending: bool| {
        let mut all: Vec<i32> = (0..shape.seq_k as i32).collect();
        for i in 0..n {
            let j = i + rng.below(all.len() - i);
            all.swap(i, j);
        }
        let mut chosen = all[..n].to_vec();
        chosen.sort_unstable();
        if descending {
            chosen.reverse();
        }
        chosen
    };
    let rows = shape.batch * heads;
    let vertical = (0..rows).flat_map(|_| pick(rng, nnz_v, false)).collect();
    let slash = (0..rows).flat_map(|_| pick(rng, nnz_s, true)).collect();
    VerticalSlash::new(shape.batch, heads, nnz_v, nnz_s, vertical, slash).expect("valid random descriptor")
}

#[test]
fn gpu_conversion_equals_cpu_conversion() {
    let ctx = match gpu_context(0) {
        Ok(ctx) => ctx,
        Err(reason) => {
            println!("skipped: no GPU: {reason}");
            return;
        }
    };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(21);
    for _ in 0..50 {
        let seq_q = rng.range(1, 700);
        let seq_k = if rng.chance(0.5) { seq_q } else { rng.range(1, 700) };
        let shape = AttnShape::new(rng.range(1, 2), seq_q, seq_k, 4, rng.range(1, 2), 64).unwrap();
        let heads = if rng.chance(0.5) { shape.heads_q } else { shape.heads_kv };
        let vs = random_vs(&mut rng, &shape, heads);
        let cpu = convert(&vs, &shape).unwrap();
        let gpu = convert_on_gpu(&stream, &vs, &shape).unwrap();
        assert_eq!(gpu, cpu, "{shape:?}");
    }
}
