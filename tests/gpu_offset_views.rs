//! Views at an offset and with an engine's strides give bit-identical results to the same
//! data in fresh contiguous buffers, through the cudarc path:
//! - q, k and v as head-offset views of one fused QKV projection `[batch, seq, heads_q + 2 *
//!   heads_kv, head_dim]` (their layouts' token stride is the fused row);
//! - the output a view at an offset into a larger buffer with padded token rows, the LSE a
//!   view at an offset, and nothing outside them written;
//! - index tensors (block-sparse, top-k, converted vertical-slash, decode block lists and
//!   top-k rows, `seqlens_k`, the block table) as views at odd offsets of one i32 buffer,
//!   with plausible indices in between, so a view read at the wrong offset changes the
//!   result instead of being skipped;
//! - the vertical-slash conversion writing into views, minference's workspace a view;
//! - decode over a FlashInfer-style interleaved page cache `[pages, 2, page_size, heads_kv,
//!   head_dim]` (k and v views of one buffer, page stride two pages).
//!
//! tests/gpu_cudarc_path.rs checks that a contiguous offset view of dense attention is
//! launched at its offset, against the reference; this file holds the strided forms, every
//! source and decode to the exact bits of the fresh-buffer run. Runs on a real GPU, or on the
//! simulated driver with `SPARSE_ATTN_DEVICE=sim`; skips with the reason otherwise.

mod attention_cases;
mod common;
mod decode_cases;

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtrMut};
use half::bf16;
use sparse_attn::cuda::{alloc_vs_index, attention, decode, minference_attention, upload, vs_convert, AttnTensors, DecodeTensors};
use sparse_attn::pattern::vs_convert::index_dims;
use sparse_attn::pattern::VsEstimateConfig;
use sparse_attn::plan::decode::{workspace_len, DecodeOptions, DecodeSource};
use sparse_attn::plan::AttnLayouts;
use sparse_attn::source::VsIndex;
use sparse_attn::{AttnOptions, AttnShape, Bshd, Source, SparsePattern};

/// Filler elements before each bf16 view: 48 bytes keep rows 16-byte aligned, and are not a
/// whole token row.
const LEAD: usize = 24;
/// Filler i32 entries before each index view (an odd count: index tensors need only 4-byte
/// alignment).
const IDX_LEAD: usize = 5;
/// Filler f32 entries before an LSE or workspace view (16 bytes).
const F32_LEAD: usize = 4;
/// Extra elements after each token's heads in the strided output.
const OUT_PAD: usize = 16;
/// What the filler holds: a large finite value in q/k/v/out, a valid-looking index in i32
/// buffers, a distinctive value in f32 ones.
const FILL: f32 = 300.0;
const IDX_FILL: i32 = 1;
const F32_FILL: f32 = -7.5;

const OPTS: AttnOptions = AttnOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None };

/// A run's output and LSE, as bits.
#[derive(Debug, PartialEq, Eq)]
struct Bits {
    out: Vec<u16>,
    lse: Vec<u32>,
}

/// A prefill problem held as an engine's fused QKV projection.
struct Fused {
    shape: AttnShape,
    /// `[batch, seq, heads_q + 2 * heads_kv, head_dim]`.
    qkv: Vec<bf16>,
}

impl Fused {
    fn new(shape: AttnShape, seed: u64) -> Self {
        let row = (shape.heads_q() + 2 * shape.heads_kv()) * shape.head_dim();
        Self { shape, qkv: common::Rng::new(seed).tensor(shape.batch() * shape.seq_q() * row) }
    }

    fn row(&self) -> usize {
        (self.shape.heads_q() + 2 * self.shape.heads_kv()) * self.shape.head_dim()
    }

    /// Element offsets of q, k and v's first head within a fused token row.
    fn head_offsets(&self) -> [usize; 3] {
        let (hq, hkv, d) = (self.shape.heads_q(), self.shape.heads_kv(), self.shape.head_dim());
        [0, hq * d, (hq + hkv) * d]
    }

    /// q, k and v copied out as contiguous BSHD.
    fn split(&self) -> [Vec<bf16>; 3] {
        let (hq, hkv, d) = (self.shape.heads_q(), self.shape.heads_kv(), self.shape.head_dim());
        let widths = [hq * d, hkv * d, hkv * d];
        let offsets = self.head_offsets();
        [0, 1, 2].map(|t| self.qkv.chunks_exact(self.row()).flat_map(|row| row[offsets[t]..][..widths[t]].iter().copied()).collect())
    }

