//! Paged K/V caches on the PTX simulator: prefill of packed queries against keys and values
//! in pages addressed through a block table. A paged run must give bit-identical output to
//! the contiguous varlen run of the same data (which tests/varlen_sim.rs holds to the
//! reference), for every pattern, NHD and HND caches, page sizes 16 to 128, pages out of
//! order and shared between sequences. Bad block-table entries on the device never fault (memcheck is always
//! on) and stop the sequence's keys at that page; on the host they are refused.

mod attention_cases;
mod common;
mod serving_cases;

use attention_cases::{random_block_sparse, Rng};
use serving_cases::{assert_paged_equals_contiguous, bits, cache, contiguous, layout_name, page, Batch};
use sparse_attn::pattern::Dense;
use sparse_attn::plan::{attention_paged, AttnBuffers, AttnLayouts, DeviceBuffer, PagedHost, PagedKvBuffers};
use sparse_attn::{AttnOptions, AttnShape, Bshd, DType, Error, SparsePattern, Varlen};

type T = half::bf16;
const HQ: usize = 4;
const HKV: usize = 2;

/// A batch of `lens` with this file's heads.
fn batch(lens: Vec<(usize, usize)>, d: usize, shared: usize, seed: u64) -> Batch<T> {
    Batch::new(lens, HQ, HKV, d, shared, seed)
}

#[test]
fn a_paged_run_equals_the_contiguous_run_bit_for_bit() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    for (d, page_size, hnd) in [(64, 16, false), (64, 128, true), (96, 32, false), (128, 16, true), (128, 128, false), (256, 32, true)] {
        // A cached prefix longer than the new queries, a sequence sharing it, a short one
        // and an empty one.
        let batch = batch(vec![(70, 300), (33, 200), (1, 17), (0, 40), (65, 65)], d, 64, 5);
        let paged = page(&batch, page_size, hnd, 64 / page_size, 9);
        let shape = batch.shape();
        let at = format!("d{d} page {page_size} {}", layout_name(hnd));
        assert_paged_equals_contiguous(&sim, &batch, &paged, &opts, &Dense.source(&shape).unwrap(), &format!("dense {at}"));
        // Block-sparse through the same pages.
        let blocks = random_block_sparse(&mut Rng::new(d as u64), &shape, HKV, 0.5);
        assert_paged_equals_contiguous(&sim, &batch, &paged, &opts, &blocks.source(&shape).unwrap(), &format!("block-sparse {at}"));
    }
}

#[test]
fn paged_vertical_slash_equals_the_contiguous_run_bit_for_bit() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    for (d, page_size, hnd) in [(64, 16, false), (128, 64, true), (256, 16, false)] {
        let batch = batch(vec![(70, 300), (33, 200), (0, 40), (65, 65)], d, 64, 17);
        let paged = page(&batch, page_size, hnd, 64 / page_size, 23);
        let (shape, vl) = (batch.shape(), batch.varlen());
        let vs = attention_cases::random_vertical_slash(&mut Rng::new(d as u64), &shape, HKV, 0.15);
        let index = sparse_attn::pattern::vs_convert::convert_varlen(&vs, &shape, &vl).unwrap();
        let source = sparse_attn::Source::VerticalSlash(index);
        assert_paged_equals_contiguous(&sim, &batch, &paged, &opts, &source, &format!("vertical-slash d{d} page {page_size} {}", layout_name(hnd)));
    }
}

