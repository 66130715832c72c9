//! The host estimators on varlen batches: each sequence's part of the batch descriptor is
//! exactly the estimate of that sequence alone, padding selects nothing, and the estimate
//! drives the varlen kernels on the simulator to the varlen reference.

mod attention_cases;
mod common;

use common::Rng;
use sparse_attn::reference::RefInputs;
use sparse_attn::pattern::vs_convert::{convert, convert_varlen, VsIndex};
use sparse_attn::pattern::{estimate_block_topk, estimate_block_topk_varlen, estimate_vertical_slash_varlen, BlockTopkConfig, VsEstimateConfig};
use sparse_attn::reference::{varlen_block_sparse_attention, VarlenInputs};
use sparse_attn::sim::HostTensors;
use sparse_attn::{AttnOptions, AttnShape, SparsePattern, Varlen};

type T = half::bf16;
const HQ: usize = 4;
const HKV: usize = 2;
const D: usize = 64;

/// Per sequence (query rows, keys): lengths 1, 63, 64, 65 and longer, an empty sequence,
/// one without keys, keys longer and shorter than the queries.
const LENS: [(usize, usize); 7] = [(1, 1), (63, 100), (64, 64), (0, 30), (65, 200), (130, 140), (5, 0)];

struct Batch {
    varlen: Varlen,
    shape: AttnShape,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
}

fn batch(seed: u64) -> Batch {
    let prefix = |f: fn(&(usize, usize)) -> usize| std::iter::once(0).chain(LENS.iter().scan(0, |a, l| { *a += f(l) as i32; Some(*a) })).collect::<Vec<i32>>();
    let varlen = Varlen::new(prefix(|l| l.0), prefix(|l| l.1)).unwrap();
    let max = |f: fn(&(usize, usize)) -> usize| LENS.iter().map(f).max().unwrap();
    let shape = AttnShape::new(LENS.len(), max(|l| l.0), max(|l| l.1), HQ, HKV, D).unwrap();
    let mut rng = Rng::new(seed);
    let (q, k, v) = (rng.tensor(varlen.total_q() * HQ * D), rng.tensor(varlen.total_k() * HKV * D), rng.tensor(varlen.total_k() * HKV * D));
    Batch { varlen, shape, q, k, v }
}

impl Batch {
    fn inputs(&self) -> VarlenInputs {
        VarlenInputs::new(self.shape, self.varlen.clone(), &self.q, &self.k, &self.v).unwrap()
    }
    /// Sequence `b` alone, as a padded problem of batch 1.
    fn sequence(&self, b: usize) -> RefInputs {
        let (lq, lk) = self.varlen.seqlens(b);
        let (q0, k0) = (self.varlen.cu_seqlens_q()[b] as usize, self.varlen.cu_seqlens_k()[b] as usize);
        let shape = AttnShape::new(1, lq, lk, HQ, HKV, D).unwrap();
        let rows = |x: &[T], from: usize, len: usize, heads: usize| x[from * heads * D..(from + len) * heads * D].to_vec();
        RefInputs::new(shape, &rows(&self.q, q0, lq, HQ), &rows(&self.k, k0, lk, HKV), &rows(&self.v, k0, lk, HKV)).unwrap()
    }
}

#[test]
fn block_topk_rows_of_each_sequence_are_its_own_estimate() {
    let b = batch(1);
    for per_kv_group in [false, true] {
        let config = BlockTopkConfig { top_k: 2, causal: true, force_sink: true, force_diagonal: true, per_kv_group };
        let est = estimate_block_topk_varlen(&b.inputs(), &config, 0.125).unwrap();
        est.validate(&b.shape).unwrap();
        let heads = if per_kv_group { HKV } else { HQ };
        let mut checked = 0;
        for (seq, &(lq, lk)) in LENS.iter().enumerate() {
            let alone = (lq > 0 && lk > 0).then(|| estimate_block_topk(&b.sequence(seq), &config, 0.125).unwrap());
            for h in 0..heads {
                for m in 0..est.row_blocks() {
                    let want: &[i32] = match &alone {
                        Some(a) if m < a.row_blocks() => a.blocks(0, h, m).unwrap(),
                        _ => &[],
                    };
                    assert_eq!(est.blocks(seq, h, m).unwrap(), want, "sequence {seq} head {h} row block {m}");
                    checked += usize::from(!want.is_empty());
                }
            }
        }
        assert!(checked >= 10, "only {checked} non-empty rows compared");
    }
}

/// Row `row` of `index` (its tiles and columns).
fn row(index: &VsIndex, row: usize) -> (Vec<i32>, Vec<i32>) {
    let (nnz_s, nnz_v) = (index.dims.nnz_s(), index.dims.nnz_v());
    let tiles = index.block_offset[row * nnz_s..][..index.block_count[row] as usize].to_vec();
    let columns = index.column_index[row * nnz_v..][..index.column_count[row] as usize].to_vec();
    (tiles, columns)
}

#[test]
fn vertical_slash_of_each_sequence_converts_to_its_own_estimate() {
    let b = batch(2);
    // Budgets above some sequences' key counts, so those rows are padded.
    let config = VsEstimateConfig { last_q: 16, vertical_size: 48, slash_size: 40, forced_first_columns: 3, forced_last_diagonals: 5, per_kv_group: false };
    let est = estimate_vertical_slash_varlen(&b.inputs(), &config, 0.125).unwrap();
    est.validate(&b.shape).unwrap();
    assert_eq!((est.nnz_v(), est.nnz_s()), (48, 40));
    let index = convert_varlen(&est, &b.shape, &b.varlen).unwrap();
    let row_blocks = index.dims.row_blocks();
    let mut checked = 0;
    for (seq, &(lq, lk)) in LENS.iter().enumerate() {
        let alone = (lq > 0 && lk > 0).then(|| {
            let inputs = b.sequence(seq);
            let vs = sparse_attn::pattern::vs_estimate::estimate_vertical_slash(&inputs, &config, 0.125).unwrap();
            convert(&vs, &inputs.shape).unwrap()
        });
        for h in 0..HQ {
            for m in 0..row_blocks {
                let got = row(&index, (seq * HQ + h) * row_blocks + m);
                let want = match &alone {
                    Some(a) if m < a.dims.row_blocks() => row(a, h * a.dims.row_blocks() + m),
                    _ => (vec![], vec![]),
                };
                assert_eq!(got, want, "sequence {seq} head {h} row block {m}");
                checked += usize::from(!want.0.is_empty());
            }
        }
    }
    assert!(checked >= 10, "only {checked} non-empty rows compared");
}

#[test]
fn a_varlen_estimate_drives_the_varlen_kernel_to_the_reference() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let b = batch(3);
    let config = BlockTopkConfig { top_k: 2, causal: true, force_sink: true, force_diagonal: false, per_kv_group: true };
    let est = estimate_block_topk_varlen(&b.inputs(), &config, 0.125).unwrap();
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let want = varlen_block_sparse_attention(&b.inputs(), &opts, &est).unwrap();
    let got = sim.attention_varlen(&b.shape, &b.varlen, &opts, HostTensors { q: &b.q, k: &b.k, v: &b.v, sinks: None }, &est.source(&b.shape).unwrap()).unwrap();
    assert_eq!(got.out.len(), want.out.len());
    for (i, (g, w)) in got.out.iter().zip(&want.out).enumerate() {
        let bound = attention_cases::out_tolerance_at(sparse_attn::DType::BF16, *w);
        assert!((g.to_f64() - w).abs() <= bound, "out[{i}]: {g} vs {w}");
    }
}