    /// The fused layouts: every tensor steps a whole fused row per token; the output has
    /// `OUT_PAD` spare elements per token.
    fn layouts(&self) -> AttnLayouts {
        let seq = self.shape.seq_q();
        let fused = Bshd { batch: seq * self.row(), seq: self.row(), head: self.shape.head_dim() };
        AttnLayouts { q: fused, k: fused, v: fused, out: out_layout(&self.shape) }
    }
}

/// The padded output layout of `shape`'s q.
fn out_layout(shape: &AttnShape) -> Bshd {
    let row = shape.heads_q() * shape.head_dim() + OUT_PAD;
    Bshd { batch: shape.seq_q() * row, seq: row, head: shape.head_dim() }
}

/// Filled host data with `lead` filler elements before `data` and `tail` after.
fn with_filler<T: Copy>(fill: T, lead: usize, data: &[T], tail: usize) -> Vec<T> {
    let mut v = vec![fill; lead];
    v.extend_from_slice(data);
    v.extend(std::iter::repeat_n(fill, tail));
    v
}

/// An output buffer for `shape` with the padded layout after `LEAD` filler, and an LSE
/// buffer with `F32_LEAD` filler on both sides.
fn strided_outputs(stream: &Arc<CudaStream>, shape: &AttnShape, lse_len: usize) -> (CudaSlice<bf16>, CudaSlice<f32>) {
    let l = out_layout(shape);
    let out = vec![bf16::from_f32(FILL); LEAD + shape.batch() * l.batch + LEAD];
    let lse = vec![F32_FILL; F32_LEAD + lse_len + F32_LEAD];
    (stream.clone_htod(&out).unwrap(), stream.clone_htod(&lse).unwrap())
}

/// Reads back the strided output and the LSE as contiguous bits, asserting that every
/// element outside them still holds the filler.
fn read_strided(stream: &Arc<CudaStream>, shape: &AttnShape, out: &CudaSlice<bf16>, lse: &CudaSlice<f32>, label: &str) -> Bits {
    let (out, lse) = (stream.clone_dtoh(out).unwrap(), stream.clone_dtoh(lse).unwrap());
    let (l, width) = (out_layout(shape), shape.heads_q() * shape.head_dim());
    let mut addressed = vec![false; out.len()];
    let mut got = Vec::with_capacity(shape.q_len());
    for b in 0..shape.batch() {
        for s in 0..shape.seq_q() {
            let start = LEAD + b * l.batch + s * l.seq;
            got.extend(out[start..start + width].iter().map(|x| x.to_bits()));
            addressed[start..start + width].iter_mut().for_each(|a| *a = true);
        }
    }
    let stray = out.iter().zip(&addressed).position(|(x, &a)| !a && x.to_f32() != FILL);
    assert_eq!(stray, None, "{label}: an output element outside the view's rows was written");
    let lse_len = lse.len() - 2 * F32_LEAD;
    assert!(lse[..F32_LEAD].iter().chain(&lse[F32_LEAD + lse_len..]).all(|&x| x == F32_FILL), "{label}: written outside the LSE view");
    Bits { out: got, lse: lse[F32_LEAD..][..lse_len].iter().map(|x| x.to_bits()).collect() }
}

/// Plain contiguous results as bits.
fn read_plain(stream: &Arc<CudaStream>, out: &CudaSlice<bf16>, lse: &CudaSlice<f32>) -> Bits {
    Bits { out: stream.clone_dtoh(out).unwrap().iter().map(|x| x.to_bits()).collect(), lse: stream.clone_dtoh(lse).unwrap().iter().map(|x| x.to_bits()).collect() }
}

/// Host index tensors packed into one i32 buffer, each after `IDX_LEAD` filler entries:
/// the buffer's contents and each tensor's range.
struct Packed {
    data: Vec<i32>,
}

impl Packed {
    fn new() -> Self {
        Self { data: Vec::new() }
    }

    fn push(&mut self, tensor: &[i32]) -> Range<usize> {
        self.data.extend(std::iter::repeat_n(IDX_FILL, IDX_LEAD));
        let start = self.data.len();
        self.data.extend_from_slice(tensor);
        start..self.data.len()
    }

