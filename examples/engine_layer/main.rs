//! One Llama-style GQA attention layer driven the way a Rust inference engine drives it,
//! through the public cudarc API (`sparse_attn::cuda`): a prompt is prefilled with
//! MInference's vertical-slash attention, its keys and values go into a paged KV cache, and
//! a few tokens are then decoded one at a time against that cache with DSA-style top-k
//! attention.
//!
//! What the engine does at each step, and the calls it maps to:
//!
//! 1. **Prefill** (a prompt of P tokens). The engine's projections give Q, K and V (here
//!    deterministic values: there is no model); it applies RoPE to Q and K at positions
//!    `0..P` (the host function [`rope`] below, before the upload: RoPE is the engine's
//!    kernel, not this crate's) and calls [`sparse_attn::cuda::minference_attention`], which
//!    estimates each kv head's vertical-slash pattern from the last 64 queries, converts it
//!    and runs the sparse attention on one stream in one caller workspace.
//! 2. **Cache write.** The prompt's K and V rows are copied device to device into the pages
//!    the engine's allocator handed this sequence (what vLLM's `reshape_and_cache` does):
//!    pages of [`PAGE_SIZE`] tokens, NHD `[num_pages, page_size, heads_kv, head_dim]`, listed
//!    out of order in the sequence's block table. `minference_attention` has no paged form,
//!    so the prefill reads the fresh contiguous K and V and the cache is written after it.
//! 3. **Decode** ([`DECODE_STEPS`] tokens, one per step). For the token at position `L`:
//!    RoPE at `L`; its K and V row written into cache slot `L` (token `L % page_size` of page
//!    `block_table[L / page_size]`); `seqlens_k = L + 1` written on the device; its keys
//!    chosen on the device by [`sparse_attn::cuda::indexer_topk`] over the paged cache (a
//!    stand-in for DSA's lightning indexer that takes the layer's own Q and K as the
//!    indexer's q and k, one key set per kv head); then [`sparse_attn::cuda::decode`] with
//!    `DecodeSource::TopK` over the paged cache. Every step makes the same calls on the same
//!    buffers and workspace (a decode plan depends on the cache's capacity, never on one
//!    step's length, which the kernels read on the device): nothing is allocated or read
//!    back per step, so an engine can capture a step in a CUDA graph.
//!
//! Every output is compared with the CPU reference: the prefill with the host
//! vertical-slash estimator and `reference::vertical_slash_attention`, each decode step with
//! `reference::topk_attention` over the whole sequence so far (the host's copy of K and V)
//! and the indices the device chose, downloaded; those indices are checked to be a top-k of
//! the host's indexer scores over the host's copy of the sequence, which is what shows that
//! the paged cache holds what was written. The example prints each max |error| and exits
//! non-zero if one is above bf16's attention tolerance or a selection is not a top-k.
//!
//! ```sh
//! cargo run --release --example engine_layer           # SPARSE_ATTN_DEVICE=auto
//! SPARSE_ATTN_DEVICE=sim cargo run --profile test --example engine_layer
//! ```
//! `SPARSE_ATTN_DEVICE` picks the device: `cuda` (a real GPU or an error), `sim` (the
//! simulated CUDA driver, ptx-sim-driver) or `auto` (the default: a GPU when one is usable).
//! On the simulator the prompt is short and each phase prints the simulator's work counts;
//! they are simulator counts, not GPU times.
//!
//! With the feature `candle` (`--features candle`), each phase also runs through
//! `sparse_attn::candle` on candle tensors ([`candle_path`]): q, k and v as views of one
//! fused projection, the page pool and block table as tensors, the device's index tensors.
//! They are CPU tensors (candle's CUDA device cannot run here), so those calls run the
//! crate's CPU forward, and each is compared with this path's device output.

#[cfg(feature = "candle")]
mod candle_path;

use std::process::ExitCode;
use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaSlice, CudaStream, CudaView};
use half::bf16;
use ptx_sim_driver::{DeviceChoice, Selected};
use sparse_attn::cuda::{decode, indexer_topk, minference_attention, AttnTensors, DecodeTensors, IndexerLayoutTensors, IndexerTensors, PagedTensors};
use sparse_attn::pattern::indexer::{indexer_scores_host, HostLayout, IndexerDims};
use sparse_attn::pattern::{estimate_vertical_slash, TopkTokens, VsEstimateConfig};
use sparse_attn::plan::decode::{DecodeOptions, DecodeSource};
use sparse_attn::plan::AttnLayouts;
use sparse_attn::reference::{topk_attention, vertical_slash_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, Bshd};

