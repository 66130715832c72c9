//! Split-KV decode on the PTX simulator against the varlen CPU reference: every key source
//! (dense, block-sparse at block sizes 16 to 128, top-k) x f16 and bf16 x every head_dim,
//! with q_len 1, 4 and 16, GQA 4:1 and 8:1, split counts 1, 3 and 16, contiguous and paged
//! caches, padded and packed queries; sequences whose new tokens see no key; a plan replayed
//! over growing lengths (as a captured CUDA graph would be); the split heuristic's work
//! counters; and what the host refuses. Memcheck is on throughout.

mod attention_cases;
mod common;
mod serving_cases;

use attention_cases::{out_tolerance_at, Rng, LSE_TOLERANCE};
use sparse_attn::plan::decode::{DecodeOptions, DecodeSource};
use sparse_attn::reference::{varlen_attention, VarlenInputs, VarlenOutput};
use sparse_attn::sim::{PagedCache, SimBackend};
use sparse_attn::sim_decode::{DecodeCache, SimDecode};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Bshd, DType, Error, Varlen};

/// One decode problem: per sequence its new tokens and its keys (the new tokens' included),
/// the caches at capacity `cap`, and q.
struct Problem<T> {
    q_lens: Vec<usize>,
    seqlens_k: Vec<i32>,
    cap: usize,
    heads_q: usize,
    heads_kv: usize,
    d: usize,
    /// q packed: sequence b's tokens at rows cu_q[b].. (padded problems have q_len each).
    q: Vec<T>,
    /// `[batch, cap, heads_kv, d]`.
    k: Vec<T>,
    v: Vec<T>,
}

impl<T: AttnDtype> Problem<T> {
    fn new(q_lens: Vec<usize>, seqlens_k: Vec<i32>, cap: usize, heads: (usize, usize), d: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let total_q: usize = q_lens.iter().sum();
        let batch = q_lens.len();
        let (heads_q, heads_kv) = heads;
        let q = rng.tensor(total_q * heads_q * d);
        let k = rng.tensor(batch * cap * heads_kv * d);
        let v = rng.tensor(batch * cap * heads_kv * d);
        Self { q_lens, seqlens_k, cap, heads_q, heads_kv, d, q, k, v }
    }
    fn batch(&self) -> usize {
        self.q_lens.len()
    }
    fn max_q(&self) -> usize {
        *self.q_lens.iter().max().unwrap()
    }
    fn shape(&self) -> AttnShape {
        AttnShape::new(self.batch(), self.max_q(), self.cap, self.heads_q, self.heads_kv, self.d).unwrap()
    }
    fn varlen(&self) -> Varlen {
        let prefix = |xs: Vec<usize>| std::iter::once(0).chain(xs.iter().scan(0, |a, &x| { *a += x as i32; Some(*a) })).collect::<Vec<i32>>();
        Varlen::new(prefix(self.q_lens.clone()), prefix(self.seqlens_k.iter().map(|&k| k as usize).collect())).unwrap()
    }
    /// The varlen reference's inputs: each sequence's new tokens and its first seqlens_k
    /// cache rows, packed.
    fn reference_inputs(&self) -> VarlenInputs {
        let row = self.heads_kv * self.d;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for (b, &lk) in self.seqlens_k.iter().enumerate() {
            let from = b * self.cap * row;
            k.extend_from_slice(&self.k[from..from + lk as usize * row]);
            v.extend_from_slice(&self.v[from..from + lk as usize * row]);
        }
        let max_k = (*self.seqlens_k.iter().max().unwrap() as usize).max(1);
        let shape = AttnShape::new(self.batch(), self.max_q(), max_k, self.heads_q, self.heads_kv, self.d).unwrap();
        VarlenInputs::new(shape, self.varlen(), &self.q, &k, &v).unwrap()
    }
    /// The caches in pages of `page_size` tokens, shuffled (NHD).
    fn paged(&self, page_size: usize, seed: u64) -> (Vec<T>, Vec<T>, Vec<i32>, usize, usize) {
        let max_pages = self.cap.div_ceil(page_size);
        let num_pages = self.batch() * max_pages;
        let mut order: Vec<usize> = (0..num_pages).collect();
        let mut rng = Rng::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let row = self.heads_kv * self.d;
        let (mut k, mut v) = (vec![T::from_f32(9.0); num_pages * page_size * row], vec![T::from_f32(9.0); num_pages * page_size * row]);
        let mut table = vec![0i32; self.batch() * max_pages];
        for b in 0..self.batch() {
            for p in 0..max_pages {
                let page = order[b * max_pages + p];
                table[b * max_pages + p] = page as i32;
                for j in p * page_size..((p + 1) * page_size).min(self.cap) {
                    let src = (b * self.cap + j) * row;
                    let dst = (page * page_size + j % page_size) * row;
                    k[dst..dst + row].copy_from_slice(&self.k[src..src + row]);
                    v[dst..dst + row].copy_from_slice(&self.v[src..src + row]);
                }
            }
        }
        (k, v, table, max_pages, num_pages)
    }
}

