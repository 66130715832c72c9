//! `sparse_attn::candle` on CPU tensors (feature `candle`): every function's output equals
//! the crate's CPU reference rounded once to the tensor's dtype, bit for bit, and its LSE the
//! reference's LSE as f32; strided views give the contiguous tensors' results; bad
//! arguments are errors that name them.
//!
//! The expected values come from `sparse_attn::reference` on the same host data (decode:
//! tests/decode_cases' varlen mapping), never from the candle module. The CPU forward rounds
//! the f64 reference with `half`'s `from_f64`, so the comparison rounds the same way and is
//! exact: any difference is a wrong key set, a wrong layout or a wrong option.

mod attention_cases;
mod common;
mod decode_cases;

use attention_cases::{random_block_sparse, random_topk, random_vertical_slash};
use candle_core::{Device, Tensor, WithDType};
use common::Rng;
use decode_cases::{random_source, reference_with, Problem};
use half::{bf16, f16};
use sparse_attn::candle::{self as sc, DecodeCache, DecodeOptions, DecodeSource, Pattern, VarlenSeqs};
use sparse_attn::pattern::vs_convert::{convert, convert_varlen};
use sparse_attn::reference::{
    block_sparse_attention, dense_attention, topk_attention, varlen_block_sparse_attention, varlen_dense_attention, varlen_topk_attention,
    varlen_vertical_slash_attention, vertical_slash_attention, RefInputs, RefOutput, VarlenInputs, VarlenOutput,
};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Varlen};

/// f16 and bf16 as both crates see them, with the CPU forward's rounding from f64.
trait Elem: AttnDtype + WithDType {
    fn round(x: f64) -> Self;
}
impl Elem for f16 {
    fn round(x: f64) -> Self {
        f16::from_f64(x)
    }
}
impl Elem for bf16 {
    fn round(x: f64) -> Self {
        bf16::from_f64(x)
    }
}

fn cpu<T: WithDType>(data: &[T], dims: &[usize]) -> Tensor {
    Tensor::from_slice(data, dims, &Device::Cpu).unwrap()
}

fn idx(data: &[i32], dims: &[usize]) -> Tensor {
    cpu(data, dims)
}

/// Random q, k, v for a batched `shape`, on the host and as tensors.
struct Qkv<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
}

impl<T: Elem> Qkv<T> {
    fn new(rng: &mut Rng, q_len: usize, kv_len: usize) -> Self {
        Self { q: rng.tensor(q_len), k: rng.tensor(kv_len), v: rng.tensor(kv_len) }
    }
    fn tensors(&self, q_dims: &[usize], kv_dims: &[usize]) -> (Tensor, Tensor, Tensor) {
        (cpu(&self.q, q_dims), cpu(&self.k, kv_dims), cpu(&self.v, kv_dims))
    }
    fn inputs(&self, shape: AttnShape) -> RefInputs {
        RefInputs::new(shape, &self.q, &self.k, &self.v).unwrap()
    }
}

fn bshd(s: &AttnShape) -> ([usize; 4], [usize; 4]) {
    ([s.batch(), s.seq_q(), s.heads_q(), s.head_dim()], [s.batch(), s.seq_k(), s.heads_kv(), s.head_dim()])
}

/// `got` holds exactly `want` rounded to `T`, bit for bit.
fn assert_out<T: Elem>(label: &str, got: &Tensor, want: &[f64]) {
    let got: Vec<T> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{label}: output length");
    if let Some(i) = (0..want.len()).find(|&i| got[i].to_f32().to_bits() != T::round(want[i]).to_f32().to_bits()) {
        panic!("{label}: output element {i} is {}, the reference rounds to {} ({})", got[i].to_f32(), T::round(want[i]).to_f32(), want[i]);
    }
}

/// `got` (f32) holds exactly `want` rounded to f32.
fn assert_lse(label: &str, got: &Tensor, want: &[f64]) {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len(), "{label}: lse length");
    if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != (want[i] as f32).to_bits()) {
        panic!("{label}: lse element {i} is {}, the reference's is {}", got[i], want[i]);
    }
}

