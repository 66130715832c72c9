//! DeepSeek's lightning indexer on the PTX simulator (kernels/indexer.cu + the chunked
//! selection of kernels/topk_select.cu, memcheck always on) against the f64 host reference
//! `indexer_topk_host`: random shapes (lengths not multiples of 64, batch > 1, one and two
//! index groups, causal, seq_q != seq_k), contiguous, varlen and paged keys, f16 / bf16 with
//! f32 or same-dtype weights. Rows whose k-th and (k+1)-th host scores are more than 1e-3
//! apart (relative) must match exactly; every row's kept set must score within 1e-4 of the
//! host optimum. Chunked runs equal unchunked ones bit for bit; NaN / inf inputs give the
//! host's index set; end to end, device indexer -> top-k attention equals host indexer ->
//! CPU top-k reference. Skips with the reason when the crate was built without kernels.

mod common;
mod indexer_cases;

use common::Rng;
use indexer_cases::{compare, inputs, Inputs};
use half::{bf16, f16};
use sparse_attn::pattern::indexer::{indexer_scores_host, indexer_topk_host, HostLayout, IndexerDims, IndexerWeight};
use sparse_attn::pattern::topk_select::{select_topk_grouped_host, select_topk_host, SelectDims};
use sparse_attn::pattern::TopkTokens;
use sparse_attn::plan::indexer::{workspace_len, IndexerBuffers, IndexerLayout, WeightDtype};
use sparse_attn::plan::DeviceBuffer;
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::sim_indexer::{IndexerHostTensors, SimIndexerRun};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, Error, SparsePattern, Varlen};

fn backend() -> Option<SimBackend> {
    for module in ["indexer", "topk_select"] {
        if let Err(e) = sparse_attn::ptx::module_for(module, 80) {
            println!("skipped: {e}");
            return None;
        }
    }
    Some(SimBackend::new(80))
}

/// Runs one problem on both sides with `chunk_rows` rows per chunk, and once unchunked;
/// returns the device's indices.
#[allow(clippy::too_many_arguments)]
fn run<T: AttnDtype + ptx_sim::Element, W: IndexerWeight + ptx_sim::Element>(
    sim: &SimBackend,
    label: &str,
    dims: &IndexerDims,
    layout: HostLayout<'_>,
    x: &Inputs<T, W>,
    top_k: usize,
    causal: bool,
    chunk_rows: usize,
) -> Vec<i32> {
    let tensors = IndexerHostTensors { q: &x.q, k: &x.k, w: &x.w };
    let total_q = layout.total_q(dims);
    let chunked = sim.indexer_topk(dims, layout, tensors, top_k, causal, SimIndexerRun { chunk_rows, racecheck: false }).unwrap();
    assert_eq!(chunked.chunks, total_q.div_ceil(chunk_rows.min(total_q)), "{label}: chunks");
    let whole = sim.indexer_topk(dims, layout, tensors, top_k, causal, SimIndexerRun { chunk_rows: total_q, racecheck: false }).unwrap();
    assert_eq!(chunked.indices, whole.indices, "{label}: chunked differs from unchunked");
    let scores = indexer_scores_host(&x.q, &x.k, &x.w, dims, layout, causal).unwrap();
    let want = indexer_topk_host(&x.q, &x.k, &x.w, dims, layout, top_k, causal).unwrap();
    let exact = compare(label, &whole.indices, &scores, dims, layout, top_k, causal, &want);
    // A million scores of one row always hold near ties at the k-th; shorter rows mostly not.
    assert!(dims.seq_k > 1 << 16 || exact * 2 >= total_q * dims.groups, "{label}: only {exact} rows had a clear gap");
    whole.indices
}

#[test]
fn contiguous_random_shapes_equal_the_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(21);
    // (batch, seq_q, seq_k, groups, heads, head_dim, k, causal)
    let cases = [
        (2, 37, 37, 1, 4, 64, 16, true),
        (1, 20, 150, 2, 8, 64, 33, true),
        (2, 9, 201, 1, 3, 128, 64, false),
        (1, 50, 30, 2, 2, 64, 7, true),
        (3, 5, 90, 1, 16, 64, 90, false),
    ];
    for (n, &(batch, seq_q, seq_k, groups, heads, head_dim, k, causal)) in cases.iter().enumerate() {
        let dims = IndexerDims { batch, seq_q, seq_k, groups, heads, head_dim };
        let label = format!("case {n} {dims:?} k {k} causal {causal}");
        let chunk = 1 + rng.below(batch * seq_q);
        if n % 2 == 0 {
            let x = inputs::<bf16, f32>(&mut rng, &dims, batch * seq_q, batch * seq_k, |v| v);
            run(&sim, &label, &dims, HostLayout::Contiguous, &x, k, causal, chunk);
        } else {
            let x = inputs::<f16, f16>(&mut rng, &dims, batch * seq_q, batch * seq_k, f16::from_f32);
            run(&sim, &label, &dims, HostLayout::Contiguous, &x, k, causal, chunk);
        }
    }
}