/// bf16 attention output tolerance (tests/attention_cases explains the bound), as in
/// examples/sparse_methods.rs.
const TOLERANCE: f64 = 1e-2;
/// Tokens per KV-cache page.
const PAGE_SIZE: usize = 16;
/// Tokens decoded after the prompt.
const DECODE_STEPS: usize = 4;
/// Keys each decode token attends per kv head.
const TOP_K: usize = 128;
/// Pages in the cache's pool beyond this sequence's.
const SPARE_PAGES: usize = 7;
/// Llama 2's RoPE base.
const ROPE_THETA: f32 = 10_000.0;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Deterministic unit-variance-ish activations standing in for a projection's output (a
/// hash, not a model).
fn activations(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let x = (i ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            1.7 * (((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        })
        .collect()
}

/// Llama's rotate-half RoPE on `x = [tokens, heads, head_dim]`, token `t` at position
/// `first_position + t`: each head's pair `(x[i], x[i + d/2])` turns by `position *
/// theta^(-2i/d)`. Computed in f32 and rounded once to bf16, as an engine stores Q and K.
fn rope(x: &[f32], first_position: usize, heads: usize, head_dim: usize) -> Vec<bf16> {
    let half = head_dim / 2;
    let mut out = vec![bf16::ZERO; x.len()];
    for (r, (row, dst)) in x.chunks_exact(head_dim).zip(out.chunks_exact_mut(head_dim)).enumerate() {
        let position = (first_position + r / heads) as f32;
        for i in 0..half {
            let angle = position * ROPE_THETA.powf(-2.0 * i as f32 / head_dim as f32);
            let (sin, cos) = angle.sin_cos();
            dst[i] = bf16::from_f32(row[i] * cos - row[i + half] * sin);
            dst[i + half] = bf16::from_f32(row[i] * sin + row[i + half] * cos);
        }
    }
    out
}

/// The new tokens' Q and K (RoPE applied) and V, `[tokens, heads, head_dim]` each, for
/// positions `first..first + tokens`; `seed` stands for the hidden states.
fn project(shape: &AttnShape, first: usize, tokens: usize, seed: u64) -> (Vec<bf16>, Vec<bf16>, Vec<bf16>) {
    let (hq, hkv, d) = (shape.heads_q(), shape.heads_kv(), shape.head_dim());
    let q = rope(&activations(tokens * hq * d, 3 * seed), first, hq, d);
    let k = rope(&activations(tokens * hkv * d, 3 * seed + 1), first, hkv, d);
    let v = activations(tokens * hkv * d, 3 * seed + 2).into_iter().map(bf16::from_f32).collect();
    (q, k, v)
}

/// The largest |device - reference| over an output.
fn max_error(got: &[bf16], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(g, w)| (g.to_f64() - w).abs()).fold(0.0, f64::max)
}

/// A paged KV cache of one sequence: NHD k and v caches of `num_pages` pages, the
/// sequence's block table on the device and on the host, and the host's copy of every
/// key and value written so far (the reference's input).
struct PagedCache {
    k: CudaSlice<bf16>,
    v: CudaSlice<bf16>,
    table: CudaSlice<i32>,
    host_table: Vec<i32>,
    num_pages: usize,
    /// `heads_kv * head_dim`: elements per token.
    row: usize,
    host_k: Vec<bf16>,
    host_v: Vec<bf16>,
}

impl PagedCache {
    /// A pool of `max_pages + spare` pages, this sequence's `max_pages` of them picked out
    /// of order (a stride coprime with the pool size), as an allocator that has served
    /// other sequences hands them out.
    fn new(stream: &Arc<CudaStream>, shape: &AttnShape, max_pages: usize, spare: usize) -> Res<Self> {
        let num_pages = max_pages + spare;
        let stride = (2..num_pages).find(|s| gcd(*s, num_pages) == 1 && *s > num_pages / 3).unwrap_or(1);
        let host_table: Vec<i32> = (0..max_pages).map(|p| ((p * stride + 1) % num_pages) as i32).collect();
        let row = shape.heads_kv() * shape.head_dim();
        let len = num_pages * PAGE_SIZE * row;
        Ok(Self {
            k: stream.alloc_zeros(len)?,
            v: stream.alloc_zeros(len)?,
            table: stream.clone_htod(&host_table)?,
            host_table,
            num_pages,
            row,
            host_k: Vec::new(),
            host_v: Vec::new(),
        })
    }

    fn max_pages(&self) -> usize {
        self.host_table.len()
    }

    /// The caches' (page, token, head) strides.
    fn layout(&self, head_dim: usize) -> Bshd {
        Bshd { batch: PAGE_SIZE * self.row, seq: self.row, head: head_dim }
    }

    /// Element range of tokens `first..first + tokens` in the caches, all on one page.
    fn slot_range(&self, first: usize, tokens: usize) -> std::ops::Range<usize> {
        let page = self.host_table[first / PAGE_SIZE] as usize;
        let start = (page * PAGE_SIZE + first % PAGE_SIZE) * self.row;
        start..start + tokens * self.row
    }

    /// Copies the prompt's contiguous `[tokens, heads_kv, head_dim]` K and V, already on the
    /// device, into the sequence's pages: one device-to-device copy per page and cache.
    fn write_prompt(&mut self, stream: &Arc<CudaStream>, k: &CudaSlice<bf16>, v: &CudaSlice<bf16>, host_k: &[bf16], host_v: &[bf16]) -> Res<()> {
        let tokens = host_k.len() / self.row;
        for first in (0..tokens).step_by(PAGE_SIZE) {
            let n = PAGE_SIZE.min(tokens - first);
            let (src, dst) = (first * self.row..(first + n) * self.row, self.slot_range(first, n));
            stream.memcpy_dtod(&k.slice(src.clone()), &mut self.k.slice_mut(dst.clone()))?;
            stream.memcpy_dtod(&v.slice(src), &mut self.v.slice_mut(dst))?;
        }
        self.host_k.extend_from_slice(host_k);
        self.host_v.extend_from_slice(host_v);
        Ok(())
    }

    /// Writes one new token's K and V row into its slot. Here they come from the host; an
    /// engine's projection leaves them on the device and copies them the same way.
    fn append(&mut self, stream: &Arc<CudaStream>, k: &[bf16], v: &[bf16]) -> Res<()> {
        let slot = self.slot_range(self.host_k.len() / self.row, 1);
        stream.memcpy_htod(k, &mut self.k.slice_mut(slot.clone()))?;
        stream.memcpy_htod(v, &mut self.v.slice_mut(slot))?;
        self.host_k.extend_from_slice(k);
        self.host_v.extend_from_slice(v);
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The device, its stream, and how results are reported.
struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    on_sim: bool,
}

impl Device {
    /// Prints one output's error (and, on the simulator, the work since the last report);
    /// false when the error is above the tolerance.
    fn report(&self, name: &str, error: f64, note: &str) -> bool {
        let work = if self.on_sim {
            ptx_sim_driver::counters(true).map_or(String::new(), |c| format!("; simulator work: {} warp-instructions, {} mma", c.warp_instructions, c.mma))
        } else {
            String::new()
        };
        let ok = error <= TOLERANCE;
        println!("{name:<16} max |error| vs CPU reference {error:.2e} ({}){note}{work}", if ok { "ok" } else { "FAILED" });
        ok
    }
}

/// Step 1 and 2: MInference prefill of the prompt, then its K and V into the paged cache.
fn prefill(dev: &Device, prompt: &AttnShape, cache: &mut PagedCache) -> Res<bool> {
    let stream = &dev.stream;
    let (q, k, v) = project(prompt, 0, prompt.seq_q(), 1);
    let (dq, dk, dv) = (stream.clone_htod(&q)?, stream.clone_htod(&k)?, stream.clone_htod(&v)?);
    let mut out = stream.alloc_zeros::<bf16>(prompt.q_len())?;
    let opts = AttnOptions::causal();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 64, slash_size: 32, forced_first_columns: 4, forced_last_diagonals: 8, per_kv_group: true };
    let mut workspace = stream.alloc_zeros::<f32>(sparse_attn::plan::minference::workspace_len(prompt, &config)?)?;
    minference_attention(stream, prompt, &opts, &config, AttnTensors::contiguous(prompt, &dq, &dk, &dv, &mut out, None), &mut workspace)?;
    cache.write_prompt(stream, &dk, &dv, &k, &v)?;
    let got = stream.clone_dtoh(&out)?;

    let inputs = RefInputs::new(*prompt, &q, &k, &v)?;
    let vs = estimate_vertical_slash(&inputs, &config, 1.0 / (prompt.head_dim() as f64).sqrt())?;
    let want = vertical_slash_attention(&inputs, &opts, &vs)?;
    let note = format!(" [{} tokens, vertical-slash {} v + {} s per kv head]", prompt.seq_q(), config.vertical_size, config.slash_size);
    let ok = dev.report("prefill", max_error(&got, &want.out), &note);
    #[cfg(feature = "candle")]
    let ok = ok & report_candle("candle prefill", candle_path::prefill(prompt, (&q, &k, &v), &vs, &got)?);
    Ok(ok)
}

/// The buffers every decode step reuses: the new token's q and output, its length and
/// query bounds, the indexer's weights, workspace and indices, and decode's workspace.
struct DecodeState {
    shape: AttnShape,
    q: CudaSlice<bf16>,
    out: CudaSlice<bf16>,
    seqlens_k: CudaSlice<i32>,
    cu_seqlens_q: CudaSlice<i32>,
    index_weights: CudaSlice<f32>,
    index_workspace: CudaSlice<f32>,
    indices: CudaSlice<i32>,
    workspace: CudaSlice<f32>,
    opts: DecodeOptions,
}

impl DecodeState {
    /// `shape` is (1 sequence, 1 new token, the cache's capacity, heads, head_dim).
    fn new(dev: &Device, shape: AttnShape) -> Res<Self> {
        let stream = &dev.stream;
        let sm_count = dev.ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: false, softcap: None, window_left: None, splits: None, sm_count: sm_count.max(1) as usize };
        // The workspace depends on the capacity and the slots per index row only.
        let source = DecodeSource::<()>::TopK { topk: TOP_K, indices: () };
        let workspace_len = sparse_attn::plan::decode::workspace_len(&shape, None, &opts, &source)?;
        let group = shape.heads_q() / shape.heads_kv();
        Ok(Self {
            shape,
            q: stream.alloc_zeros(shape.q_len())?,
            out: stream.alloc_zeros(shape.q_len())?,
            seqlens_k: stream.alloc_zeros(1)?,
            cu_seqlens_q: stream.clone_htod(&[0i32, 1][..])?,
            // Equal weights: the score of key s is the sum of relu(q_h . k_s) over the group.
            index_weights: stream.clone_htod(&vec![1.0f32; shape.heads_kv() * group])?,
            index_workspace: stream.alloc_zeros(sparse_attn::plan::indexer::workspace_len(&Self::index_dims(&shape), 1)?)?,
            indices: stream.alloc_zeros(shape.heads_kv() * TOP_K)?,
            workspace: stream.alloc_zeros(workspace_len)?,
            opts,
        })
    }

    /// The indexer's view of the layer: q `[1 row, heads_kv groups, group heads, head_dim]`
    /// is the decode q as it lies (query head `h` belongs to kv head `h / group`), and the
    /// paged k cache is the indexer's paged k `[pages, page_size, groups, head_dim]`.
    fn index_dims(shape: &AttnShape) -> IndexerDims {
        let group = shape.heads_q() / shape.heads_kv();
        IndexerDims { batch: 1, seq_q: 1, seq_k: shape.seq_k(), groups: shape.heads_kv(), heads: group, head_dim: shape.head_dim() }
    }

    /// Step 3 for the token at position `position`: RoPE'd q uploaded, its K and V into the
    /// cache, the new length on the device, its top-k keys chosen on the device, and the
    /// decode over the paged cache. Returns the output and the indices, downloaded for the
    /// check.
    fn step(&mut self, dev: &Device, cache: &mut PagedCache, position: usize) -> Res<(Vec<bf16>, Vec<bf16>, Vec<i32>)> {
        let stream = &dev.stream;
        let (q, k, v) = project(&self.shape, position, 1, 100 + position as u64);
        stream.memcpy_htod(&q, &mut self.q)?;
        cache.append(stream, &k, &v)?;
        stream.memcpy_htod(&[position as i32 + 1][..], &mut self.seqlens_k)?;
        let (max_pages, num_pages) = (cache.max_pages(), cache.num_pages);
        let paged = PagedTensors {
            cu_seqlens_q: &self.cu_seqlens_q,
            total_q: 1,
            seqlens_k: &self.seqlens_k,
            block_table: &cache.table,
            max_pages,
            page_size: PAGE_SIZE,
            num_pages,
            host: None,
        };
        let tensors = IndexerTensors { q: &self.q, k: &cache.k, w: &self.index_weights, workspace: &mut self.index_workspace, indices: &mut self.indices };
        indexer_topk::<bf16, f32, CudaSlice<i32>, _, _, _, _>(stream, &Self::index_dims(&self.shape), IndexerLayoutTensors::Paged(paged), TOP_K, true, tensors)?;

        // One buffer type for the step's index tensors: views of the persistent buffers.
        let source: DecodeSource<CudaView<'_, i32>> = DecodeSource::TopK { topk: TOP_K, indices: self.indices.slice(..) };
        let kv = cache.layout(self.shape.head_dim());
        let q_layout = self.shape.q_layout();
        let layouts = AttnLayouts { q: q_layout, k: kv, v: kv, out: q_layout };
        let tensors = AttnTensors { q: &self.q, k: &cache.k, v: &cache.v, out: &mut self.out, lse: None, sinks: None, layouts };
        let (seqlens, table) = (self.seqlens_k.slice(..), cache.table.slice(..));
        let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: None, pages: Some((&table, max_pages, PAGE_SIZE, num_pages)), packed: None };
        decode(stream, &self.shape, &self.opts, tensors, meta, &mut self.workspace, &source)?;
        Ok((q, stream.clone_dtoh(&self.out)?, stream.clone_dtoh(&self.indices)?))
    }
}