    fn upload(mut self, stream: &Arc<CudaStream>) -> CudaSlice<i32> {
        self.data.extend(std::iter::repeat_n(IDX_FILL, IDX_LEAD));
        stream.clone_htod(&self.data).unwrap()
    }
}

/// Attention of `source` with q, k, v as views of a fused QKV buffer and strided offset
/// outputs, the source's tensors as offset views; then the same from fresh contiguous
/// buffers and an uploaded source. Returns both runs' bits.
fn fused_and_fresh(stream: &Arc<CudaStream>, p: &Fused, source: &Source<Vec<i32>>, label: &str) -> (Bits, Bits) {
    let shape = p.shape;
    let mut packed = Packed::new();
    let ranges = source.as_ref().map(|_, t| packed.push(t));
    let index = packed.upload(stream);
    let views: Source<CudaView<'_, i32>> = ranges.map(|_, r| index.slice(r));

    let fused = stream.clone_htod(&with_filler(bf16::from_f32(FILL), LEAD, &p.qkv, LEAD)).unwrap();
    let [oq, ok, ov] = p.head_offsets();
    let (q, k, v) = (fused.slice(LEAD + oq..), fused.slice(LEAD + ok..), fused.slice(LEAD + ov..));
    let (mut out, mut lse) = strided_outputs(stream, &shape, shape.lse_len());
    {
        let (mut out_view, mut lse_view) = (out.slice_mut(LEAD..), lse.slice_mut(F32_LEAD..F32_LEAD + shape.lse_len()));
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse_view;
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out_view, lse: Some(lse_ref), sinks: None, layouts: p.layouts() };
        attention(stream, &shape, &OPTS, tensors, &views).unwrap();
    }
    let viewed = read_strided(stream, &shape, &out, &lse, label);

    let [hq, hk, hv] = p.split().map(|x| stream.clone_htod(&x).unwrap());
    let (mut out, mut lse) = (stream.alloc_zeros::<bf16>(shape.q_len()).unwrap(), stream.alloc_zeros::<f32>(shape.lse_len()).unwrap());
    attention(stream, &shape, &OPTS, AttnTensors::contiguous(&shape, &hq, &hk, &hv, &mut out, Some(&mut lse)), &upload(stream, source).unwrap()).unwrap();
    (viewed, read_plain(stream, &out, &lse))
}

#[test]
fn fused_qkv_views_equal_fresh_buffers_for_every_source() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    // GQA 2:1, lengths that are not whole tiles, two sequences.
    let shape = AttnShape::new(2, 130, 130, 4, 2, 64).unwrap();
    let p = Fused::new(shape, 1);
    let mut rng = common::Rng::new(2);
    let owned = |s: Source<std::borrow::Cow<'_, [i32]>>| s.map(|_, c| c.into_owned());
    let sources: Vec<(&str, Source<Vec<i32>>)> = vec![
        ("dense", Source::Dense),
        ("block-sparse", owned(attention_cases::random_block_sparse(&mut rng, &shape, shape.heads_kv(), 0.5).source(&shape).unwrap())),
        ("vertical-slash", owned(attention_cases::random_vertical_slash(&mut rng, &shape, shape.heads_q(), 0.1).source(&shape).unwrap())),
        ("top-k", owned(attention_cases::random_topk(&mut rng, &shape, 0.2).source(&shape).unwrap())),
    ];
    for (label, source) in &sources {
        let (viewed, fresh) = fused_and_fresh(&stream, &p, source, label);
        // The fresh run must have done something: rows that see keys have finite LSEs.
        assert!(fresh.lse.iter().any(|&l| f32::from_bits(l).is_finite()), "{label}: no row saw a key");
        assert!(viewed == fresh, "{label}: the fused-view run differs from the fresh-buffer run");
    }
}