#[test]
fn varlen_and_paged_keys_equal_the_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(22);
    // Varlen: three sequences, one with more queries than keys.
    let varlen = Varlen::new(vec![0, 13, 13 + 40, 13 + 40 + 7], vec![0, 70, 70 + 40, 70 + 40 + 3]).unwrap();
    let dims = IndexerDims { batch: 3, seq_q: 40, seq_k: 70, groups: 2, heads: 4, head_dim: 64 };
    let x = inputs::<bf16, bf16>(&mut rng, &dims, varlen.total_q(), varlen.total_k(), bf16::from_f32);
    for causal in [true, false] {
        run(&sim, &format!("varlen causal {causal}"), &dims, HostLayout::Varlen(&varlen), &x, 5, causal, 11);
    }
    // Paged (decode: a few new tokens per sequence): pages of 16 in shuffled order.
    let varlen_q = Varlen::new(vec![0, 1, 3, 7], vec![0, 0, 0, 0]).unwrap();
    let seqlens_k = [100, 33, 64];
    let (page_size, max_pages, num_pages) = (16, 7, 24);
    let mut pages: Vec<i32> = (0..num_pages as i32).collect();
    for t in (1..pages.len()).rev() {
        pages.swap(t, rng.below(t + 1));
    }
    let block_table: Vec<i32> = (0..3 * max_pages).map(|e| pages[e % num_pages]).collect();
    let dims = IndexerDims { batch: 3, seq_q: 4, seq_k: 112, groups: 1, heads: 8, head_dim: 128 };
    let x = inputs::<f16, f32>(&mut rng, &dims, varlen_q.total_q(), num_pages * page_size, |v| v);
    let layout = HostLayout::Paged { varlen_q: &varlen_q, seqlens_k: &seqlens_k, block_table: &block_table, page_size };
    run(&sim, "paged", &dims, layout, &x, 20, true, 3);
}

#[test]
fn chunked_selection_of_caller_scores_equals_the_whole() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(23);
    let dims = SelectDims { batch: 2, seq_q: 23, heads: 2, seq_k: 300 };
    let rows = dims.batch * dims.seq_q;
    let scores: Vec<f32> = (0..rows * dims.heads * dims.seq_k).map(|_| rng.normal() as f32).collect();
    for causal in [true, false] {
        let want = select_topk_host(&scores, &dims, 40, causal).unwrap();
        let mut got = vec![-7; rows * dims.heads * 40];
        let mut first = 0;
        while first < rows {
            let n = (1 + rng.below(17)).min(rows - first);
            let chunk = &scores[first * dims.heads * dims.seq_k..][..n * dims.heads * dims.seq_k];
            got = sim.topk_select_rows(chunk, &dims, first..first + n, 1, 40, causal, &got).unwrap();
            first += n;
        }
        assert_eq!(got, want, "causal {causal}");
    }
}