#[test]
fn paged_topk_equals_the_contiguous_run_bit_for_bit() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    for (d, page_size, hnd) in [(64, 16, true), (128, 32, false), (256, 128, true)] {
        let batch = batch(vec![(30, 200), (12, 90), (0, 5), (7, 7)], d, 32, 13);
        let paged = page(&batch, page_size, hnd, 32 / page_size, 21);
        let (shape, vl) = (batch.shape(), batch.varlen());
        // Per packed row and kv head, 20 keys of the row's own sequence (some past its
        // diagonal, which the kernel skips), -1 padding.
        let k = 20;
        let mut rng = Rng::new(d as u64);
        let mut indices = Vec::new();
        for &(lq, lk) in &batch.lens {
            for _ in 0..lq * HKV {
                let mut row: Vec<i32> = (0..lk as i32).filter(|_| rng.below(4) == 0).take(k).collect();
                row.resize(k, -1);
                indices.extend(row);
            }
        }
        let topk = sparse_attn::pattern::TopkTokens::new(1, vl.total_q(), HKV, k, indices).unwrap();
        let source = topk.source(&AttnShape::new(1, vl.total_q(), shape.seq_k(), HQ, HKV, d).unwrap()).unwrap();
        assert_paged_equals_contiguous(&sim, &batch, &paged, &opts, &source, &format!("topk d{d} page {page_size} {}", layout_name(hnd)));
    }
}

