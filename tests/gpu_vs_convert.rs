//! The vertical-slash conversion kernel on a real GPU, through cudarc, against the CPU
//! converter. Skips with the reason when no GPU is usable (the usual case here); the
//! simulator runs the same kernel in ptx-sim's tests.

mod common;

use common::Rng;
use sparse_attn::cuda::{convert_on_gpu, gpu_context};
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::AttnShape;

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
        let heads = if rng.chance(0.5) { shape.heads_q() } else { shape.heads_kv() };
        let with_slash_zero = rng.chance(0.5);
        let vs = common::random_vertical_slash(&mut rng, &shape, heads, 40, with_slash_zero);
        let cpu = convert(&vs, &shape).unwrap();
        let gpu = convert_on_gpu(&stream, &vs, &shape).unwrap();
        assert_eq!(gpu, cpu, "{shape:?}");
    }
}
