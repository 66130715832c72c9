//! The lightning indexer and the chunked selection on a real GPU, through cudarc
//! (`cuda::indexer_topk`, `cuda::topk_select_rows`), against the f64 host reference, as
//! tests/indexer_sim.rs checks them on the simulator. Skips with the reason when no GPU is
//! usable (the usual case here).

mod common;
mod indexer_cases;

use common::Rng;
use cudarc::driver::CudaSlice;
use half::bf16;
use indexer_cases::{compare, inputs};
use sparse_attn::cuda::{indexer_topk, topk_select_rows, IndexerLayoutTensors, IndexerTensors, VarlenTensors};
use sparse_attn::pattern::indexer::{indexer_scores_host, indexer_topk_host, HostLayout, IndexerDims};
use sparse_attn::pattern::topk_select::{select_topk_host, SelectDims};
use sparse_attn::plan::indexer::workspace_len;
use sparse_attn::Varlen;

#[test]
fn indexer_topk_equals_the_host() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(41);
    let varlen = Varlen::new(vec![0, 10, 30, 37], vec![0, 1000, 1000 + 333, 1000 + 333 + 4097]).unwrap();
    // (dims, varlen, top_k, causal, chunk rows); small enough for the f64 host reference.
    let cases = [
        (IndexerDims { batch: 1, seq_q: 40, seq_k: 5000, groups: 1, heads: 64, head_dim: 128 }, false, 2048, true, 7),
        (IndexerDims { batch: 1, seq_q: 16, seq_k: 20_000, groups: 4, heads: 8, head_dim: 64 }, false, 512, false, 5),
        (IndexerDims { batch: 3, seq_q: 20, seq_k: 4097, groups: 2, heads: 16, head_dim: 128 }, true, 256, true, 9),
    ];
    for (dims, is_varlen, top_k, causal, chunk) in cases {
        let layout = if is_varlen { HostLayout::Varlen(&varlen) } else { HostLayout::Contiguous };
        let (rows, key_rows) = if is_varlen { (varlen.total_q(), varlen.total_k()) } else { (dims.batch * dims.seq_q, dims.batch * dims.seq_k) };
        let x = inputs::<bf16, f32>(&mut rng, &dims, rows, key_rows, |v| v);
        let (q, k, w) = (stream.clone_htod(&x.q).unwrap(), stream.clone_htod(&x.k).unwrap(), stream.clone_htod(&x.w).unwrap());
        let mut workspace: CudaSlice<f32> = stream.alloc_zeros(workspace_len(&dims, chunk).unwrap()).unwrap();
        let mut indices: CudaSlice<i32> = stream.alloc_zeros(rows * dims.groups * top_k).unwrap();
        let (cu_q, cu_k) = (stream.clone_htod(varlen.cu_seqlens_q()).unwrap(), stream.clone_htod(varlen.cu_seqlens_k()).unwrap());
        let device_layout = if is_varlen {
            IndexerLayoutTensors::Varlen(VarlenTensors { cu_seqlens_q: &cu_q, cu_seqlens_k: &cu_k, total_q: rows, total_k: key_rows, host: Some(&varlen) })
        } else {
            IndexerLayoutTensors::Contiguous
        };
        let tensors = IndexerTensors { q: &q, k: &k, w: &w, workspace: &mut workspace, indices: &mut indices };
        indexer_topk::<bf16, f32, _, _, _, _, _>(&stream, &dims, device_layout, top_k, causal, tensors).unwrap();
        let got: Vec<i32> = stream.clone_dtoh(&indices).unwrap();
        stream.synchronize().unwrap();
        let scores = indexer_scores_host(&x.q, &x.k, &x.w, &dims, layout, causal).unwrap();
        let want = indexer_topk_host(&x.q, &x.k, &x.w, &dims, layout, top_k, causal).unwrap();
        compare(&format!("{dims:?}"), &got, &scores, &dims, layout, top_k, causal, &want);
    }
}

#[test]
fn chunked_selection_equals_the_host() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let mut rng = Rng::new(42);
    let dims = SelectDims { batch: 2, seq_q: 100, heads: 2, seq_k: 70_000 };
    let rows = dims.batch * dims.seq_q;
    let scores: Vec<f32> = (0..rows * dims.heads * dims.seq_k).map(|_| rng.normal() as f32).collect();
    let want = select_topk_host(&scores, &dims, 2048, true).unwrap();
    let mut indices: CudaSlice<i32> = stream.alloc_zeros(rows * dims.heads * 2048).unwrap();
    for first in (0..rows).step_by(33) {
        let end = (first + 33).min(rows);
        let chunk = stream.clone_htod(&scores[first * dims.heads * dims.seq_k..end * dims.heads * dims.seq_k]).unwrap();
        topk_select_rows(&stream, &dims, first..end, 1, 2048, true, &chunk, &mut indices).unwrap();
    }
    let got: Vec<i32> = stream.clone_dtoh(&indices).unwrap();
    stream.synchronize().unwrap();
    assert_eq!(got, want);
}