fn assert_ref<T: Elem>(label: &str, (out, lse): &(Tensor, Tensor), want: &RefOutput) {
    assert_out::<T>(label, out, &want.out);
    assert_lse(label, lse, &want.lse);
}

/// A varlen LSE `[heads, batch * seq]` of equal-length sequences as `[batch, heads, seq]`.
fn lse_batched(lse: &[f64], batch: usize, heads: usize, seq: usize) -> Vec<f64> {
    let mut out = vec![0.0; lse.len()];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..seq {
                out[(b * heads + h) * seq + i] = lse[h * batch * seq + b * seq + i];
            }
        }
    }
    out
}

fn options_on() -> AttnOptions {
    AttnOptions { causal: true, softcap: Some(4.0), window_left: Some(37), ..AttnOptions::default() }
}

#[test]
fn dense_equals_the_reference() {
    let mut rng = Rng::new(1);
    let s = AttnShape::new(2, 70, 90, 4, 2, 32).unwrap();
    let (qd, kd) = bshd(&s);
    let x = Qkv::<bf16>::new(&mut rng, s.q_len(), s.kv_len());
    let (q, k, v) = x.tensors(&qd, &kd);
    for opts in [AttnOptions::causal(), AttnOptions::default()] {
        let want = dense_attention(&x.inputs(s), &opts).unwrap();
        assert_ref::<bf16>("dense", &sc::attention_with_lse(&q, &k, &v, &opts, None).unwrap(), &want);
        assert_out::<bf16>("dense, no lse", &sc::attention(&q, &k, &v, &opts, None).unwrap(), &want.out);
    }

    // f16 with every score option: softcap, a window that cuts through 64-key tiles, sinks.
    let s = AttnShape::new(1, 100, 130, 4, 1, 64).unwrap();
    let (qd, kd) = bshd(&s);
    let x = Qkv::<f16>::new(&mut rng, s.q_len(), s.kv_len());
    let (q, k, v) = x.tensors(&qd, &kd);
    let sinks = [0.5f32, -1.0, 2.0, 0.0];
    let want = dense_attention(&x.inputs(s).with_sinks(&sinks), &options_on()).unwrap();
    let got = sc::attention_with_lse(&q, &k, &v, &options_on(), Some(&cpu(&sinks, &[4]))).unwrap();
    assert_ref::<f16>("dense + softcap, window, sinks", &got, &want);
    // The options change the result, so the comparison above is not vacuous.
    let plain = sc::attention(&q, &k, &v, &AttnOptions::causal(), None).unwrap();
    assert_ne!(plain.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), got.0.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
}

#[test]
fn block_sparse_equals_the_reference() {
    let mut rng = Rng::new(2);
    let s = AttnShape::new(2, 130, 200, 4, 2, 32).unwrap();
    let (qd, kd) = bshd(&s);
    let x = Qkv::<bf16>::new(&mut rng, s.q_len(), s.kv_len());
    let (q, k, v) = x.tensors(&qd, &kd);
    for (heads, opts) in [(2, AttnOptions::causal()), (4, AttnOptions::default()), (2, options_on())] {
        let bs = random_block_sparse(&mut rng, &s, heads, 0.4);
        let [b, h, mb, max] = [bs.batch(), bs.heads(), bs.row_blocks(), bs.max_blocks()];
        let (count, index) = (idx(bs.block_count(), &[b, h, mb]), idx(bs.block_index(), &[b, h, mb, max]));
        let want = block_sparse_attention(&x.inputs(s), &opts, &bs).unwrap();
        let got = sc::block_sparse_with_lse(&q, &k, &v, &count, &index, &opts, None).unwrap();
        assert_ref::<bf16>(&format!("block-sparse, {heads} heads, {opts:?}"), &got, &want);
    }
}

