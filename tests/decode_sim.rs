//! Split-KV decode on the PTX simulator against the varlen CPU reference: every key source
//! (dense, block-sparse at block sizes 16 to 128, top-k) x f16 and bf16 x every head_dim,
//! with q_len 1, 4 and 16, GQA 4:1 and 8:1, split counts 1, 3 and 16, contiguous and paged
//! caches, padded and packed queries; sequences whose new tokens see no key; a plan replayed
//! over growing lengths (as a captured CUDA graph would be); the split heuristic's work
//! counters; and what the host refuses. Memcheck is on throughout.

mod attention_cases;
mod common;
mod decode_cases;

use attention_cases::Rng;
use decode_cases::{random_source, reference, Problem};
use sparse_attn::plan::decode::{DecodeOptions, DecodeSource};
use sparse_attn::sim::{PagedCache, SimBackend};
use sparse_attn::sim_decode::{DecodeCache, SimDecode, SimDecodeRun};
use sparse_attn::{AttnDtype, AttnShape, Bshd, Error};

/// Holds a simulated decode step to the reference.
fn compare<T: AttnDtype>(at: &str, p: &Problem<T>, packed: bool, got: &SimDecode<T>, want: &sparse_attn::reference::VarlenOutput) {
    decode_cases::compare(at, p, packed, &got.out, &got.lse, want);
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
    let opts = DecodeOptions { causal, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: Some(splits), sm_count: 132 };
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
    // One plan, one set of buffers, launched step after step while the sequences grow: only
    // the device's seqlens_k and q change between steps, as in a captured CUDA graph.
    use sparse_attn::plan::decode::{plan, workspace_len, DecodeBuffers};
    use sparse_attn::plan::{AttnBuffers, AttnLayouts};
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let steps = [[1, 1], [60, 7], [200, 64], [511, 512]];
    let first = Problem::<half::bf16>::new(vec![2, 2], steps[0].to_vec(), 512, (8, 2), 64, 77);
    let shape = first.shape();
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count: 132 };
    let source = DecodeSource::<sparse_attn::plan::DeviceBuffer>::Dense;
    let attn = AttnBuffers {
        q: sim.upload(&first.q).unwrap(),
        k: sim.upload(&first.k).unwrap(),
        v: sim.upload(&first.v).unwrap(),
        out: sim.alloc::<half::bf16>(first.q.len()).unwrap(),
        lse: Some(sim.alloc::<f32>(shape.lse_len()).unwrap()),
        sinks: None,
        layouts: AttnLayouts::contiguous(&shape),
    };
    let seqlens = sim.upload(&first.seqlens_k).unwrap();
    let workspace = sim.alloc::<f32>(workspace_len(&shape, None, &opts, &source).unwrap()).unwrap();
    let bufs = DecodeBuffers { attn, seqlens_k: seqlens, host_seqlens_k: None, pages: None, packed: None, workspace };
    let step_plan = plan(&shape, half::bf16::DTYPE, &opts, &bufs, &source).unwrap();
    assert!(step_plan.splits > 1, "a batch of 2 x 2 kv heads is split");
    // A workspace one element short is refused, naming it.
    let short = DecodeBuffers { workspace: sparse_attn::plan::DeviceBuffer { len: workspace.len - 1, ..workspace }, ..bufs };
    let e = plan(&shape, half::bf16::DTYPE, &opts, &short, &source).unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { tensor: "workspace", .. }), "{e}");
    let write = |addr: u64, bytes: &[u8]| sim.device().write(ptx_sim::DevicePtr(addr), bytes).unwrap();
    for (step, lens) in steps.iter().enumerate() {
        // The same cache contents (seed 77), a new q per step, longer sequences.
        let mut p = Problem::<half::bf16>::new(vec![2, 2], lens.to_vec(), 512, (8, 2), 64, 77);
        p.q = Problem::<half::bf16>::new(vec![2, 2], lens.to_vec(), 512, (8, 2), 64, 100 + step as u64).q;
        write(bufs.seqlens_k.addr, bytemuck::cast_slice(&p.seqlens_k));
        write(attn.q.addr, bytemuck::cast_slice(&p.q));
        sim.launch(&step_plan.split_kv, &Default::default()).unwrap();
        sim.launch(&step_plan.merge, &Default::default()).unwrap();
        let out: Vec<half::bf16> = sim.download(attn.out).unwrap();
        let lse: Vec<f32> = sim.download(attn.lse.unwrap()).unwrap();
        decode_cases::compare(&format!("step {step}"), &p, false, &out, &lse, &reference(&p, true, &DecodeSource::Dense));
    }
}

#[test]
fn bad_decode_launches_are_refused() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let p = Problem::<half::f16>::new(vec![2, 2], vec![100, 50], 128, (8, 2), 64, 5);
    let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: None, sm_count: 132 };
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
    let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: Some(2), sm_count: 132 };
    let wild = DecodeSource::BlockSparse { block_size: 32, max_blocks: 4, block_count: vec![9, 3], block_index: vec![0, 3, 7, i32::MAX, -5, 1, 2, 0] };
    let valid = DecodeSource::BlockSparse { block_size: 32, max_blocks: 4, block_count: vec![2, 1], block_index: vec![0, 3, -1, -1, 1, -1, -1, -1] };
    let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
    let got = sim.decode_with(&p.shape(), &opts, &p.q, None, cache, &wild, SimDecodeRun { host_checks: false, ..Default::default() }).unwrap();
    compare("wild block ids", &p, false, &got, &reference(&p, true, &valid));
}

#[test]
fn racecheck_is_clean() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    for (kind, d) in [(0, 64), (1, 128), (2, 256), (0, 96)] {
        let p = Problem::<half::bf16>::new(vec![4, 4], vec![200, 70], 256, (8, 2), d, 3);
        let source = random_source(&mut Rng::new(4), &p, kind, 16);
        let opts = DecodeOptions { causal: true, softmax_scale: None, return_lse: true, softcap: None, window_left: None, splits: Some(3), sm_count: 132 };
        let cache = DecodeCache::Contiguous { k: &p.k, v: &p.v, seqlens_k: &p.seqlens_k };
        let run = SimDecodeRun { racecheck: true, ..Default::default() };
        let got = sim.decode_with(&p.shape(), &opts, &p.q, None, cache, &source, run).unwrap_or_else(|e| panic!("{} d{d}: {e}", source.name()));
        compare(&format!("racecheck {} d{d}", source.name()), &p, false, &got, &reference(&p, true, &source));
    }
}
