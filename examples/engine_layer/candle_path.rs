//! The same layer on candle tensors (feature `candle`): what an engine that holds its
//! activations and KV cache in candle writes. The calls are `sparse_attn::candle`'s, on the
//! tensors as the engine has them: q, k and v are `narrow` views of one fused QKV
//! projection, the cache is the engine's page pool with a block-table tensor, and the
//! index tensors are the ones the device built.
//!
//! Here the tensors are CPU tensors, so each call runs the crate's CPU forward (the f64
//! reference, rounded once to bf16): candle's CUDA device needs cuBLAS and the CUDA runtime,
//! which the simulated driver does not provide. With `candle-cuda` and CUDA tensors the
//! same calls launch the kernels on candle's stream, the views passed with their strides.
//! Each result is compared with the cudarc path's output of the same step, so what this
//! shows is that the candle wiring (layouts, block table, index tensors) attends exactly
//! the keys the device did.

use candle_core::{DType, Device, Tensor};
use half::bf16;
use sparse_attn::candle::{self as sc, DecodeCache, DecodeOptions, DecodeSource};
use sparse_attn::pattern::VerticalSlash;
use sparse_attn::{AttnOptions, AttnShape};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// The largest |a - b| over two bf16 outputs.
fn max_diff(a: &Tensor, b: &[bf16]) -> Res<f64> {
    let a: Vec<bf16> = a.flatten_all()?.to_vec1()?;
    Ok(a.iter().zip(b).map(|(x, y)| (x.to_f64() - y.to_f64()).abs()).fold(0.0, f64::max))
}

/// Prefill: q, k and v as head-range views of one fused `[1, P, heads_q + 2 heads_kv, D]`
/// projection (no copy), and MInference's vertical and slash indexes as tensors, converted
/// by the call. Returns the largest difference from the device's output.
pub fn prefill(shape: &AttnShape, (q, k, v): (&[bf16], &[bf16], &[bf16]), vs: &VerticalSlash, device_out: &[bf16]) -> Res<f64> {
    let (p, hq, hkv, d) = (shape.seq_q(), shape.heads_q(), shape.heads_kv(), shape.head_dim());
    let cpu = Device::Cpu;
    let fused = Tensor::cat(
        &[
            Tensor::from_slice(q, (1, p, hq, d), &cpu)?,
            Tensor::from_slice(k, (1, p, hkv, d), &cpu)?,
            Tensor::from_slice(v, (1, p, hkv, d), &cpu)?,
        ],
        2,
    )?;
    let (q, k, v) = (fused.narrow(2, 0, hq)?, fused.narrow(2, hq, hkv)?, fused.narrow(2, hq + hkv, hkv)?);
    let vertical = Tensor::from_slice(vs.vertical_indexes(), (1, vs.heads(), vs.nnz_v()), &cpu)?;
    let slash = Tensor::from_slice(vs.slash_indexes(), (1, vs.heads(), vs.nnz_s()), &cpu)?;
    let out = sc::vertical_slash(&q, &k, &v, &vertical, &slash, &AttnOptions::causal(), None)?;
    assert_eq!(out.dtype(), DType::BF16);
    max_diff(&out, device_out)
}

/// The engine's paged KV cache as candle tensors: the page pools `[num_pages, page_size,
/// heads_kv, D]` (downloaded from the device here; an engine's live on it) and the
/// sequence's block table `[1, max_pages]`.
pub struct CandleCache {
    k: Tensor,
    v: Tensor,
    block_table: Tensor,
}

impl CandleCache {
    pub fn new(k_pool: Vec<bf16>, v_pool: Vec<bf16>, table: &[i32], (page_size, heads_kv, head_dim): (usize, usize, usize)) -> Res<Self> {
        let cpu = Device::Cpu;
        let pages = k_pool.len() / (page_size * heads_kv * head_dim);
        Ok(Self {
            k: Tensor::from_vec(k_pool, (pages, page_size, heads_kv, head_dim), &cpu)?,
            v: Tensor::from_vec(v_pool, (pages, page_size, heads_kv, head_dim), &cpu)?,
            block_table: Tensor::from_slice(table, (1, table.len()), &cpu)?,
        })
    }

    /// One decode step: q `[1, 1, heads_q, D]` against the first `keys` tokens of the
    /// sequence, attending the device-chosen `indices` `[1, heads_kv, top_k]`. Returns the
    /// largest difference from the device's output.
    pub fn decode_step(&self, q: &[bf16], keys: usize, indices: &[i32], (heads_q, heads_kv, top_k): (usize, usize, usize), device_out: &[bf16]) -> Res<f64> {
        let cpu = Device::Cpu;
        let head_dim = q.len() / heads_q;
        let q = Tensor::from_slice(q, (1, 1, heads_q, head_dim), &cpu)?;
        let seqlens_k = Tensor::from_slice(&[keys as i32], 1, &cpu)?;
        let indices = Tensor::from_slice(indices, (1, heads_kv, top_k), &cpu)?;
        let cache = DecodeCache { k: &self.k, v: &self.v, seqlens_k: &seqlens_k, block_table: Some(&self.block_table) };
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: false, softcap: None, window_left: None, splits: None, sm_count: 0 };
        let out = sc::decode(&q, &cache, &DecodeSource::TopK { topk: top_k, indices: &indices }, &opts, None)?;
        max_diff(&out, device_out)
    }
}