#[test]
fn bad_block_table_entries_stop_the_keys_on_the_device_and_are_refused_on_the_host() {
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let batch = batch(vec![(40, 200), (20, 100)], 64, 0, 3);
    let mut paged = page(&batch, 16, false, 0, 4);
    let shape = batch.shape();
    let opts = AttnOptions { causal: false, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    // Page 5 of sequence 0 (keys 80..95) points past the caches, page 2 of sequence 1 is -7.
    paged.block_table[5] = paged.num_pages as i32 + 1000;
    paged.block_table[paged.max_pages + 2] = -7;
    // The host refuses it, naming the entry.
    let err = sim.attention_paged(&shape, &batch.varlen(), cache(&paged), &opts, &batch.q, &Dense.source(&shape).unwrap()).unwrap_err();
    assert!(matches!(&err, Error::IndexOutOfRange { tensor: "block_table", at, .. } if at == "[0, 5]"), "{err}");
    // Without the host copy the device runs it, under memcheck: the sequences' keys stop
    // at their bad pages, as a contiguous run of keys 0..80 and 0..32 gives.
    let q_layout = Bshd::contiguous(60, HQ, 64);
    let up = |x: &[T]| sim.upload(x).unwrap();
    let bufs = AttnBuffers {
        q: up(&batch.q),
        k: up(&paged.k),
        v: up(&paged.v),
        out: sim.alloc::<T>(60 * HQ * 64).unwrap(),
        lse: Some(sim.alloc::<f32>(HQ * 60).unwrap()),
        sinks: None,
        layouts: AttnLayouts { q: q_layout, k: paged.layout, v: paged.layout, out: q_layout },
    };
    let meta = PagedKvBuffers {
        cu_seqlens_q: sim.upload(batch.varlen().cu_seqlens_q()).unwrap(),
        total_q: 60,
        seqlens_k: sim.upload(&paged.seqlens_k).unwrap(),
        block_table: sim.upload(&paged.block_table).unwrap(),
        max_pages: paged.max_pages,
        page_size: 16,
        num_pages: paged.num_pages,
        host: None,
    };
    let plan = attention_paged(&shape, &meta, DType::BF16, &opts, &bufs, &sparse_attn::Source::Dense).unwrap();
    sim.launch(&plan, &ptx_sim::LaunchOptions::default()).expect("no fault");
    let got: Vec<T> = sim.download(bufs.out).unwrap();
    let cut = Batch { lens: vec![(40, 80), (20, 32)], heads_q: HQ, heads_kv: HKV, d: 64, q: batch.q.clone(), k: vec![batch.k[0][..80 * HKV * 64].to_vec(), batch.k[1][..32 * HKV * 64].to_vec()], v: vec![batch.v[0][..80 * HKV * 64].to_vec(), batch.v[1][..32 * HKV * 64].to_vec()] };
    let want = contiguous(&sim, &cut, &opts, &Dense.source(&cut.shape()).unwrap());
    assert_eq!(bits(&got), bits(&want.out));
}

#[test]
fn bad_paging_arguments_are_refused() {
    let shape = AttnShape::new(2, 40, 200, HQ, HKV, 64).unwrap();
    let buf = |slot: u64, len: usize| DeviceBuffer { addr: slot << 30, len };
    let cache = Bshd::contiguous(16, HKV, 64);
    let q_layout = Bshd::contiguous(60, HQ, 64);
    let bufs = AttnBuffers { q: buf(1, 60 * HQ * 64), k: buf(2, 40 * 16 * HKV * 64), v: buf(3, 40 * 16 * HKV * 64), out: buf(4, 60 * HQ * 64), lse: None, sinks: None, layouts: AttnLayouts { q: q_layout, k: cache, v: cache, out: q_layout } };
    let meta = |page_size: usize, num_pages: usize, max_pages: usize| PagedKvBuffers {
        cu_seqlens_q: buf(5, 3),
        total_q: 60,
        seqlens_k: buf(6, 2),
        block_table: buf(7, 2 * max_pages),
        max_pages,
        page_size,
        num_pages,
        host: None,
    };
    let plan = |m: &PagedKvBuffers| attention_paged(&shape, m, DType::BF16, &AttnOptions::default(), &bufs, &sparse_attn::Source::Dense);
    let p = plan(&meta(16, 40, 13)).expect("a valid launch");
    assert_eq!(p.kernel(), "attn_fwd_dense_paged_bf16_hd64");
    for ps in [8, 24, 512] {
        assert!(matches!(plan(&meta(ps, 40, 13)), Err(Error::InvalidParameter { name: "page_size", .. })), "page size {ps}");
    }
    assert!(matches!(plan(&meta(16, 40, 12)), Err(Error::InvalidParameter { name: "max_pages", .. })), "12 pages of 16 hold 192 < 200 keys");
    assert!(matches!(plan(&meta(16, 41, 13)), Err(Error::BufferTooSmall { tensor: "k", .. })), "41 pages in a 40-page cache");
    // Host copies: a seqlens_k past max_seqlen_k.
    let vq = Varlen::new(vec![0, 40, 60], vec![0, 40, 60]).unwrap();
    let table: Vec<i32> = (0..26).collect();
    let lens = [201, 10];
    let mut m = meta(16, 40, 13);
    m.host = Some(PagedHost { varlen_q: &vq, seqlens_k: &lens, block_table: &table });
    assert!(matches!(plan(&m), Err(Error::InvalidCuSeqlens { tensor: "seqlens_k", .. })));
    let ok_lens = [200, 10];
    m.host = Some(PagedHost { varlen_q: &vq, seqlens_k: &ok_lens, block_table: &table });
    plan(&m).expect("valid host copies");
    // Top-k runs paged, with its indices packed like q; vertical-slash only causal.
    let topk = sparse_attn::pattern::TopkTokens::new(1, 60, HKV, 1, vec![0; 60 * HKV]).unwrap();
    let src = topk.source(&AttnShape::new(1, 60, 200, HQ, HKV, 64).unwrap()).unwrap().try_map(|_, d| Ok::<_, Error>(buf(8, d.len()))).unwrap();
    assert_eq!(attention_paged(&shape, &meta(16, 40, 13), DType::BF16, &AttnOptions::default(), &bufs, &src).unwrap().kernel(), "topk_attn_fwd_paged_bf16_hd64");
    let vs = sparse_attn::pattern::VerticalSlash::new(2, HQ, 1, 1, vec![0; 2 * HQ], vec![0; 2 * HQ]).unwrap();
    let vs_src = vs.source(&shape).unwrap().try_map(|_, d| Ok::<_, Error>(buf(9, d.len()))).unwrap();
    let causal = AttnOptions { causal: true, ..AttnOptions::default() };
    assert_eq!(attention_paged(&shape, &meta(16, 40, 13), DType::BF16, &causal, &bufs, &vs_src).unwrap().kernel(), "attn_fwd_vertical_slash_paged_bf16_hd64");
    assert!(attention_paged(&shape, &meta(16, 40, 13), DType::BF16, &AttnOptions::default(), &bufs, &vs_src).is_err(), "non-causal vertical-slash");
}

#[test]
fn fuzzed_lengths_and_block_tables_stay_in_bounds() {
    // Random device cu_seqlens_q, seqlens_k and block tables (anything an i32 can hold,
    // mostly near the valid range): every launch (every pattern) completes under memcheck,
    // and writes no output row outside the packed q's rows.
    let Some(sim) = attention_cases::sim_backend_or_skip() else { return };
    let (d, page_size, num_pages, max_pages, batch, total_q) = (64, 16, 12, 6, 3, 50);
    let shape = AttnShape::new(batch, 40, max_pages * page_size, HQ, HKV, d).unwrap();
    let layout = Bshd::contiguous(page_size, HKV, d);
    let cache: Vec<T> = (0..num_pages * page_size * HKV * d).map(|i| T::from_f32(((i % 13) as f32 - 6.0) / 8.0)).collect();
    let q: Vec<T> = (0..total_q * HQ * d).map(|i| T::from_f32(((i % 11) as f32 - 5.0) / 8.0)).collect();
    let q_layout = Bshd::contiguous(total_q, HQ, d);
    let mut rng = Rng::new(99);
    let mut wild = |lo: i64, hi: i64| -> i32 {
        match rng.below(8) {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => -1 - rng.below(100) as i32,
            _ => (lo + rng.below((hi - lo + 1) as usize) as i64) as i32,
        }
    };
    for round in 0..6 {
        let cu_q: Vec<i32> = (0..=batch).map(|_| wild(0, total_q as i64)).collect();
        let lens_k: Vec<i32> = (0..batch).map(|_| wild(0, (max_pages * page_size) as i64 + 20)).collect();
        let table: Vec<i32> = (0..batch * max_pages).map(|_| wild(0, num_pages as i64 + 2)).collect();
        let bufs = AttnBuffers {
            q: sim.upload(&q).unwrap(),
            k: sim.upload(&cache).unwrap(),
            v: sim.upload(&cache).unwrap(),
            out: sim.alloc::<T>(total_q * HQ * d).unwrap(),
            lse: Some(sim.alloc::<f32>(HQ * total_q).unwrap()),
            sinks: None,
            layouts: AttnLayouts { q: q_layout, k: layout, v: layout, out: q_layout },
        };
        let meta = PagedKvBuffers {
            cu_seqlens_q: sim.upload(&cu_q).unwrap(),
            total_q,
            seqlens_k: sim.upload(&lens_k).unwrap(),
            block_table: sim.upload(&table).unwrap(),
            max_pages,
            page_size,
            num_pages,
            host: None,
        };
        let opts = AttnOptions { causal: round % 2 == 0, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
        let blocks = random_block_sparse(&mut Rng::new(round), &shape, HKV, 0.5);
        // Top-k rows of any keys the cache might hold (the kernel skips what the view hides).
        let k = 8;
        let keys: Vec<i32> = (0..total_q * HKV * k).map(|i| ((i * 37 + round as usize) % (max_pages * page_size)) as i32).collect();
        let mut deduped = Vec::with_capacity(keys.len());
        for row in keys.chunks(k) {
            let mut r: Vec<i32> = Vec::new();
            for &x in row {
                r.push(if r.contains(&x) { -1 } else { x });
            }
            deduped.extend(r);
        }
        let topk = sparse_attn::pattern::TopkTokens::new(1, total_q, HKV, k, deduped).unwrap();
        let topk_shape = AttnShape::new(1, total_q, max_pages * page_size, HQ, HKV, d).unwrap();
        let vs = attention_cases::random_vertical_slash(&mut Rng::new(round + 50), &shape, HKV, 0.2);
        let mut sources = vec![
            sparse_attn::Source::Dense,
            blocks.source(&shape).unwrap().try_map(|_, x| sim.upload(&x)).unwrap(),
            topk.source(&topk_shape).unwrap().try_map(|_, x| sim.upload(&x)).unwrap(),
        ];
        if opts.causal {
            sources.push(vs.source(&shape).unwrap().try_map(|_, x| sim.upload(&x)).unwrap());
        }
        for source in &sources {
            let plan = attention_paged(&shape, &meta, DType::BF16, &opts, &bufs, source).unwrap();
            sim.launch(&plan, &ptx_sim::LaunchOptions::default())
                .unwrap_or_else(|e| panic!("round {round}: cu_q {cu_q:?} lens_k {lens_k:?} table {table:?}: {e}"));
        }
    }
}