/// The keys row `i` (of `lq` new tokens, `lk` keys) sees: up to its causal limit.
fn visible(i: usize, lq: usize, lk: usize, causal: bool) -> usize {
    if causal {
        (i as i64 + lk as i64 - lq as i64 + 1).clamp(0, lk as i64) as usize
    } else {
        lk
    }
}

/// The reference of `source` on `p`: varlen attention where each new token attends its
/// source's keys below its limit.
fn reference<T: AttnDtype>(p: &Problem<T>, causal: bool, source: &DecodeSource<Vec<i32>>) -> VarlenOutput {
    let opts = AttnOptions { causal, softmax_scale: None, return_lse: true };
    let group = p.heads_q / p.heads_kv;
    let cu_q = p.varlen().cu_seqlens_q().to_vec();
    varlen_attention(&p.reference_inputs(), &opts, |b, h, i, lq, lk, list| {
        let limit = visible(i, lq, lk, causal);
        let hk = h / group;
        match source {
            DecodeSource::Dense => list.extend(0..limit),
            DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => {
                let row = b * p.heads_kv + hk;
                let count = (block_count[row].max(0) as usize).min(*max_blocks);
                for &id in &block_index[row * max_blocks..][..count] {
                    let start = id as usize * block_size;
                    list.extend((start..start + block_size).filter(|&key| key < limit));
                }
            }
            DecodeSource::TopK { topk, indices } => {
                let r = cu_q[b] as usize + i;
                let keys = &indices[(r * p.heads_kv + hk) * topk..][..*topk];
                list.extend(keys.iter().filter(|&&key| key >= 0 && (key as usize) < limit).map(|&key| key as usize));
            }
        }
    })
    .unwrap()
}

/// A random source for `p`: block lists of ascending ids below each sequence's blocks, or
/// top-k rows of distinct keys below each sequence's keys (-1 padded, some past the causal
/// limit).
fn random_source<T: AttnDtype>(rng: &mut Rng, p: &Problem<T>, kind: usize, block_size: usize) -> DecodeSource<Vec<i32>> {
    let total_q: usize = p.q_lens.iter().sum();
    match kind {
        0 => DecodeSource::Dense,
        1 => {
            let max_blocks = p.cap.div_ceil(block_size);
            let (mut count, mut index) = (Vec::new(), Vec::new());
            for b in 0..p.batch() {
                let blocks = (p.seqlens_k[b] as usize).div_ceil(block_size);
                for _ in 0..p.heads_kv {
                    let mut ids: Vec<i32> = (0..blocks as i32).filter(|_| rng.chance(0.5)).collect();
                    count.push(ids.len() as i32);
                    ids.resize(max_blocks, -1);
                    index.extend(ids);
                }
            }
            DecodeSource::BlockSparse { block_size, max_blocks, block_count: count, block_index: index }
        }
        _ => {
            let topk = 40;
            let mut indices = Vec::new();
            for (b, &lq) in p.q_lens.iter().enumerate() {
                for _ in 0..lq * p.heads_kv {
                    let mut row: Vec<i32> = (0..p.seqlens_k[b]).filter(|_| rng.chance(0.3)).take(topk).collect();
                    row.resize(topk, -1);
                    indices.extend(row);
                }
            }
            let _ = total_q;
            DecodeSource::TopK { topk, indices }
        }
    }
}