/// The vertical-slash conversion reading its indexes from offset views and writing the
/// converted index into offset views, then the attention reading those views: the same
/// converted index and the same output bits as the fresh buffers.
#[test]
fn vertical_slash_converted_into_offset_views() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let shape = AttnShape::new(2, 200, 200, 4, 2, 64).unwrap();
    let p = Fused::new(shape, 3);
    let vs = attention_cases::random_vertical_slash(&mut common::Rng::new(4), &shape, shape.heads_kv(), 0.1);
    let dims = index_dims(&vs, &shape).unwrap();
    let lens = dims.lens();

    // Fresh: the index in its own buffers, q, k, v contiguous.
    let (vert, slash) = (stream.clone_htod(vs.vertical_indexes()).unwrap(), stream.clone_htod(vs.slash_indexes()).unwrap());
    let mut fresh_index = alloc_vs_index(&stream, dims).unwrap();
    vs_convert(&stream, &shape, &vert, &slash, &mut fresh_index).unwrap();
    let [hq, hk, hv] = p.split().map(|x| stream.clone_htod(&x).unwrap());
    let (mut out, mut lse) = (stream.alloc_zeros::<bf16>(shape.q_len()).unwrap(), stream.alloc_zeros::<f32>(shape.lse_len()).unwrap());
    attention(&stream, &shape, &OPTS, AttnTensors::contiguous(&shape, &hq, &hk, &hv, &mut out, Some(&mut lse)), &Source::from(fresh_index.clone())).unwrap();
    let fresh = read_plain(&stream, &out, &lse);

    // Views: the inputs packed in one buffer, each output tensor at an offset of its own
    // filled buffer.
    let mut packed = Packed::new();
    let (rv, rs) = (packed.push(vs.vertical_indexes()), packed.push(vs.slash_indexes()));
    let inputs = packed.upload(&stream);
    let (vert, slash) = (inputs.slice(rv), inputs.slice(rs));
    let tensor_lens = VsIndex { dims, block_count: lens.rows, block_offset: lens.block_offset, column_count: lens.rows, column_index: lens.column_index };
    let mut outs = tensor_lens.map(|_, n| stream.clone_htod(&with_filler(IDX_FILL, IDX_LEAD, &vec![IDX_FILL; n], IDX_LEAD)).unwrap());
    {
        let mut views = VsIndex {
            dims,
            block_count: outs.block_count.slice_mut(IDX_LEAD..IDX_LEAD + lens.rows),
            block_offset: outs.block_offset.slice_mut(IDX_LEAD..IDX_LEAD + lens.block_offset),
            column_count: outs.column_count.slice_mut(IDX_LEAD..IDX_LEAD + lens.rows),
            column_index: outs.column_index.slice_mut(IDX_LEAD..IDX_LEAD + lens.column_index),
        };
        vs_convert(&stream, &shape, &vert, &slash, &mut views).unwrap();
    }
    let index_views: VsIndex<CudaView<'_, i32>> = outs.as_ref().map(|_, b| b.slice(IDX_LEAD..b.len() - IDX_LEAD));
    let fused = stream.clone_htod(&with_filler(bf16::from_f32(FILL), LEAD, &p.qkv, 0)).unwrap();
    let [oq, ok, ov] = p.head_offsets();
    let (q, k, v) = (fused.slice(LEAD + oq..), fused.slice(LEAD + ok..), fused.slice(LEAD + ov..));
    let (mut out, mut lse) = strided_outputs(&stream, &shape, shape.lse_len());
    {
        let (mut out_view, mut lse_view) = (out.slice_mut(LEAD..), lse.slice_mut(F32_LEAD..F32_LEAD + shape.lse_len()));
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse_view;
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out_view, lse: Some(lse_ref), sinks: None, layouts: p.layouts() };
        attention(&stream, &shape, &OPTS, tensors, &Source::from(index_views)).unwrap();
    }
    let viewed = read_strided(&stream, &shape, &out, &lse, "vertical-slash converted into views");

    // The converted tensors, filler around them intact.
    let fresh_host = fresh_index.as_ref().map(|_, b| stream.clone_dtoh(b).unwrap());
    let viewed_host = outs.as_ref().map(|_, b| stream.clone_dtoh(b).unwrap());
    for (name, (want, got)) in [
        ("block_count", (&fresh_host.block_count, &viewed_host.block_count)),
        ("block_offset", (&fresh_host.block_offset, &viewed_host.block_offset)),
        ("column_count", (&fresh_host.column_count, &viewed_host.column_count)),
        ("column_index", (&fresh_host.column_index, &viewed_host.column_index)),
    ] {
        let n = got.len() - 2 * IDX_LEAD;
        assert_eq!(&got[IDX_LEAD..][..n], &want[..n], "{name}: converted into a view differs");
        assert!(got[..IDX_LEAD].iter().chain(&got[IDX_LEAD + n..]).all(|&x| x == IDX_FILL), "{name}: written outside its view");
    }
    assert!(viewed == fresh, "the attention over the converted views differs from the fresh run");
}

