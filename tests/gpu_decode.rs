//! Split-KV decode on a real GPU through cudarc (`cuda::decode`: the split kernel and the
//! merge on the caller's stream and workspace), against the varlen CPU reference: every key
//! source, contiguous caches, q_len 1 and 4. Skips with the reason when no GPU is usable (the
//! usual case here); tests/decode_sim.rs runs the same kernels on the simulator.

mod attention_cases;
mod common;
mod decode_cases;

use common::Rng;
use cudarc::driver::{CudaSlice, DevicePtrMut};
use decode_cases::{compare, random_source, reference, Problem};
use sparse_attn::cuda::{decode, AttnTensors, DecodeTensors};
use sparse_attn::plan::decode::{workspace_len, DecodeOptions, DecodeSource};
use sparse_attn::plan::AttnLayouts;

#[test]
fn gpu_decode_matches_the_reference_for_every_source() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    for (case, (kind, q_len)) in [(0, 1), (1, 4), (2, 1), (0, 4)].into_iter().enumerate() {
        let p = Problem::<half::bf16>::new(vec![q_len; 2], vec![700, 65], 1024, (8, 2), 128, case as u64);
        let source = random_source(&mut Rng::new(case as u64), &p, kind, 32);
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count: ctx.attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).unwrap() as usize };
        let shape = p.shape();
        let up_i32 = |x: &[i32]| stream.clone_htod(&x[..x.len().max(1)].to_vec()).unwrap();
        let device_source = match &source {
            DecodeSource::Dense => DecodeSource::Dense,
            DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => {
                DecodeSource::BlockSparse { block_size: *block_size, max_blocks: *max_blocks, block_count: up_i32(block_count), block_index: up_i32(block_index) }
            }
            DecodeSource::TopK { topk, indices } => DecodeSource::TopK { topk: *topk, indices: up_i32(indices) },
        };
        let (q, k, v) = (stream.clone_htod(&p.q).unwrap(), stream.clone_htod(&p.k).unwrap(), stream.clone_htod(&p.v).unwrap());
        let mut out: CudaSlice<half::bf16> = stream.alloc_zeros(p.q.len()).unwrap();
        let mut lse: CudaSlice<f32> = stream.alloc_zeros(shape.lse_len()).unwrap();
        let mut workspace: CudaSlice<f32> = stream.alloc_zeros(workspace_len(&shape, None, &opts, &source).unwrap()).unwrap();
        let seqlens = up_i32(&p.seqlens_k);
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse;
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out, lse: Some(lse_ref), sinks: None, layouts: AttnLayouts::contiguous(&shape) };
        let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: Some(&p.seqlens_k), pages: None, packed: None };
        decode(&stream, &shape, &opts, tensors, meta, &mut workspace, &device_source).unwrap();
        let (out, lse) = (stream.clone_dtoh(&out).unwrap(), stream.clone_dtoh(&lse).unwrap());
        stream.synchronize().unwrap();
        compare(&format!("case {case}"), &p, false, &out, &lse, &reference(&p, true, &source));
    }
}
