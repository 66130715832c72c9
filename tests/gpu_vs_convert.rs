//! The vertical-slash conversion kernel on a real GPU, through cudarc, against the CPU
//! converter. Skips with the reason when no GPU is usable (the usual case here); the
//! simulator runs the same kernel in ptx-sim's tests.

mod common;

use common::Rng;
use sparse_attn::cuda::convert_on_gpu;
use sparse_attn::pattern::vs_convert::convert;
use sparse_attn::AttnShape;

#[test]
fn gpu_conversion_equals_cpu_conversion() {
    let Some(ctx) = common::gpu_or_skip() else { return };
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

#[test]
fn gpu_varlen_conversion_reads_each_sequence_length_on_the_device() {
    use sparse_attn::cuda::{alloc_vs_index, download_vs_index, vs_convert_varlen, SeqLensTensors, VarlenTensors};
    use sparse_attn::pattern::vs_convert::{convert_varlen, index_dims};
    use sparse_attn::Varlen;
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(22);
    // Lengths 1, 63, 64, 65, an empty sequence and a long one, keys longer and shorter.
    let varlen = Varlen::new(vec![0, 1, 64, 128, 193, 193, 1193], vec![0, 70, 133, 197, 227, 232, 1232]).unwrap();
    let shape = AttnShape::new(6, 1000, 1000, 4, 2, 64).unwrap();
    let vs = common::random_vertical_slash(&mut rng, &shape, 2, 40, true);
    let cu_q = stream.clone_htod(varlen.cu_seqlens_q()).unwrap();
    let cu_k = stream.clone_htod(varlen.cu_seqlens_k()).unwrap();
    let vertical = stream.clone_htod(vs.vertical_indexes()).unwrap();
    let slash = stream.clone_htod(vs.slash_indexes()).unwrap();
    let mut out = alloc_vs_index(&stream, index_dims(&vs, &shape).unwrap()).unwrap();
    let lens = VarlenTensors { cu_seqlens_q: &cu_q, cu_seqlens_k: &cu_k, total_q: varlen.total_q(), total_k: varlen.total_k(), host: Some(&varlen) };
    vs_convert_varlen(&stream, &shape, SeqLensTensors::Varlen(lens), &vertical, &slash, &mut out).unwrap();
    let gpu = download_vs_index(&stream, &out).unwrap();
    assert_eq!(gpu, convert_varlen(&vs, &shape, &varlen).unwrap());
}