/// Holds a decode result to the reference (the LSE transposed from `[batch, heads, q_len]`
/// when padded).
fn compare<T: AttnDtype>(at: &str, p: &Problem<T>, packed: bool, got: &SimDecode<T>, want: &VarlenOutput) {
    let out: Vec<f32> = got.out.iter().map(|x| x.to_f32()).collect();
    let lse = if packed {
        got.lse.clone()
    } else {
        // Padded: every sequence has q_len = max_q tokens, so packed row b * q_len + t.
        let (q_len, total) = (p.max_q(), p.batch() * p.max_q());
        let mut l = vec![0f32; p.heads_q * total];
        for b in 0..p.batch() {
            for h in 0..p.heads_q {
                for t in 0..q_len {
                    l[h * total + b * q_len + t] = got.lse[(b * p.heads_q + h) * q_len + t];
                }
            }
        }
        l
    };
    serving_cases::compare(at, T::DTYPE, want, &out, &lse);
}

fn run_case<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, case: usize, kind: usize, d: usize) {
    let q_len = [1, 4, 16][case % 3];
    let heads = [(8, 2), (8, 1)][case % 2];
    let splits = [1, 3, 16][(case / 2) % 3];
    let packed = case % 4 == 3;
    let paged = case % 3 == 1;
    let block_size = [16, 32, 64, 128][case % 4];
    // A long sequence, a short one whose first tokens see nothing causally, one in between.
    let q_lens = if packed { vec![q_len, 1, q_len.min(3)] } else { vec![q_len; 3] };
    let p = Problem::<T>::new(q_lens, vec![300, 9, 130], 300, heads, d, case as u64);
    let mut rng = Rng::new(1000 + case as u64);
    let source = random_source(&mut rng, &p, kind, block_size);
    let causal = kind == 2 || !case.is_multiple_of(5);
    let opts = DecodeOptions { causal, softmax_scale: None, return_lse: true, splits: Some(splits), sm_count: 132 };
    let varlen = p.varlen();
    let shape = p.shape();
    let (pk, pv, table, max_pages, num_pages);
    let cache = if paged {
        (pk, pv, table, max_pages, num_pages) = p.paged(32, case as u64);
        DecodeCache::Paged(PagedCache { k: &pk, v: &pv, layout: Bshd::contiguous(32, p.heads_kv, d), page_size: 32, num_pages, block_table: &table, max_pages, seqlens_k: &p.seqlens_k })
    } else {
        DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k }
    };
    let at = format!("case {case}: {} {} d{d} q_len {q_len} heads {heads:?} splits {splits} packed {packed} paged {paged} causal {causal}", source.name(), T::DTYPE.name());
    let got = sim.decode(&shape, &opts, &p.q, packed.then_some(&varlen), cache, &source).unwrap_or_else(|e| panic!("{at}: {e}"));
    compare(&at, &p, packed, &got, &reference(&p, causal, &source));
}

#[test]
fn decode_matches_the_reference_for_every_source_dtype_and_head_dim() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let mut case = 0;
    for kind in 0..3 {
        for &d in sparse_attn::params::HEAD_DIMS {
            for bf16 in [true, false] {
                if bf16 {
                    run_case::<half::bf16>(&sim, case, kind, d);
                } else {
                    run_case::<half::f16>(&sim, case, kind, d);
                }
                case += 1;
            }
        }
    }
}