#[test]
fn vertical_slash_equals_the_reference_raw_and_converted() {
    let mut rng = Rng::new(3);
    let s = AttnShape::new(2, 150, 170, 4, 2, 32).unwrap();
    let (qd, kd) = bshd(&s);
    let x = Qkv::<f16>::new(&mut rng, s.q_len(), s.kv_len());
    let (q, k, v) = x.tensors(&qd, &kd);
    for (heads, opts) in [(4, AttnOptions::causal()), (2, options_on())] {
        let vs = random_vertical_slash(&mut rng, &s, heads, 0.1);
        let want = vertical_slash_attention(&x.inputs(s), &opts, &vs).unwrap();
        let vt = idx(vs.vertical_indexes(), &[vs.batch(), vs.heads(), vs.nnz_v()]);
        let st = idx(vs.slash_indexes(), &[vs.batch(), vs.heads(), vs.nnz_s()]);
        let label = format!("vertical-slash, {heads} heads, {opts:?}");
        assert_ref::<f16>(&label, &sc::vertical_slash_with_lse(&q, &k, &v, &vt, &st, &opts, None).unwrap(), &want);

        // The converted index runs the same keys.
        let index = convert(&vs, &s).unwrap();
        let d = index.dims;
        let (rows, offs, cols) = ([d.batch(), d.heads(), d.row_blocks()], [d.batch(), d.heads(), d.row_blocks(), d.nnz_s()], [d.batch(), d.heads(), d.row_blocks(), d.nnz_v()]);
        let (bc, bo, cc, ci) = (idx(&index.block_count, &rows), idx(&index.block_offset, &offs), idx(&index.column_count, &rows), idx(&index.column_index, &cols));
        let pattern = Pattern::VsIndex { block_count: &bc, block_offset: &bo, column_count: &cc, column_index: &ci };
        assert_ref::<f16>(&format!("{label}, converted"), &sc::sparse_with_lse(&q, &k, &v, &pattern, &opts, None).unwrap(), &want);
    }
}

#[test]
fn topk_equals_the_reference_with_i32_and_u32_indices() {
    let mut rng = Rng::new(4);
    let s = AttnShape::new(2, 40, 120, 4, 2, 64).unwrap();
    let (qd, kd) = bshd(&s);
    let x = Qkv::<bf16>::new(&mut rng, s.q_len(), s.kv_len());
    let (q, k, v) = x.tensors(&qd, &kd);
    let tk = random_topk(&mut rng, &s, 0.2);
    let dims = tk.dims();
    let sinks = [1.0f32, 0.25, -0.5, 3.0];
    for opts in [AttnOptions::causal(), options_on()] {
        let want = topk_attention(&x.inputs(s).with_sinks(&sinks), &opts, &tk).unwrap();
        let got = sc::topk_with_lse(&q, &k, &v, &idx(tk.indices(), &dims), &opts, Some(&cpu(&sinks, &[4]))).unwrap();
        assert_ref::<bf16>(&format!("top-k {opts:?}"), &got, &want);
        // u32 indices carry the same bits (-1 is u32::MAX).
        let as_u32: Vec<u32> = tk.indices().iter().map(|&i| i as u32).collect();
        let got = sc::topk(&q, &k, &v, &cpu(&as_u32, &dims), &opts, Some(&cpu(&sinks, &[4]))).unwrap();
        assert_out::<bf16>(&format!("top-k u32 {opts:?}"), &got, &want.out);
    }
}