/// GQA: one index set per kv head from per-query-head scores (group 4), chunk by chunk,
/// f32 and bf16, with NaN and infinities among the scores, equals the host's group sums.
#[test]
fn grouped_selection_of_query_head_scores_equals_the_host() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(30);
    let dims = SelectDims { batch: 2, seq_q: 9, heads: 2, seq_k: 200 };
    let (group, k, rows) = (4, 30, 18);
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0];
    let scores: Vec<f32> = (0..rows * dims.heads * group * dims.seq_k).map(|_| if rng.chance(0.01) { special[rng.below(4)] } else { rng.normal() as f32 }).collect();
    let scores_bf16: Vec<bf16> = scores.iter().map(|&x| bf16::from_f32(x)).collect();
    for causal in [true, false] {
        let want = select_topk_grouped_host(&scores, &dims, group, k, causal).unwrap();
        let want_bf16 = select_topk_grouped_host(&scores_bf16, &dims, group, k, causal).unwrap();
        let (mut got, mut got_bf16) = (vec![-7; rows * dims.heads * k], vec![-7; rows * dims.heads * k]);
        let per_row = dims.heads * group * dims.seq_k;
        for first in (0..rows).step_by(5) {
            let end = (first + 5).min(rows);
            got = sim.topk_select_rows(&scores[first * per_row..end * per_row], &dims, first..end, group, k, causal, &got).unwrap();
            got_bf16 = sim.topk_select_rows(&scores_bf16[first * per_row..end * per_row], &dims, first..end, group, k, causal, &got_bf16).unwrap();
        }
        assert_eq!(got, want, "f32 causal {causal}");
        assert_eq!(got_bf16, want_bf16, "bf16 causal {causal}");
    }
    // A group of one is plain selection.
    let plain = &scores[..rows * dims.heads * dims.seq_k];
    assert_eq!(select_topk_grouped_host(plain, &dims, 1, k, true).unwrap(), select_topk_host(plain, &dims, k, true).unwrap());
}

#[test]
fn nan_and_inf_give_the_hosts_index_set() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(24);
    let dims = IndexerDims { batch: 2, seq_q: 12, seq_k: 80, groups: 1, heads: 4, head_dim: 64 };
    let mut x = inputs::<bf16, f32>(&mut rng, &dims, 24, 160, |v| v);
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    for _ in 0..40 {
        let v = special[rng.below(3)];
        match rng.below(3) {
            0 => {
                let at = rng.below(x.q.len());
                x.q[at] = bf16::from_f32(v);
            }
            1 => {
                let at = rng.below(x.k.len());
                x.k[at] = bf16::from_f32(v);
            }
            _ => {
                let at = rng.below(x.w.len());
                x.w[at] = v;
            }
        }
    }
    let got = run(&sim, "nan", &dims, HostLayout::Contiguous, &x, 10, true, 5);
    assert!(got.iter().all(|&j| (-1..80).contains(&j)));
    // Rows whose every score is NaN still keep their first candidates.
    let nan_q = vec![bf16::NAN; x.q.len()];
    let y = Inputs { q: nan_q, k: x.k.clone(), w: x.w.clone() };
    let all_nan = sim.indexer_topk(&dims, HostLayout::Contiguous, IndexerHostTensors { q: &y.q, k: &y.k, w: &y.w }, 10, false, SimIndexerRun { chunk_rows: 24, racecheck: false }).unwrap();
    let want = indexer_topk_host(&y.q, &y.k, &y.w, &dims, HostLayout::Contiguous, 10, false).unwrap();
    assert_eq!(all_nan.indices, want);
}

#[test]
fn end_to_end_indexer_then_topk_attention() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(25);
    // GQA 4:1 with one index set per kv head (groups = heads_kv = 2).
    let shape = AttnShape::new(2, 45, 130, 8, 2, 64).unwrap();
    let dims = IndexerDims { batch: 2, seq_q: 45, seq_k: 130, groups: 2, heads: 4, head_dim: 64 };
    let x = inputs::<bf16, f32>(&mut rng, &dims, 90, 260, |v| v);
    let device = sim.indexer_topk(&dims, HostLayout::Contiguous, IndexerHostTensors { q: &x.q, k: &x.k, w: &x.w }, 24, true, SimIndexerRun { chunk_rows: 17, racecheck: false }).unwrap();
    let host = indexer_topk_host(&x.q, &x.k, &x.w, &dims, HostLayout::Contiguous, 24, true).unwrap();
    let q = rng.tensor::<bf16>(shape.q_len());
    let (k, v) = (rng.tensor::<bf16>(shape.kv_len()), rng.tensor::<bf16>(shape.kv_len()));
    let opts = AttnOptions { causal: true, ..AttnOptions::default() };
    let tokens = TopkTokens::new(2, 45, 2, 24, device.indices).unwrap();
    let out = sim.attention(&shape, &opts, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &tokens.source(&shape).unwrap()).unwrap();
    let inputs = sparse_attn::reference::RefInputs::new(shape, &q, &k, &v).unwrap();
    let want = sparse_attn::reference::topk_attention(&inputs, &opts, &TopkTokens::new(2, 45, 2, 24, host).unwrap()).unwrap();
    // bf16 output: half an ulp plus P's rounding, as the attention tests allow.
    let worst = out.out.iter().zip(&want.out).map(|(o, e)| (o.to_f32() as f64 - e).abs()).fold(0.0, f64::max);
    assert!(worst <= 1e-2, "end to end: output differs by {worst}");
}