#[test]
fn one_plan_replays_over_growing_lengths() {
    // A plan depends on the capacity only: the same shape, split count and workspace size
    // serve every step while the sequences grow, as a captured CUDA graph replays.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, splits: None, sm_count: 132 };
    let mut splits = None;
    for (step, lens) in [[1, 1], [60, 7], [200, 64], [511, 512]].iter().enumerate() {
        let p = Problem::<half::bf16>::new(vec![1, 1], lens.to_vec(), 512, (8, 2), 64, 77);
        let got = sim.decode(&p.shape(), &opts, &p.q, None, DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k }, &DecodeSource::<Vec<i32>>::Dense).unwrap();
        assert_eq!(*splits.get_or_insert(got.splits), got.splits, "step {step}: the split count follows the capacity");
        compare(&format!("step {step}"), &p, false, &got, &reference(&p, true, &DecodeSource::Dense));
    }
}

#[test]
fn bad_decode_launches_are_refused() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let p = Problem::<half::f16>::new(vec![2, 2], vec![100, 50], 128, (8, 2), 64, 5);
    let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, splits: None, sm_count: 132 };
    let dense = DecodeSource::<Vec<i32>>::Dense;
    let err = |e: Error| e.to_string();
    // q_len past 16.
    let long = AttnShape::new(1, 17, 128, 8, 2, 64).unwrap();
    let q17 = vec![half::f16::ZERO; 17 * 8 * 64];
    let e = sim.decode(&long, &opts, &q17, None, DecodeCache::Contiguous { k: &p.k[..128 * 2 * 64], v: &p.v[..128 * 2 * 64], seqlens_k: &[10] }, &dense).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "q_len", .. }), "{}", err(e));
    // Zero splits.
    let e = sim.decode(&p.shape(), &DecodeOptions { splits: Some(0), ..opts }, &p.q, None, cache, &dense).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "splits", .. }), "{}", err(e));
    // A block size the kernel does not take.
    let bs = DecodeSource::BlockSparse { block_size: 48, max_blocks: 3, block_count: vec![1; 4], block_index: vec![0; 12] };
    let e = sim.decode(&p.shape(), &opts, &p.q, None, cache, &bs).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "block_size", .. }), "{}", err(e));
    // A host seqlens_k past the capacity.
    let e = sim.decode(&p.shape(), &opts, &p.q, None, DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &[129, 5] }, &dense).unwrap_err();
    assert!(matches!(e, Error::InvalidCuSeqlens { tensor: "seqlens_k", .. }), "{}", err(e));
    // A block id past the sequence, on the host.
    let bs = DecodeSource::BlockSparse { block_size: 64, max_blocks: 2, block_count: vec![2, 1, 1, 1], block_index: vec![0, 1, 0, -1, 1, -1, 0, -1] };
    let e = sim.decode(&p.shape(), &opts, &p.q, None, cache, &bs).unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { tensor: "block_index", .. }), "{}", err(e));
}

#[test]
fn device_indices_past_the_sequence_are_skipped_in_bounds() {
    // Without host validation (the plan on device buffers), block ids and top-k keys past
    // the sequence, negative or huge, are skipped: the result is the reference over the
    // valid ones, and memcheck sees no stray access.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let p = Problem::<half::bf16>::new(vec![1, 1], vec![100, 40], 128, (4, 1), 64, 9);
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, splits: Some(2), sm_count: 132 };
    let wild = DecodeSource::BlockSparse { block_size: 32, max_blocks: 4, block_count: vec![9, 3], block_index: vec![0, 3, 7, i32::MAX, -5, 1, 2, 0] };
    let valid = DecodeSource::BlockSparse { block_size: 32, max_blocks: 4, block_count: vec![2, 1], block_index: vec![0, 3, -1, -1, 1, -1, -1, -1] };
    let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
    let got = sim.decode_device(&p.shape(), &opts, &p.q, None, cache, &wild).unwrap();
    compare("wild block ids", &p, false, &got, &reference(&p, true, &valid));
    let _ = (out_tolerance_at(DType::BF16, 1.0), LSE_TOLERANCE);
}