#[test]
fn varlen_equals_the_reference_for_every_pattern() {
    let mut rng = Rng::new(5);
    let (cu_q, cu_k) = (vec![0, 30, 31, 131], vec![0, 50, 51, 171]);
    let varlen = Varlen::new(cu_q.clone(), cu_k.clone()).unwrap();
    let (max_q, max_k) = varlen.max_seqlens();
    let s = AttnShape::new(3, max_q, max_k, 4, 2, 32).unwrap();
    let (tq, tk) = (varlen.total_q(), varlen.total_k());
    let (q, k, v): (Vec<bf16>, Vec<bf16>, Vec<bf16>) = (rng.tensor(tq * 4 * 32), rng.tensor(tk * 2 * 32), rng.tensor(tk * 2 * 32));
    let inputs = VarlenInputs::new(s, varlen.clone(), &q, &k, &v).unwrap();
    let (qt, kt, vt) = (cpu(&q, &[tq, 4, 32]), cpu(&k, &[tk, 2, 32]), cpu(&v, &[tk, 2, 32]));
    let (cq, ck) = (idx(&cu_q, &[4]), idx(&cu_k, &[4]));
    let seqs = VarlenSeqs { cu_seqlens_q: &cq, cu_seqlens_k: &ck, max_seqlen_q: max_q, max_seqlen_k: max_k };
    let check = |label: &str, pattern: &Pattern<&Tensor>, opts: &AttnOptions, want: VarlenOutput| {
        let got = sc::varlen_with_lse(&qt, &kt, &vt, &seqs, pattern, opts, None).unwrap();
        assert_out::<bf16>(label, &got.0, &want.out);
        assert_lse(label, &got.1, &want.lse);
    };

    for opts in [AttnOptions::causal(), options_on()] {
        check(&format!("varlen dense {opts:?}"), &Pattern::Dense, &opts, varlen_dense_attention(&inputs, &opts).unwrap());

        let bs = random_block_sparse(&mut rng, &s, 2, 0.5);
        let (bc, bi) = (idx(bs.block_count(), &[3, 2, bs.row_blocks()]), idx(bs.block_index(), &[3, 2, bs.row_blocks(), bs.max_blocks()]));
        let want = varlen_block_sparse_attention(&inputs, &opts, &bs).unwrap();
        check(&format!("varlen block-sparse {opts:?}"), &Pattern::BlockSparse { block_count: &bc, block_index: &bi }, &opts, want);

        let vs = random_vertical_slash(&mut rng, &s, 4, 0.1);
        let (vi, si) = (idx(vs.vertical_indexes(), &[3, 4, vs.nnz_v()]), idx(vs.slash_indexes(), &[3, 4, vs.nnz_s()]));
        let want = varlen_vertical_slash_attention(&inputs, &opts, &convert_varlen(&vs, &s, &varlen).unwrap()).unwrap();
        check(&format!("varlen vertical-slash {opts:?}"), &Pattern::VerticalSlash { vertical_indexes: &vi, slash_indexes: &si }, &opts, want);

        let packed = random_topk(&mut rng, &AttnShape::new(1, tq, max_k, 4, 2, 32).unwrap(), 0.2);
        let d = packed.dims();
        let want = varlen_topk_attention(&inputs, &opts, &packed).unwrap();
        check(&format!("varlen top-k {opts:?}"), &Pattern::TopK { indices: &idx(packed.indices(), &[d[1], d[2], d[3]]) }, &opts, want);
    }
}

/// A decode problem's tensors: q `[batch, q_len, ...]`, its NHD page caches, the block table
/// and seqlens_k.
struct DecodeTensors {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    table: Tensor,
    seqlens: Tensor,
}

fn decode_tensors(p: &Problem<bf16>, page_size: usize) -> DecodeTensors {
    let (k, v, table, max_pages, num_pages) = p.paged(page_size, 99);
    let cache = [num_pages, page_size, p.heads_kv, p.d];
    DecodeTensors {
        q: cpu(&p.q, &[p.batch(), p.max_q(), p.heads_q, p.d]),
        k: cpu(&k, &cache),
        v: cpu(&v, &cache),
        table: idx(&table, &[p.batch(), max_pages]),
        seqlens: idx(&p.seqlens_k, &[p.batch()]),
    }
}

fn decode_opts(attn: &AttnOptions) -> DecodeOptions {
    DecodeOptions { causal: attn.causal, softmax_scale: None, return_lse: true, splits: None, sm_count: 0, softcap: attn.softcap, window_left: attn.window_left }
}

/// The source's tensors in the decode layouts.
fn source_tensors(p: &Problem<bf16>, source: &DecodeSource<Vec<i32>>) -> DecodeSource<Tensor> {
    let (b, hkv) = (p.batch(), p.heads_kv);
    match source {
        DecodeSource::Dense => DecodeSource::Dense,
        DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => DecodeSource::BlockSparse {
            block_size: *block_size,
            max_blocks: *max_blocks,
            block_count: idx(block_count, &[b, hkv]),
            block_index: idx(block_index, &[b, hkv, *max_blocks]),
        },
        DecodeSource::TopK { topk, indices } => DecodeSource::TopK { topk: *topk, indices: idx(indices, &[b * p.max_q(), hkv, *topk]) },
    }
}

fn borrowed(source: &DecodeSource<Tensor>) -> DecodeSource<&Tensor> {
    source.try_map(|_, t| Ok::<_, ()>(t)).unwrap()
}