#[test]
fn runs_are_bit_identical_and_racecheck_is_clean() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(26);
    let dims = IndexerDims { batch: 1, seq_q: 6, seq_k: 140, groups: 2, heads: 2, head_dim: 64 };
    let x = inputs::<bf16, f32>(&mut rng, &dims, 6, 140, |v| v);
    let t = IndexerHostTensors { q: &x.q, k: &x.k, w: &x.w };
    let a = sim.indexer_topk(&dims, HostLayout::Contiguous, t, 9, true, SimIndexerRun { chunk_rows: 2, racecheck: true }).unwrap();
    let b = sim.indexer_topk(&dims, HostLayout::Contiguous, t, 9, true, SimIndexerRun { chunk_rows: 4, racecheck: false }).unwrap();
    assert_eq!(a.indices, b.indices);
    assert!(a.score_counters.warp_instructions > 0 && a.select_counters.warp_instructions > 0);
}

#[test]
fn bad_arguments_are_refused_by_name() {
    let dims = IndexerDims { batch: 2, seq_q: 3, seq_k: 100, groups: 2, heads: 4, head_dim: 64 };
    let buf = |n: u64, len: usize| DeviceBuffer { addr: n << 24, len };
    let (rows, g, h, d) = (6, 2, 4, 64);
    let good = IndexerBuffers {
        q: buf(1, rows * g * h * d),
        k: buf(2, 2 * 100 * g * d),
        w: buf(3, rows * g * h),
        workspace: buf(4, workspace_len(&dims, 2).unwrap()),
        indices: buf(5, rows * g * 10),
    };
    let plan = |dims: &IndexerDims, k: usize, bufs: &IndexerBuffers| sparse_attn::plan::indexer::plan(dims, IndexerLayout::Contiguous, k, true, DType::BF16, WeightDtype::F32, bufs);
    let p = plan(&dims, 10, &good).unwrap();
    assert_eq!((p.chunk_rows(), p.chunks()), (2, 3));
    let [scores, select] = p.chunk(2).unwrap();
    assert_eq!((scores.grid(), select.grid(), scores.kernel(), select.kernel()), ([4, 1, 1], [4, 1, 1], "indexer_scores_bf16_d64", "topk_select_rows_f32"));
    assert!(matches!(p.chunk(3), Err(Error::InvalidParameter { name: "chunk", .. })));
    assert!(matches!(plan(&dims, 0, &good), Err(Error::ZeroDimension { dim: "k" })));
    assert!(matches!(plan(&dims, 101, &good), Err(Error::InvalidParameter { name: "k", .. })));
    assert!(matches!(plan(&IndexerDims { head_dim: 96, ..dims }, 10, &good), Err(Error::UnsupportedHeadDim { head_dim: 96, .. })));
    assert!(matches!(plan(&IndexerDims { heads: 129, ..dims }, 10, &good), Err(Error::InvalidParameter { name: "heads", .. })));
    assert!(matches!(plan(&IndexerDims { groups: 0, ..dims }, 10, &good), Err(Error::ZeroDimension { dim: "groups" })));
    for (name, bad) in [
        ("q", IndexerBuffers { q: buf(1, rows * g * h * d - 1), ..good }),
        ("k", IndexerBuffers { k: buf(2, 2 * 100 * g * d - 1), ..good }),
        ("w", IndexerBuffers { w: buf(3, rows * g * h - 1), ..good }),
        ("workspace", IndexerBuffers { workspace: buf(4, g * 100 - 1), ..good }),
        ("indices", IndexerBuffers { indices: buf(5, rows * g * 10 - 1), ..good }),
    ] {
        assert!(matches!(plan(&dims, 10, &bad), Err(Error::BufferTooSmall { tensor, .. }) if tensor == name), "{name}");
    }
    // k is read 16 bytes at a time; f32 weights 4.
    assert!(matches!(plan(&dims, 10, &IndexerBuffers { k: DeviceBuffer { addr: (2 << 24) + 8, ..good.k }, ..good }), Err(Error::InvalidParameter { name: "k", .. })));
    assert!(matches!(plan(&dims, 10, &IndexerBuffers { w: DeviceBuffer { addr: (3 << 24) + 2, ..good.w }, ..good }), Err(Error::InvalidParameter { name: "w", .. })));
    // Same-dtype weights need 2-byte alignment only.
    let w2 = IndexerBuffers { w: DeviceBuffer { addr: (3 << 24) + 2, ..good.w }, ..good };
    assert!(sparse_attn::plan::indexer::plan(&dims, IndexerLayout::Contiguous, 10, true, DType::BF16, WeightDtype::SameAsQ, &w2).is_ok());
    // The chunked selection's row range.
    let sd = SelectDims { batch: 2, seq_q: 3, heads: 1, seq_k: 10 };
    let rows_plan = |first: usize, n: usize| sparse_attn::plan::topk_select::plan_rows(&sd, first..first + n, 1, 2, true, sparse_attn::pattern::topk_select::ScoreDtype::F32, buf(1, 100), buf(2, 12));
    assert!(rows_plan(4, 2).is_ok());
    assert!(matches!(rows_plan(5, 2), Err(Error::InvalidParameter { name: "rows", .. })));
    assert!(matches!(rows_plan(0, 0), Err(Error::ZeroDimension { dim: "rows" })));
    let grouped = |group: usize, len: usize| sparse_attn::plan::topk_select::plan_rows(&sd, 0..2, group, 2, true, sparse_attn::pattern::topk_select::ScoreDtype::F32, buf(1, len), buf(2, 12));
    assert!(grouped(4, 80).is_ok());
    assert!(matches!(grouped(4, 79), Err(Error::BufferTooSmall { tensor: "scores", needed: 80, .. })));
    assert!(matches!(grouped(0, 80), Err(Error::ZeroDimension { dim: "group" })));
    // The host reference and the simulator check lengths too.
    let q = vec![bf16::ZERO; rows * g * h * d];
    let k = vec![bf16::ZERO; 2 * 100 * g * d];
    assert!(matches!(indexer_topk_host(&q, &k, &[0f32; 47], &dims, HostLayout::Contiguous, 10, true), Err(Error::WrongLength { tensor: "w", .. })));
    if let Some(sim) = backend() {
        let t = IndexerHostTensors { q: &q, k: &k, w: &[0f32; 48] };
        assert!(matches!(sim.indexer_topk(&dims, HostLayout::Contiguous, t, 10, true, SimIndexerRun { chunk_rows: 0, racecheck: false }), Err(Error::BufferTooSmall { tensor: "workspace", .. })));
    }
}