/// The CPU reference of a decode step: top-k attention of the new token over the whole
/// sequence so far, with the device's indices.
fn decode_reference(shape: &AttnShape, cache: &PagedCache, q: &[bf16], indices: Vec<i32>) -> Res<Vec<f64>> {
    let keys = cache.host_k.len() / cache.row;
    let seq = AttnShape::new(1, 1, keys, shape.heads_q(), shape.heads_kv(), shape.head_dim())?;
    let inputs = RefInputs::new(seq, q, &cache.host_k, &cache.host_v)?;
    let tokens = TopkTokens::new(1, 1, shape.heads_kv(), TOP_K, indices)?;
    Ok(topk_attention(&inputs, &AttnOptions::causal(), &tokens)?.out)
}

/// Whether each kv head's key set from the device is a top-k of the host's f64 indexer
/// scores over the host's copy of the sequence: as many keys as there are (up to `TOP_K`),
/// ascending, and none scoring below a dropped key by more than f32 rounding (1e-3
/// relative, the bound tests/indexer_cases uses for near ties). The decode check alone
/// cannot see a cache page that differs from what was written: the device scores such keys
/// from the same page and would simply not pick them.
fn selection_is_top_k(shape: &AttnShape, cache: &PagedCache, q: &[bf16], indices: &[i32]) -> Res<bool> {
    let keys = cache.host_k.len() / cache.row;
    let dims = IndexerDims { seq_k: keys, ..DecodeState::index_dims(shape) };
    let weights = vec![1.0f32; dims.groups * dims.heads];
    let scores = indexer_scores_host(q, &cache.host_k, &weights, &dims, HostLayout::Contiguous, true)?;
    Ok(indices.chunks_exact(TOP_K).zip(scores.chunks_exact(keys)).all(|(row, scores)| {
        let kept: Vec<usize> = row.iter().take_while(|&&j| j >= 0).map(|&j| j as usize).collect();
        let well_formed = kept.len() == keys.min(TOP_K) && kept.windows(2).all(|p| p[0] < p[1]) && kept.last().is_none_or(|&j| j < keys);
        let lowest_kept = kept.iter().map(|&j| scores[j]).fold(f64::INFINITY, f64::min);
        let mut dropped = vec![true; keys];
        kept.iter().for_each(|&j| dropped[j] = false);
        let highest_dropped = (0..keys).filter(|&j| dropped[j]).map(|j| scores[j]).fold(f64::NEG_INFINITY, f64::max);
        well_formed && lowest_kept >= highest_dropped - 1e-3 * lowest_kept.abs().max(highest_dropped.abs())
    }))
}