#[test]
fn decode_equals_the_reference_over_paged_and_contiguous_caches() {
    let mut rng = Rng::new(6);
    // 3 sequences of 4 new tokens; one with fewer keys than a page, one with a partial last page.
    let p = Problem::<bf16>::new(vec![4; 3], vec![5, 70, 130], 144, (8, 2), 64, 7);
    let t = decode_tensors(&p, 16);
    let sinks = [0.5f32, -1.0, 0.0, 2.0, 1.0, -2.0, 0.25, 3.0];
    for (kind, opts, with_sinks) in [(0, AttnOptions::causal(), false), (1, AttnOptions::causal(), false), (2, AttnOptions::causal(), true), (0, options_on(), true), (1, options_on(), false)] {
        let source = random_source(&mut rng, &p, kind, 32);
        let sink_host = with_sinks.then_some(&sinks[..]);
        let want = reference_with(&p, &opts, sink_host, &source);
        let label = format!("decode {} {opts:?} sinks={with_sinks}", source.name());
        let owned = source_tensors(&p, &source);
        let sinks_t = cpu(&sinks, &[8]);
        let sinks_arg = with_sinks.then_some(&sinks_t);
        let paged = DecodeCache { k: &t.k, v: &t.v, seqlens_k: &t.seqlens, block_table: Some(&t.table) };
        let (out, lse) = sc::decode_with_lse(&t.q, &paged, &borrowed(&owned), &decode_opts(&opts), sinks_arg).unwrap();
        assert_out::<bf16>(&label, &out, &want.out);
        assert_lse(&label, &lse, &lse_batched(&want.lse, 3, 8, 4));

        // The same keys in a contiguous [batch, capacity, heads_kv, head_dim] cache.
        let (kc, vc) = (cpu(&p.k, &[3, 144, 2, 64]), cpu(&p.v, &[3, 144, 2, 64]));
        let contiguous = DecodeCache { k: &kc, v: &vc, seqlens_k: &t.seqlens, block_table: None };
        let out = sc::decode(&t.q, &contiguous, &borrowed(&owned), &decode_opts(&opts), sinks_arg).unwrap();
        assert_out::<bf16>(&format!("{label}, contiguous cache"), &out, &want.out);
    }
}

/// q, k and v as `narrow` views of one fused QKV projection `[batch, seq, heads_q + 2 *
/// heads_kv, head_dim]`, k as a transposed BHSD tensor, and a transposed HND page cache,
/// give the contiguous tensors' results.
#[test]
fn strided_views_give_the_contiguous_result() {
    let mut rng = Rng::new(8);
    let (b, sq, hq, hkv, d) = (2, 50, 4, 2, 32);
    let heads = hq + 2 * hkv;
    let fused: Vec<f16> = rng.tensor(b * sq * heads * d);
    let qkv = cpu(&fused, &[b, sq, heads, d]);
    let (q, k, v) = (qkv.narrow(2, 0, hq).unwrap(), qkv.narrow(2, hq, hkv).unwrap(), qkv.narrow(2, hq + hkv, hkv).unwrap());
    assert!(!q.is_contiguous() && !k.is_contiguous());
    let (qc, kc, vc) = (q.contiguous().unwrap(), k.contiguous().unwrap(), v.contiguous().unwrap());
    let s = AttnShape::new(b, sq, sq, hq, hkv, d).unwrap();
    let host = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f16>().unwrap();
    let want = dense_attention(&RefInputs::new(s, &host(&qc), &host(&kc), &host(&vc)).unwrap(), &options_on()).unwrap();
    assert_ref::<f16>("fused QKV views", &sc::attention_with_lse(&q, &k, &v, &options_on(), None).unwrap(), &want);

    // k stored BHSD, passed as its BSHD transpose; v a slice of a longer sequence.
    let k_bhsd = kc.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
    assert!(!k_bhsd.is_contiguous());
    let long: Vec<f16> = rng.tensor(b * (sq + 10) * hkv * d);
    let long = cpu(&long, &[b, sq + 10, hkv, d]);
    let v_slice = long.narrow(1, 10, sq).unwrap();
    let want = dense_attention(&RefInputs::new(s, &host(&qc), &host(&kc), &host(&v_slice.contiguous().unwrap())).unwrap(), &AttnOptions::causal()).unwrap();
    assert_out::<f16>("transposed k, sliced v", &sc::attention(&qc, &k_bhsd, &v_slice, &AttnOptions::causal(), None).unwrap(), &want.out);

    // An HND page cache [num_pages, heads_kv, page_size, head_dim] as its NHD transpose.
    let p = Problem::<bf16>::new(vec![2; 2], vec![40, 17], 48, (4, 2), 32, 9);
    let t = decode_tensors(&p, 16);
    let hnd = |c: &Tensor| c.transpose(1, 2).unwrap().contiguous().unwrap().transpose(1, 2).unwrap();
    let (kh, vh) = (hnd(&t.k), hnd(&t.v));
    let opts = decode_opts(&AttnOptions::causal());
    let nhd = sc::decode(&t.q, &DecodeCache { k: &t.k, v: &t.v, seqlens_k: &t.seqlens, block_table: Some(&t.table) }, &DecodeSource::Dense, &opts, None).unwrap();
    let hnd_out = sc::decode(&t.q, &DecodeCache { k: &kh, v: &vh, seqlens_k: &t.seqlens, block_table: Some(&t.table) }, &DecodeSource::Dense, &opts, None).unwrap();
    let want = reference_with(&p, &AttnOptions::causal(), None, &DecodeSource::Dense);
    assert_out::<bf16>("NHD pages", &nhd, &want.out);
    assert_out::<bf16>("HND pages", &hnd_out, &want.out);
}