/// MInference end to end (estimation reads q and k by the fused layouts) with the
/// workspace a view at an offset: the fresh run's bits.
#[test]
fn minference_over_fused_views_with_an_offset_workspace() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let shape = AttnShape::new(1, 300, 300, 4, 2, 64).unwrap();
    let p = Fused::new(shape, 5);
    let config = VsEstimateConfig { last_q: 64, vertical_size: 48, slash_size: 24, forced_first_columns: 4, forced_last_diagonals: 8, per_kv_group: true };
    let ws_len = sparse_attn::plan::minference::workspace_len(&shape, &config).unwrap();

    let [hq, hk, hv] = p.split().map(|x| stream.clone_htod(&x).unwrap());
    let (mut out, mut lse) = (stream.alloc_zeros::<bf16>(shape.q_len()).unwrap(), stream.alloc_zeros::<f32>(shape.lse_len()).unwrap());
    let mut ws = stream.alloc_zeros::<f32>(ws_len).unwrap();
    minference_attention(&stream, &shape, &OPTS, &config, AttnTensors::contiguous(&shape, &hq, &hk, &hv, &mut out, Some(&mut lse)), &mut ws).unwrap();
    let fresh = read_plain(&stream, &out, &lse);

    let fused = stream.clone_htod(&with_filler(bf16::from_f32(FILL), LEAD, &p.qkv, 0)).unwrap();
    let [oq, ok, ov] = p.head_offsets();
    let (q, k, v) = (fused.slice(LEAD + oq..), fused.slice(LEAD + ok..), fused.slice(LEAD + ov..));
    let (mut out, mut lse) = strided_outputs(&stream, &shape, shape.lse_len());
    // Scratch may hold anything on entry: filler, not zeros.
    let mut ws = stream.clone_htod(&vec![F32_FILL; F32_LEAD + ws_len]).unwrap();
    {
        let (mut out_view, mut lse_view) = (out.slice_mut(LEAD..), lse.slice_mut(F32_LEAD..F32_LEAD + shape.lse_len()));
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse_view;
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out_view, lse: Some(lse_ref), sinks: None, layouts: p.layouts() };
        minference_attention(&stream, &shape, &OPTS, &config, tensors, &mut ws.slice_mut(F32_LEAD..)).unwrap();
    }
    let viewed = read_strided(&stream, &shape, &out, &lse, "minference");
    let ws = stream.clone_dtoh(&ws).unwrap();
    assert!(ws[..F32_LEAD].iter().all(|&x| x == F32_FILL), "minference wrote before its workspace view");
    assert!(viewed == fresh, "minference over fused views differs from the fresh run");
}