/// About 30 s on the simulator: runs with SPARSE_ATTN_LONG_TESTS=1.
#[test]
fn a_million_keys_with_a_one_row_workspace() {
    if std::env::var("SPARSE_ATTN_LONG_TESTS").map_or(true, |v| v != "1") {
        println!("skipped: set SPARSE_ATTN_LONG_TESTS=1 for the 2^20-key run");
        return;
    }
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(27);
    // The selection's limits (k 2048, 2^20 keys), one row of workspace (4 MiB of f32).
    let dims = IndexerDims { batch: 1, seq_q: 2, seq_k: 1 << 20, groups: 1, heads: 1, head_dim: 64 };
    let x = inputs::<bf16, f32>(&mut rng, &dims, 2, 1 << 20, |v| v.abs() + 0.5);
    run(&sim, "2^20 keys", &dims, HostLayout::Contiguous, &x, 2048, true, 1);
}

/// Lengths and page tables that live only on the device are not checked by the host: the
/// kernels must stay inside their buffers whatever they hold (memcheck is on). A sequence
/// with bad bounds gets empty rows; a key on a bad page scores NaN, as the host reference
/// scores it.
#[test]
fn corrupt_device_metadata_stays_in_bounds() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(28);
    let dims = IndexerDims { batch: 3, seq_q: 20, seq_k: 64, groups: 1, heads: 2, head_dim: 64 };
    let (total_q, total_k, top_k) = (30, 100, 8);
    let x = inputs::<bf16, f32>(&mut rng, &dims, total_q, total_k, |v| v);
    let run_plan = |layout: IndexerLayout<'_>, key_rows: usize| -> Vec<i32> {
        let bufs = IndexerBuffers {
            q: sim.upload(&x.q).unwrap(),
            k: sim.upload(&x.k[..key_rows * 64]).unwrap(),
            w: sim.upload(&x.w).unwrap(),
            workspace: sim.alloc::<f32>(workspace_len(&dims, 7).unwrap()).unwrap(),
            indices: sim.upload(&vec![-9; total_q * top_k]).unwrap(),
        };
        let plan = sparse_attn::plan::indexer::plan(&dims, layout, top_k, true, DType::BF16, WeightDtype::F32, &bufs).unwrap();
        for chunk in plan.launches() {
            let [scores, select] = chunk.unwrap();
            sim.launch(&scores, &Default::default()).unwrap();
            sim.launch(&select, &Default::default()).unwrap();
        }
        sim.download(bufs.indices).unwrap()
    };
    // Query bounds past total_q, a negative and a decreasing key bound, a sequence longer
    // than seq_k.
    for (cu_q, cu_k) in [([0, 13, 99_999, 30], [0, 5, 50, 100]), ([0, 10, 20, 30], [0, -4, 90, 20]), ([0, 10, 20, 30], [0, 90, 95, 100])] {
        let varlen = sparse_attn::plan::VarlenBuffers { cu_seqlens_q: sim.upload(&cu_q).unwrap(), cu_seqlens_k: sim.upload(&cu_k).unwrap(), total_q, total_k, host: None };
        let got = run_plan(IndexerLayout::Varlen(&varlen), total_k);
        assert!(got.iter().all(|&j| (-1..64).contains(&j)), "{cu_q:?} {cu_k:?}: {got:?}");
    }
    // Pages outside the cache in the table, and key counts past seq_k or negative.
    let varlen_q = Varlen::new(vec![0, 10, 20, 30], vec![0, 0, 0, 0]).unwrap();
    let (page_size, max_pages) = (16, 4);
    let block_table = [0, 1, -3, 2, 3, 99, 4, 5, 5, 4, 3, 2];
    for seqlens_k in [[64, 50, 40], [65, -1, 17]] {
        let paged = sparse_attn::plan::PagedKvBuffers {
            cu_seqlens_q: sim.upload(varlen_q.cu_seqlens_q()).unwrap(),
            total_q,
            seqlens_k: sim.upload(&seqlens_k).unwrap(),
            block_table: sim.upload(&block_table).unwrap(),
            max_pages,
            page_size,
            num_pages: 6,
            host: None,
        };
        let got = run_plan(IndexerLayout::Paged(&paged), 6 * page_size);
        assert!(got.iter().all(|&j| (-1..64).contains(&j)), "{seqlens_k:?}: {got:?}");
        if seqlens_k[0] == 64 {
            let layout = HostLayout::Paged { varlen_q: &varlen_q, seqlens_k: &seqlens_k, block_table: &block_table, page_size };
            let scores = indexer_scores_host(&x.q, &x.k[..6 * page_size * 64], &x.w, &dims, layout, true).unwrap();
            let want = indexer_topk_host(&x.q, &x.k[..6 * page_size * 64], &x.w, &dims, layout, top_k, true).unwrap();
            compare("bad pages", &got, &scores, &dims, layout, top_k, true, &want);
        }
    }
}