/// Prints how far a `sparse_attn::candle` result is from the device's; false above the
/// tolerance (the candle CPU forward is the reference rounded to bf16, so the difference is
/// the device's error plus one rounding).
#[cfg(feature = "candle")]
fn report_candle(name: &str, diff: f64) -> bool {
    let ok = diff <= TOLERANCE;
    println!("{name:<16} max |candle (CPU forward) - device| {diff:.2e} ({})", if ok { "ok" } else { "FAILED" });
    ok
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Res<bool> {
    let choice: DeviceChoice = std::env::var("SPARSE_ATTN_DEVICE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "auto".into()).parse()?;
    let selected = ptx_sim_driver::select(choice)?;
    let on_sim = selected == Selected::Sim;
    let ctx = CudaContext::new(0)?;
    println!("device: {selected}: {}", ctx.name()?);
    // A short prompt on the simulator; a longer one on a GPU (the f64 CPU reference bounds it).
    let (prompt_len, head_dim) = if on_sim { (384, 64) } else { (4096, 128) };
    let prompt = AttnShape::new(1, prompt_len, prompt_len, 8, 2, head_dim)?;
    let capacity = prompt_len + DECODE_STEPS;
    let max_pages = capacity.div_ceil(PAGE_SIZE);
    println!(
        "layer: heads {}/{} (GQA), head_dim {}, bf16; prompt {prompt_len} tokens, then {DECODE_STEPS} decode steps; KV cache in pages of {PAGE_SIZE} tokens ({max_pages} pages of a pool of {})",
        prompt.heads_q(),
        prompt.heads_kv(),
        head_dim,
        max_pages + SPARE_PAGES
    );
    let dev = Device { stream: ctx.default_stream(), ctx, on_sim };
    if on_sim {
        println!("(simulator work counts below are ptx-sim's instruction counts, not GPU times)");
        ptx_sim_driver::counters(true);
    }
    let mut cache = PagedCache::new(&dev.stream, &prompt, max_pages, SPARE_PAGES)?;
    let mut ok = prefill(&dev, &prompt, &mut cache)?;
    let mut state = DecodeState::new(&dev, AttnShape::new(1, 1, capacity, prompt.heads_q(), prompt.heads_kv(), head_dim)?)?;
    for step in 0..DECODE_STEPS {
        let position = prompt_len + step;
        let (q, got, indices) = state.step(&dev, &mut cache, position)?;
        let kept = indices.iter().filter(|&&i| i >= 0).count() / prompt.heads_kv();
        let top_k = selection_is_top_k(&state.shape, &cache, &q, &indices)?;
        #[cfg(feature = "candle")]
        {
            let pools = (dev.stream.clone_dtoh(&cache.k)?, dev.stream.clone_dtoh(&cache.v)?);
            let candle_cache = candle_path::CandleCache::new(pools.0, pools.1, &cache.host_table, (PAGE_SIZE, prompt.heads_kv(), head_dim))?;
            let diff = candle_cache.decode_step(&q, position + 1, &indices, (prompt.heads_q(), prompt.heads_kv(), TOP_K), &got)?;
            ok &= report_candle(&format!("candle step {}", step + 1), diff);
        }
        let want = decode_reference(&state.shape, &cache, &q, indices)?;
        let verdict = if top_k { "the host's top-k" } else { "FAILED: not the host's top-k" };
        let note = format!(" [token {position}: {kept} of {} keys per kv head, {verdict}]", position + 1);
        ok &= dev.report(&format!("decode step {}", step + 1), max_error(&got, &want), &note) && top_k;
    }
    Ok(ok)
}