/// The error's message names `name` and says `what`.
fn assert_err<T: std::fmt::Debug>(r: candle_core::Result<T>, name: &str, what: &str) {
    let msg = r.expect_err("a bad argument must be an error").to_string();
    assert!(msg.contains(&format!("`{name}`")) && msg.contains(what), "message {msg:?} should name `{name}` and say {what:?}");
}

#[test]
fn bad_arguments_are_errors_that_name_them() {
    let mut rng = Rng::new(10);
    let x = Qkv::<bf16>::new(&mut rng, 2 * 16 * 4 * 32, 2 * 16 * 2 * 32);
    let (q, k, v) = x.tensors(&[2, 16, 4, 32], &[2, 16, 2, 32]);
    let c = AttnOptions::causal();
    let f32s = |t: &Tensor| t.to_dtype(candle_core::DType::F32).unwrap();

    assert_err(sc::attention(&f32s(&q), &k, &v, &c, None), "q", "f16 or bf16");
    assert_err(sc::attention(&q, &k.to_dtype(candle_core::DType::F16).unwrap(), &v, &c, None), "k", "one dtype");
    assert_err(sc::attention(&q.flatten_to(1).unwrap(), &k, &v, &c, None), "q", "rank 4");
    // A head_dim that is not the contiguous dimension.
    let q_t = cpu(&x.q, &[2, 16, 32, 4]).transpose(2, 3).unwrap();
    assert_err(sc::attention(&q_t, &k, &v, &c, None), "q", "contiguous");
    assert_err(sc::attention(&q, &k, &v.narrow(1, 0, 8).unwrap(), &c, None), "v", "must match");
    assert_err(sc::attention(&q, &k.narrow(3, 0, 16).unwrap(), &v.narrow(3, 0, 16).unwrap(), &c, None), "k", "head_dim");
    for cap in [0.0, -1.0, f32::NAN] {
        assert_err(sc::attention(&q, &k, &v, &AttnOptions { softcap: Some(cap), ..c }, None), "softcap", "> 0");
    }
    assert_err(sc::attention(&q, &k, &v, &AttnOptions { window_left: Some(i32::MAX as usize + 1), ..c }, None), "window_left", "larger than");
    assert_err(sc::attention(&q, &k, &v, &c, Some(&cpu(&[0.0f32; 3], &[3]))), "sinks", "[heads_q]");
    assert_err(sc::attention(&q, &k, &v, &c, Some(&cpu(&[f16::ZERO; 4], &[4]))), "sinks", "f32");

    let count = idx(&[1; 2 * 2], &[2, 2, 1]);
    let index = idx(&[0; 2 * 2], &[2, 2, 1, 1]);
    assert_err(sc::block_sparse(&q, &k, &v, &count, &f32s(&index), &c, None), "block_index", "i32 or u32");
    assert_err(sc::block_sparse(&q, &k, &v, &count, &idx(&[0; 2], &[2, 1, 1, 1]), &c, None), "block_index", "first 3 dimensions");
    assert_err(sc::block_sparse(&q, &k, &v, &count, &index.flatten_all().unwrap(), &c, None), "block_index", "rank 4");
    // A block id past the keys: the CPU forward checks the values the device would skip.
    assert_err(sc::block_sparse(&q, &k, &v, &count, &idx(&[0, 0, 0, 5], &[2, 2, 1, 1]), &c, None), "block_index", "out of range");
    assert_err(sc::topk(&q, &k, &v, &idx(&[0; 16], &[2, 8]), &c, None), "indices", "rank 4");
    // Vertical-slash attention is causal only.
    let (vi, si) = (idx(&[0; 4], &[2, 2, 1]), idx(&[0; 4], &[2, 2, 1]));
    let err = sc::vertical_slash(&q, &k, &v, &vi, &si, &AttnOptions::default(), None).unwrap_err().to_string();
    assert!(err.contains("causal"), "{err}");

    // Varlen: boundaries that do not fit the packed tensors.
    let (qp, kp, vp) = (q.flatten_to(1).unwrap(), k.flatten_to(1).unwrap(), v.flatten_to(1).unwrap());
    let (good, short, two, f32_cu) = (idx(&[0, 16, 32], &[3]), idx(&[0, 16, 30], &[3]), idx(&[0, 32], &[2]), f32s(&idx(&[0, 16, 32], &[3])));
    let seqs = |cu_q, max_q| VarlenSeqs { cu_seqlens_q: cu_q, cu_seqlens_k: &good, max_seqlen_q: max_q, max_seqlen_k: 16 };
    assert_err(sc::varlen(&qp, &kp, &vp, &seqs(&short, 16), &Pattern::Dense, &c, None), "cu_seqlens_q", "30");
    assert_err(sc::varlen(&qp, &kp, &vp, &seqs(&good, 8), &Pattern::Dense, &c, None), "cu_seqlens_q", "max_seqlen_q");
    assert_err(sc::varlen(&qp, &kp, &vp, &seqs(&two, 16), &Pattern::Dense, &c, None), "cu_seqlens_k", "batch + 1");
    assert_err(sc::varlen(&qp, &kp, &vp, &seqs(&f32_cu, 16), &Pattern::Dense, &c, None), "cu_seqlens_q", "i32 or u32");

    // Decode: keys past the capacity, a page outside the cache, source shapes.
    let p = Problem::<bf16>::new(vec![1; 2], vec![20, 30], 32, (4, 2), 32, 11);
    let t = decode_tensors(&p, 16);
    let opts = decode_opts(&c);
    let (long, bad_table) = (idx(&[20, 40], &[2]), idx(&[0, 1, 2, 9], &[2, 2]));
    let cache = |seqlens, table| DecodeCache { k: &t.k, v: &t.v, seqlens_k: seqlens, block_table: Some(table) };
    assert_err(sc::decode(&t.q, &cache(&long, &t.table), &DecodeSource::Dense, &opts, None), "seqlens_k", "0..=32");
    assert_err(sc::decode(&t.q, &cache(&t.seqlens, &bad_table), &DecodeSource::Dense, &opts, None), "block_table", "out of range");
    let topk = DecodeSource::TopK { topk: 4, indices: &idx(&[0; 2 * 2 * 3], &[2, 2, 3]) };
    assert_err(sc::decode(&t.q, &cache(&t.seqlens, &t.table), &topk, &opts, None), "indices", "[batch * q_len, heads_kv, topk]");
    let bad_q = cpu(&vec![bf16::ZERO; 2 * 4 * 32], &[2, 1, 4, 32]).to_dtype(candle_core::DType::F16).unwrap();
    assert_err(sc::decode(&bad_q, &cache(&t.seqlens, &t.table), &DecodeSource::Dense, &opts, None), "k_cache", "one dtype");
}