/// Decode of two sequences (two new tokens each, 150 and 77 keys) over an interleaved page
/// cache `[pages, 2, page_size, heads_kv, head_dim]`, q a view of a fused decode QKV, the
/// metadata and the source's tensors views of one i32 buffer, the workspace a view: the bits
/// of the run over separate NHD caches and fresh buffers, for every decode source.
#[test]
fn decode_over_an_interleaved_page_cache_view() {
    let Some(ctx) = common::gpu_or_skip() else { return };
    let stream = ctx.default_stream();
    let page_size = 16;
    let p = decode_cases::Problem::<bf16>::new(vec![2, 2], vec![150, 77], 160, (4, 2), 64, 6);
    let shape = p.shape();
    let (k_pages, v_pages, table, max_pages, num_pages) = p.paged(page_size, 7);
    let (d, row) = (p.d, p.heads_kv * p.d);
    let page = page_size * row;
    // FlashInfer's NHD kv cache: each page's keys, then its values.
    let interleaved: Vec<bf16> = k_pages.chunks_exact(page).zip(v_pages.chunks_exact(page)).flat_map(|(k, v)| k.iter().chain(v).copied()).collect();
    // The new tokens' fused projection `[batch, q_len, heads_q + 2 * heads_kv, d]`; its k
    // and v heads (filler here) are what an engine appends to the cache.
    let fused_row = (p.heads_q + 2 * p.heads_kv) * d;
    let fused_q: Vec<bf16> = p.q.chunks_exact(p.heads_q * d).flat_map(|q| q.iter().copied().chain(std::iter::repeat_n(bf16::from_f32(FILL), 2 * row))).collect();
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count: 132 };
    let fresh_layouts = AttnLayouts { q: shape.q_layout(), k: Bshd { batch: page, seq: row, head: d }, v: Bshd { batch: page, seq: row, head: d }, out: shape.q_layout() };
    let view_layouts = AttnLayouts {
        q: Bshd { batch: shape.seq_q() * fused_row, seq: fused_row, head: d },
        k: Bshd { batch: 2 * page, seq: row, head: d },
        v: Bshd { batch: 2 * page, seq: row, head: d },
        out: out_layout(&shape),
    };
    let mut rng = common::Rng::new(8);
    for kind in 0..3 {
        let source = decode_cases::random_source(&mut rng, &p, kind, 32);
        let label = format!("decode {}", source.name());
        let ws_len = workspace_len(&shape, None, &opts, &source).unwrap();

        // Fresh: separate NHD caches, each tensor in its own buffer.
        let up = |x: &[i32]| stream.clone_htod(x).unwrap();
        let fresh_source = source.try_map(|_, t| Ok::<_, std::convert::Infallible>(up(t))).unwrap();
        let (q, k, v) = (stream.clone_htod(&p.q).unwrap(), stream.clone_htod(&k_pages).unwrap(), stream.clone_htod(&v_pages).unwrap());
        let (seqlens, table_d) = (up(&p.seqlens_k), up(&table));
        let (mut out, mut lse) = (stream.alloc_zeros::<bf16>(shape.q_len()).unwrap(), stream.alloc_zeros::<f32>(shape.lse_len()).unwrap());
        let mut ws = stream.alloc_zeros::<f32>(ws_len).unwrap();
        let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse;
        let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out, lse: Some(lse_ref), sinks: None, layouts: fresh_layouts };
        let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: Some(&p.seqlens_k), pages: Some((&table_d, max_pages, page_size, num_pages)), packed: None };
        decode(&stream, &shape, &opts, tensors, meta, &mut ws, &fresh_source).unwrap();
        let fresh = read_plain(&stream, &out, &lse);

        // Views.
        let mut packed = Packed::new();
        let (r_seqlens, r_table) = (packed.push(&p.seqlens_k), packed.push(&table));
        let ranges = source.try_map(|_, t| Ok::<_, std::convert::Infallible>(packed.push(t))).unwrap();
        let meta_buf = packed.upload(&stream);
        let view_source: DecodeSource<CudaView<'_, i32>> = ranges.try_map(|_, r| Ok::<_, std::convert::Infallible>(meta_buf.slice(r.clone()))).unwrap();
        let (seqlens, table_v) = (meta_buf.slice(r_seqlens), meta_buf.slice(r_table));
        let cache = stream.clone_htod(&with_filler(bf16::from_f32(FILL), LEAD, &interleaved, LEAD)).unwrap();
        let (k, v) = (cache.slice(LEAD..), cache.slice(LEAD + page..));
        let fused = stream.clone_htod(&with_filler(bf16::from_f32(FILL), LEAD, &fused_q, 0)).unwrap();
        let q = fused.slice(LEAD..);
        let (mut out, mut lse) = strided_outputs(&stream, &shape, shape.lse_len());
        let mut ws = stream.clone_htod(&vec![F32_FILL; F32_LEAD + ws_len]).unwrap();
        {
            let (mut out_view, mut lse_view) = (out.slice_mut(LEAD..), lse.slice_mut(F32_LEAD..F32_LEAD + shape.lse_len()));
            let lse_ref: &mut dyn DevicePtrMut<f32> = &mut lse_view;
            let tensors = AttnTensors { q: &q, k: &k, v: &v, out: &mut out_view, lse: Some(lse_ref), sinks: None, layouts: view_layouts };
            let meta = DecodeTensors { seqlens_k: &seqlens, host_seqlens_k: Some(&p.seqlens_k), pages: Some((&table_v, max_pages, page_size, num_pages)), packed: None };
            decode(&stream, &shape, &opts, tensors, meta, &mut ws.slice_mut(F32_LEAD..), &view_source).unwrap();
        }
        let viewed = read_strided(&stream, &shape, &out, &lse, &label);
        assert!(stream.clone_dtoh(&ws).unwrap()[..F32_LEAD].iter().all(|&x| x == F32_FILL), "{label}: wrote before its workspace view");
        assert!(fresh.lse.iter().any(|&l| f32::from_bits(l).is_finite()), "{label}: no row saw a key");
        assert!(viewed == fresh, "{label}: the view run differs from the fresh-buffer run");
    }
}
