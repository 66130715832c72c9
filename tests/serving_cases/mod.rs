//! Varlen and paged batches shared by the serving-layout tests (tests/paged_sim.rs,
//! tests/varlen_sim.rs, tests/serving_matrix.rs): sequences with their own lengths and data,
//! their pages in a shuffled block table, the contiguous run a paged run must equal bit for
//! bit.
#![allow(dead_code)]

use sparse_attn::sim::{HostTensors, PagedCache, SimBackend};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Bshd, Varlen};

use crate::attention_cases::Rng;

/// A batch whose sequences have (query rows, keys), their packed q, and each sequence's
/// keys and values in its own rows (`[len_k, heads_kv, d]` each).
pub struct Batch<T> {
    pub lens: Vec<(usize, usize)>,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub d: usize,
    pub q: Vec<T>,
    pub k: Vec<Vec<T>>,
    pub v: Vec<Vec<T>>,
}

impl<T: AttnDtype> Batch<T> {
    /// Sequence 1 starts with sequence 0's first `shared` keys and values (a shared prefix).
    pub fn new(lens: Vec<(usize, usize)>, heads_q: usize, heads_kv: usize, d: usize, shared: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut tensor = |n: usize| (0..n).map(|_| T::from_f32(rng.normal() as f32)).collect::<Vec<T>>();
        let total_q: usize = lens.iter().map(|l| l.0).sum();
        let q = tensor(total_q * heads_q * d);
        let mut k: Vec<Vec<T>> = lens.iter().map(|l| tensor(l.1 * heads_kv * d)).collect();
        let mut v: Vec<Vec<T>> = lens.iter().map(|l| tensor(l.1 * heads_kv * d)).collect();
        let n = shared * heads_kv * d;
        let (k0, v0) = (k[0][..n].to_vec(), v[0][..n].to_vec());
        k[1][..n].copy_from_slice(&k0);
        v[1][..n].copy_from_slice(&v0);
        Self { lens, heads_q, heads_kv, d, q, k, v }
    }
    pub fn varlen(&self) -> Varlen {
        let prefix = |f: &dyn Fn(&(usize, usize)) -> usize| {
            std::iter::once(0).chain(self.lens.iter().scan(0, |a, l| {
                *a += f(l) as i32;
                Some(*a)
            }))
            .collect::<Vec<i32>>()
        };
        Varlen::new(prefix(&|l| l.0), prefix(&|l| l.1)).unwrap()
    }
    /// The batch and the longest sequences.
    pub fn shape(&self) -> AttnShape {
        let max_q = self.lens.iter().map(|l| l.0).max().unwrap();
        let max_k = self.lens.iter().map(|l| l.1).max().unwrap();
        AttnShape::new(self.lens.len(), max_q.max(1), max_k.max(1), self.heads_q, self.heads_kv, self.d).unwrap()
    }
}

/// The pages of a batch: a block table with pages in a shuffled order, sequence 1 reusing
/// sequence 0's pages for its first `shared_pages` pages, and the caches in NHD
/// (`[pages, page_size, heads_kv, d]`) or HND (`[pages, heads_kv, page_size, d]`) layout.
pub struct Paged<T> {
    pub k: Vec<T>,
    pub v: Vec<T>,
    pub layout: Bshd,
    pub page_size: usize,
    pub num_pages: usize,
    pub block_table: Vec<i32>,
    pub max_pages: usize,
    pub seqlens_k: Vec<i32>,
}

pub fn page<T: AttnDtype>(batch: &Batch<T>, page_size: usize, hnd: bool, shared_pages: usize, seed: u64) -> Paged<T> {
    let (d, heads_kv) = (batch.d, batch.heads_kv);
    let max_pages = batch.lens.iter().map(|l| l.1.div_ceil(page_size)).max().unwrap().max(1);
    // Page numbers: every (sequence, page) gets its own, shuffled, but sequence 1's first
    // pages are sequence 0's.
    let mut owners: Vec<(usize, usize)> = Vec::new();
    for (b, l) in batch.lens.iter().enumerate() {
        for p in 0..l.1.div_ceil(page_size) {
            if !(b == 1 && p < shared_pages) {
                owners.push((b, p));
            }
        }
    }
    let mut rng = Rng::new(seed);
    for i in (1..owners.len()).rev() {
        owners.swap(i, rng.below(i + 1));
    }
    let num_pages = owners.len() + 3; // a few pages no sequence uses
    let mut block_table = vec![-1i32; batch.lens.len() * max_pages];
    for (page, &(b, p)) in owners.iter().enumerate() {
        block_table[b * max_pages + p] = page as i32;
    }
    for p in 0..shared_pages {
        block_table[max_pages + p] = block_table[p];
    }
    let layout = if hnd {
        Bshd { batch: heads_kv * page_size * d, seq: d, head: page_size * d }
    } else {
        Bshd::contiguous(page_size, heads_kv, d)
    };
    let junk = T::from_f32(7.0);
    let (mut k, mut v) = (vec![junk; num_pages * page_size * heads_kv * d], vec![junk; num_pages * page_size * heads_kv * d]);
    for (b, l) in batch.lens.iter().enumerate() {
        for j in 0..l.1 {
            let pg = block_table[b * max_pages + j / page_size] as usize;
            for h in 0..heads_kv {
                let dst = layout.offset(pg, j % page_size, h);
                let src = (j * heads_kv + h) * d;
                k[dst..dst + d].copy_from_slice(&batch.k[b][src..src + d]);
                v[dst..dst + d].copy_from_slice(&batch.v[b][src..src + d]);
            }
        }
    }
    let seqlens_k = batch.lens.iter().map(|l| l.1 as i32).collect();
    Paged { k, v, layout, page_size, num_pages, block_table, max_pages, seqlens_k }
}

pub fn cache<T>(p: &Paged<T>) -> PagedCache<'_, T> {
    PagedCache { k: &p.k, v: &p.v, layout: p.layout, page_size: p.page_size, num_pages: p.num_pages, block_table: &p.block_table, max_pages: p.max_pages, seqlens_k: &p.seqlens_k }
}

/// The contiguous varlen run of the same data.
pub fn contiguous<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(sim: &SimBackend, b: &Batch<T>, opts: &AttnOptions, source: &sparse_attn::Source<D>) -> sparse_attn::sim::SimAttention<T> {
    let (k, v): (Vec<T>, Vec<T>) = (b.k.concat(), b.v.concat());
    sim.attention_varlen(&b.shape(), &b.varlen(), opts, HostTensors { q: &b.q, k: &k, v: &v, sinks: None }, source).unwrap()
}

/// The storage bits of 16-bit elements.
pub fn bits<T: AttnDtype>(x: &[T]) -> Vec<u16> {
    bytemuck::cast_slice::<T, u16>(x).to_vec()
}

/// Runs `source` paged and contiguous, and asserts the two give the same output and LSE
/// bits.
pub fn assert_paged_equals_contiguous<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(sim: &SimBackend, batch: &Batch<T>, paged: &Paged<T>, opts: &AttnOptions, source: &sparse_attn::Source<D>, at: &str) {
    let want = contiguous(sim, batch, opts, source);
    let got = sim.attention_paged(&batch.shape(), &batch.varlen(), cache(paged), opts, &batch.q, source).unwrap();
    assert_eq!(bits(&got.out), bits(&want.out), "{at}: output");
    let lse_bits = |l: &[f32]| l.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(lse_bits(&got.lse), lse_bits(&want.lse), "{at}: lse");
}

pub fn layout_name(hnd: bool) -> &'static str {
    if hnd {
        "HND"
    } else {
        "NHD"
    }
}
