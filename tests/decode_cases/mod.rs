//! Decode problems shared by tests/decode_sim.rs (the simulator) and tests/gpu_decode.rs (a
//! GPU): per-sequence new tokens and cached keys, their caches contiguous or paged, random
//! block lists and top-k rows, and the varlen CPU reference a decode step equals.
#![allow(dead_code)]

use sparse_attn::plan::decode::DecodeSource;
use sparse_attn::reference::{varlen_attention, VarlenInputs, VarlenOutput};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Varlen};

use crate::common::Rng;

/// One decode problem: per sequence its new tokens and its keys (the new tokens' included),
/// the caches at capacity `cap`, and q.
pub struct Problem<T> {
    pub q_lens: Vec<usize>,
    pub seqlens_k: Vec<i32>,
    pub cap: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub d: usize,
    /// q packed: sequence b's tokens at rows cu_q[b].. (padded problems have q_len each).
    pub q: Vec<T>,
    /// `[batch, cap, heads_kv, d]`.
    pub k: Vec<T>,
    pub v: Vec<T>,
}

impl<T: AttnDtype> Problem<T> {
    pub fn new(q_lens: Vec<usize>, seqlens_k: Vec<i32>, cap: usize, heads: (usize, usize), d: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let total_q: usize = q_lens.iter().sum();
        let batch = q_lens.len();
        let (heads_q, heads_kv) = heads;
        let q = rng.tensor(total_q * heads_q * d);
        let k = rng.tensor(batch * cap * heads_kv * d);
        let v = rng.tensor(batch * cap * heads_kv * d);
        Self { q_lens, seqlens_k, cap, heads_q, heads_kv, d, q, k, v }
    }
    pub fn batch(&self) -> usize {
        self.q_lens.len()
    }
    pub fn max_q(&self) -> usize {
        *self.q_lens.iter().max().unwrap()
    }
    pub fn shape(&self) -> AttnShape {
        AttnShape::new(self.batch(), self.max_q(), self.cap, self.heads_q, self.heads_kv, self.d).unwrap()
    }
    pub fn varlen(&self) -> Varlen {
        let prefix = |xs: Vec<usize>| std::iter::once(0).chain(xs.iter().scan(0, |a, &x| { *a += x as i32; Some(*a) })).collect::<Vec<i32>>();
        Varlen::new(prefix(self.q_lens.clone()), prefix(self.seqlens_k.iter().map(|&k| k as usize).collect())).unwrap()
    }
    /// The varlen reference's inputs: each sequence's new tokens and its first seqlens_k
    /// cache rows, packed.
    pub fn reference_inputs(&self) -> VarlenInputs {
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
    pub fn paged(&self, page_size: usize, seed: u64) -> (Vec<T>, Vec<T>, Vec<i32>, usize, usize) {
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
pub fn visible(i: usize, lq: usize, lk: usize, causal: bool) -> usize {
    if causal {
        (i as i64 + lk as i64 - lq as i64 + 1).clamp(0, lk as i64) as usize
    } else {
        lk
    }
}

/// The reference of `source` on `p`: varlen attention where each new token attends its
/// source's keys below its limit.
pub fn reference<T: AttnDtype>(p: &Problem<T>, causal: bool, source: &DecodeSource<Vec<i32>>) -> VarlenOutput {
    let opts = AttnOptions { causal, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    reference_with(p, &opts, None, source)
}

/// [`reference`] under `opts` (softcap, window), with per-head `sinks`.
pub fn reference_with<T: AttnDtype>(p: &Problem<T>, opts: &AttnOptions, sinks: Option<&[f32]>, source: &DecodeSource<Vec<i32>>) -> VarlenOutput {
    let causal = opts.causal;
    let group = p.heads_q / p.heads_kv;
    let cu_q = p.varlen().cu_seqlens_q().to_vec();
    let inputs = p.reference_inputs();
    let inputs = match sinks {
        Some(s) => inputs.with_sinks(s),
        None => inputs,
    };
    varlen_attention(&inputs, opts, |b, h, i, lq, lk, list| {
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
pub fn random_source<T: AttnDtype>(rng: &mut Rng, p: &Problem<T>, kind: usize, block_size: usize) -> DecodeSource<Vec<i32>> {
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

/// Holds a decode result (`out` like q, `lse` as the decode writes it) to the reference
/// (the LSE transposed from `[batch, heads, q_len]` when padded).
pub fn compare<T: AttnDtype>(at: &str, p: &Problem<T>, packed: bool, out: &[T], lse: &[f32], want: &VarlenOutput) {
    let out: Vec<f32> = out.iter().map(|x| x.to_f32()).collect();
    let lse = if packed {
        lse.to_vec()
    } else {
        // Padded: every sequence has q_len = max_q tokens, so packed row b * q_len + t.
        let (q_len, total) = (p.max_q(), p.batch() * p.max_q());
        let mut l = vec![0f32; p.heads_q * total];
        for b in 0..p.batch() {
            for h in 0..p.heads_q {
                for t in 0..q_len {
                    l[h * total + b * q_len + t] = lse[(b * p.heads_q + h) * q_len + t];
                }
            }
        }
        l
    };
    crate::attention_cases::compare_varlen(at, T::DTYPE, want, &out, &lse);
}