/// The simulator's work counts for DeepSeek's shape (64 heads of 128, one group): printed
/// per scored key, and bounded so that a regression in the inner loop shows. The inner loop
/// is 64 * 128 fmas per key, one per thread-instruction, plus a 16-byte shared load per 4.
#[test]
fn work_per_key_at_deepseeks_shape() {
    let Some(sim) = backend() else { return };
    let mut rng = Rng::new(29);
    let dims = IndexerDims { batch: 1, seq_q: 2, seq_k: 2048, groups: 1, heads: 64, head_dim: 128 };
    let x = inputs::<bf16, f32>(&mut rng, &dims, 2, 2048, |v| v);
    let t = IndexerHostTensors { q: &x.q, k: &x.k, w: &x.w };
    let r = sim.indexer_topk(&dims, HostLayout::Contiguous, t, 256, false, SimIndexerRun { chunk_rows: 2, racecheck: false }).unwrap();
    let keys = (2 * 2048) as f64;
    let (score, select) = (r.score_counters.thread_instructions as f64 / keys, r.select_counters.thread_instructions as f64 / keys);
    println!("thread-instructions per scored key: scores {score:.0} (64 x 128 = 8192 fma), selection {select:.1}");
    assert!(score < 8192.0 * 1.5, "scores: {score} thread-instructions per key");
}
