//! GPU benchmark of split-KV decode (`cuda::decode`): one new token per sequence against a
//! long cache, dense and block-sparse (SeerAttention-R / Quest form, 64-token blocks) at kept
//! fractions of 100%, 10% and 3%, against the prefill kernel launched on the same problem
//! (`cuda::attention` with seq_q = 1: what an engine without a decode kernel runs).
//!
//! Shapes: batch 1, 8 and 32; 32K and 128K cached keys; GQA 32:8 and 64:8; head_dim 128, bf16.
//! `SPARSE_ATTN_DECODE_BENCH_QUICK=1` keeps batch 1 and 32K only.
//!
//! Timing as the attention bench: each criterion iteration is one decode step (the split
//! launch and the merge), a sample enqueues its iterations back to back on one stream and
//! synchronises once (`iter_custom`). Without a usable GPU it prints `skipped: no GPU:
//! <reason>` and exits 0. The simulator's work counts for the same comparison come from
//! `cargo run --release --features sim --example decode_report`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use cudarc::driver::{sys::CUdevice_attribute, CudaSlice, CudaStream, DevicePtrMut};
use half::bf16;
use sparse_attn::cuda::{attention, decode, gpu_context, AttnTensors, DecodeTensors};
use sparse_attn::plan::decode::{workspace_len, DecodeOptions, DecodeSource};
use sparse_attn::plan::AttnLayouts;
use sparse_attn::{AttnOptions, AttnShape, Source};

const HEAD_DIM: usize = 128;
const BLOCK: usize = 64;

/// The block list of a kept fraction: every `1 / kept`-th block, the last (the new token's)
/// always kept, per (sequence, kv head).
fn blocks(stream: &Arc<CudaStream>, batch: usize, heads_kv: usize, seq_k: usize, kept: f64) -> DecodeSource<CudaSlice<i32>> {
    let n = seq_k / BLOCK;
    let mut ids: Vec<i32> = (0..n).filter(|&i| (i as f64 * kept).floor() != ((i + 1) as f64 * kept).floor()).map(|i| i as i32).collect();
    if ids.last() != Some(&(n as i32 - 1)) {
        ids.push(n as i32 - 1);
    }
    let count = vec![ids.len() as i32; batch * heads_kv];
    let mut index = Vec::with_capacity(batch * heads_kv * n);
    for _ in 0..batch * heads_kv {
        let mut row = ids.clone();
        row.resize(n, -1);
        index.extend(row);
    }
    DecodeSource::BlockSparse {
        block_size: BLOCK,
        max_blocks: n,
        block_count: stream.clone_htod(&count).unwrap(),
        block_index: stream.clone_htod(&index).unwrap(),
    }
}

fn main() {
    let ctx = match gpu_context(0) {
        Ok(ctx) => ctx,
        Err(reason) => {
            println!("skipped: no GPU: {reason}");
            return;
        }
    };
    let stream = ctx.default_stream();
    let sms = ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).unwrap() as usize;
    let quick = std::env::var("SPARSE_ATTN_DECODE_BENCH_QUICK").is_ok_and(|v| v == "1");
    let (batches, seqs): (&[usize], &[usize]) = if quick { (&[1], &[32 * 1024]) } else { (&[1, 8, 32], &[32 * 1024, 128 * 1024]) };
    let mut c = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for &batch in batches {
        for &seq_k in seqs {
            for (hq, hkv) in [(32, 8), (64, 8)] {
                let shape = AttnShape::new(batch, 1, seq_k, hq, hkv, HEAD_DIM).unwrap();
                let fill = |n: usize| stream.clone_htod(&vec![bf16::from_f32(0.01); n]).unwrap();
                let (q, k, v) = (fill(batch * hq * HEAD_DIM), fill(batch * seq_k * hkv * HEAD_DIM), fill(batch * seq_k * hkv * HEAD_DIM));
                let mut out: CudaSlice<bf16> = stream.alloc_zeros(batch * hq * HEAD_DIM).unwrap();
                let seqlens = stream.clone_htod(&vec![seq_k as i32; batch]).unwrap();
                let mut group = c.benchmark_group(format!("decode_b{batch}_k{}_h{hq}x{hkv}", seq_k / 1024));
                group.sampling_mode(SamplingMode::Flat);
                let layouts = AttnLayouts::contiguous(&shape);
                // The prefill kernel on the same problem.
                group.bench_function("prefill_kernel_dense", |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out, lse: None, sinks: None, layouts };
                            attention(&stream, &shape, &AttnOptions::causal(), tensors, &Source::<CudaSlice<i32>>::Dense).unwrap();
                        }
                        stream.synchronize().unwrap();
                        start.elapsed()
                    })
                });
                for kept in [1.0, 0.1, 0.03] {
                    let source = if kept >= 1.0 { DecodeSource::Dense } else { blocks(&stream, batch, hkv, seq_k, kept) };
                    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: false, softcap: None, window_left: None, splits: None, sm_count: sms };
                    let mut workspace: CudaSlice<f32> = stream.alloc_zeros(workspace_len(&shape, None, &opts, &source).unwrap()).unwrap();
                    group.bench_function(format!("decode_{}_{}pct", source.name(), (kept * 100.0).round()), |b| {
                        b.iter_custom(|iters| {
                            let start = Instant::now();
                            for _ in 0..iters {
                                let out_ref: &mut dyn DevicePtrMut<bf16> = &mut out;
                                let tensors = AttnTensors { q: &q, k: &k, v: &v, out: out_ref, lse: None, sinks: None, layouts };
                                let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: None, pages: None, packed: None };
                                decode(&stream, &shape, &opts, tensors, meta, &mut workspace, &source).unwrap();
                            }
                            stream.synchronize().unwrap();
                            start.elapsed()
                        })
                    });
                }
                group.finish();
            }
        }
    }
    c.final_summary();
}
