//! The CPU forward: the crate's f64 reference ([`crate::reference`]) on the gathered
//! inputs, rounded once to q's dtype. Slow, but what a model computes on CPU is then the
//! oracle every kernel is tested against.
//!
//! Host copies let the CPU forward check what the device cannot: index values, sequence
//! boundaries and block tables are validated (an error names the first bad entry) where the
//! kernels would skip the entry. Any head_dim works here; the CUDA forward takes the
//! kernels' head dims.

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use super::args::wrap;
use super::host::{gather_f64, index_i32, lse_f32, round_out, sinks_f32};
use super::ops::{stash, Decode, LseStorage, Prefill};
use super::pattern::{Pattern, VarlenSeqs};
use crate::error::Error;
use crate::pattern::vs_convert::convert_varlen;
use crate::pattern::{BlockSparse, TopkTokens, VerticalSlash};
use crate::plan::decode::{check_host_seqlens, DecodeSource};
use crate::plan::decode_host::check_host_source;
use crate::reference::{
    block_sparse_attention, dense_attention, topk_attention, varlen_attention, varlen_block_sparse_attention, varlen_dense_attention,
    varlen_topk_attention, varlen_vertical_slash_attention, vertical_slash_attention, RefInputs, VarlenInputs,
};
use crate::shape::{AttnShape, Varlen};
use crate::source::VsIndex;
use crate::source::VsIndexDims;

type Arg<'a> = (&'a CpuStorage, &'a Layout);

/// Batched or varlen attention on the reference.
pub(super) fn prefill(op: &Prefill, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CpuStorage, Shape)> {
    let (qh, kh, vh) = (gather_f64("q", q.0, q.1)?, gather_f64("k", k.0, k.1)?, gather_f64("v", v.0, v.1)?);
    let sinks = sinks_f32(op.sinks.as_ref())?.map(|s| s.iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
    let (out, lse) = match &op.varlen {
        None => batched(op, RefInputs { sinks, ..RefInputs::from_f64(op.shape, qh, kh, vh).map_err(wrap)? })?,
        Some(seqs) => {
            let varlen = host_varlen(op.shape, seqs, q.1.dims()[0], k.1.dims()[0])?;
            let inputs = VarlenInputs { shape: op.shape, varlen, q: qh, k: kh, v: vh, sinks };
            let r = varlen_pattern(op, &inputs)?;
            (r.out, r.lse)
        }
    };
    stash(op.lse.as_ref(), || LseStorage::Cpu(lse_f32(&lse)))?;
    Ok((round_out(op.dtype, &out), q.1.shape().clone()))
}

/// A batched problem: the output `[batch, seq_q, heads_q, head_dim]` and the LSE `[batch,
/// heads_q, seq_q]`.
fn batched(op: &Prefill, inputs: RefInputs) -> candle_core::Result<(Vec<f64>, Vec<f64>)> {
    let (s, opts) = (op.shape, &op.opts);
    let r = match &op.pattern {
        Pattern::Dense => dense_attention(&inputs, opts),
        Pattern::BlockSparse { block_count, block_index } => {
            let [b, h, mb, max] = dims4(block_index);
            let blocks = BlockSparse::new(b, h, mb, max, index_i32("block_count", block_count)?, index_i32("block_index", block_index)?).map_err(wrap)?;
            block_sparse_attention(&inputs, opts, &blocks)
        }
        Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
            let vs = vertical_slash(vertical_indexes, slash_indexes)?;
            vertical_slash_attention(&inputs, opts, &vs)
        }
        Pattern::VsIndex { .. } => {
            // The batched reference takes a descriptor; a converted index runs on the varlen
            // reference instead, as a batch of equal sequences, whose packed rows are the
            // contiguous BSHD rows and whose per-sequence diagonals are the batch's.
            let uniform = |len: usize| (0..=s.batch()).map(|b| (b * len) as i32).collect::<Vec<_>>();
            let varlen = Varlen::new(uniform(s.seq_q()), uniform(s.seq_k())).map_err(wrap)?;
            let packed = VarlenInputs { shape: s, varlen, q: inputs.q, k: inputs.k, v: inputs.v, sinks: inputs.sinks };
            let r = varlen_pattern(op, &packed)?;
            return Ok((r.out, lse_to_batched(&r.lse, s.batch(), s.heads_q(), s.seq_q())));
        }
        Pattern::TopK { indices } => {
            let [b, sq, hkv, k] = dims4(indices);
            let topk = TopkTokens::new(b, sq, hkv, k, index_i32("indices", indices)?).map_err(wrap)?;
            topk_attention(&inputs, opts, &topk)
        }
    }
    .map_err(wrap)?;
    Ok((r.out, r.lse))
}

/// A varlen problem (or a converted VS index on equal sequences): output packed like q, LSE
/// `[heads_q, total_q]`.
fn varlen_pattern(op: &Prefill, inputs: &VarlenInputs) -> candle_core::Result<crate::reference::VarlenOutput> {
    let (s, opts) = (op.shape, &op.opts);
    match &op.pattern {
        Pattern::Dense => varlen_dense_attention(inputs, opts),
        Pattern::BlockSparse { block_count, block_index } => {
            let [b, h, mb, max] = dims4(block_index);
            let blocks = BlockSparse::new(b, h, mb, max, index_i32("block_count", block_count)?, index_i32("block_index", block_index)?).map_err(wrap)?;
            varlen_block_sparse_attention(inputs, opts, &blocks)
        }
        Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
            let vs = vertical_slash(vertical_indexes, slash_indexes)?;
            let index = convert_varlen(&vs, &s, &inputs.varlen).map_err(wrap)?;
            varlen_vertical_slash_attention(inputs, opts, &index)
        }
        Pattern::VsIndex { block_count, block_offset, column_count, column_index } => {
            let [b, h, mb, nnz_s] = dims4(block_offset);
            let dims = VsIndexDims::new(b, h, mb, column_index.dims()[3], nnz_s).map_err(wrap)?;
            let index = VsIndex {
                dims,
                block_count: index_i32("block_count", block_count)?,
                block_offset: index_i32("block_offset", block_offset)?,
                column_count: index_i32("column_count", column_count)?,
                column_index: index_i32("column_index", column_index)?,
            };
            varlen_vertical_slash_attention(inputs, opts, &index)
        }
        Pattern::TopK { indices } => {
            let d = indices.dims();
            let topk = TopkTokens::new(1, d[0], d[1], d[2], index_i32("indices", indices)?).map_err(wrap)?;
            varlen_topk_attention(inputs, opts, &topk)
        }
    }
    .map_err(wrap)
}

fn vertical_slash(vertical: &Tensor, slash: &Tensor) -> candle_core::Result<VerticalSlash> {
    let (dv, ds) = (vertical.dims(), slash.dims());
    VerticalSlash::new(dv[0], dv[1], dv[2], ds[2], index_i32("vertical_indexes", vertical)?, index_i32("slash_indexes", slash)?).map_err(wrap)
}

/// The first four dimensions of an index tensor whose rank was checked to be 4.
fn dims4(t: &Tensor) -> [usize; 4] {
    let d = t.dims();
    [0, 1, 2, 3].map(|i| d.get(i).copied().unwrap_or(0))
}

/// The host boundaries of a varlen call, checked against the packed tensors and the longest
/// lengths it was sized for (the device would run a sequence past them as empty).
fn host_varlen(shape: AttnShape, seqs: &VarlenSeqs<Tensor>, total_q: usize, total_k: usize) -> candle_core::Result<Varlen> {
    let varlen = Varlen::new(index_i32("cu_seqlens_q", &seqs.cu_seqlens_q)?, index_i32("cu_seqlens_k", &seqs.cu_seqlens_k)?).map_err(wrap)?;
    let bad_cu = |tensor, reason: String| Err(wrap(Error::InvalidCuSeqlens { tensor, reason }));
    if varlen.total_q() != total_q {
        return bad_cu("cu_seqlens_q", format!("ends at {} but q has {total_q} rows", varlen.total_q()));
    }
    if varlen.total_k() != total_k {
        return bad_cu("cu_seqlens_k", format!("ends at {} but k and v have {total_k} rows", varlen.total_k()));
    }
    for b in 0..varlen.batch() {
        let (lq, lk) = varlen.seqlens(b);
        if lq > shape.seq_q() {
            return bad_cu("cu_seqlens_q", format!("sequence {b} has {lq} rows, more than max_seqlen_q = {}", shape.seq_q()));
        }
        if lk > shape.seq_k() {
            return bad_cu("cu_seqlens_k", format!("sequence {b} has {lk} keys, more than max_seqlen_k = {}", shape.seq_k()));
        }
    }
    Ok(varlen)
}

/// A varlen LSE `[heads, batch * seq]` of equal sequences as the batched `[batch, heads, seq]`.
fn lse_to_batched(lse: &[f64], batch: usize, heads: usize, seq: usize) -> Vec<f64> {
    let total = batch * seq;
    let mut out = vec![f64::NEG_INFINITY; lse.len()];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..seq {
                out[(b * heads + h) * seq + i] = lse[h * total + b * seq + i];
            }
        }
    }
    out
}

/// A decode step on the varlen reference: each sequence's `q_len` new tokens against its
/// first `seqlens_k` cached keys (gathered through the block table of a paged cache), each
/// token's keys those of the source below its causal limit.
pub(super) fn decode(op: &Decode, q: Arg<'_>, k: Arg<'_>, v: Arg<'_>) -> candle_core::Result<(CpuStorage, Shape)> {
    let s = op.shape;
    let (batch, q_len, hkv, d) = (s.batch(), s.seq_q(), s.heads_kv(), s.head_dim());
    let seqlens = index_i32("seqlens_k", &op.seqlens_k)?;
    check_host_seqlens(&s, &seqlens).map_err(wrap)?;
    let rows = cache_rows(op, k.1, &seqlens)?;
    let (kc, vc) = (gather_f64("k_cache", k.0, k.1)?, gather_f64("v_cache", v.0, v.1)?);
    let row_len = hkv * d;
    let pack = |cache: &[f64]| rows.iter().flat_map(|&r| cache[r * row_len..(r + 1) * row_len].iter().copied()).collect::<Vec<f64>>();
    let (kp, vp) = (pack(&kc), pack(&vc));

    let prefix = |lens: &mut dyn Iterator<Item = usize>| std::iter::once(0).chain(lens.scan(0, |acc, n| { *acc += n as i32; Some(*acc) })).collect::<Vec<i32>>();
    let varlen = Varlen::new(prefix(&mut (0..batch).map(|_| q_len)), prefix(&mut seqlens.iter().map(|&n| n as usize))).map_err(wrap)?;
    let max_k = seqlens.iter().map(|&n| n as usize).max().unwrap_or(0).max(1);
    let ref_shape = AttnShape::new(batch, q_len, max_k, s.heads_q(), hkv, d).map_err(wrap)?;
    let sinks = sinks_f32(op.sinks.as_ref())?.map(|s| s.iter().map(|&x| f64::from(x)).collect());
    let inputs = VarlenInputs { shape: ref_shape, varlen, q: gather_f64("q", q.0, q.1)?, k: kp, v: vp, sinks };

    let source = op.source.try_map(index_i32)?;
    check_host_source(&s, &seqlens, None, &source).map_err(wrap)?;
    let (causal, group) = (op.opts.causal, s.group_size());
    let r = varlen_attention(&inputs, &op.opts.attn(), |b, h, i, lq, lk, list| {
        let limit = if causal { (i as i64 + lk as i64 - lq as i64 + 1).clamp(0, lk as i64) as usize } else { lk };
        let hk = h / group;
        match &source {
            DecodeSource::Dense => list.extend(0..limit),
            DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => {
                // Checked by check_host_source: counts within max_blocks, ids within the sequence.
                let row = b * hkv + hk;
                let count = block_count[row] as usize;
                for &id in &block_index[row * max_blocks..][..count] {
                    let start = id as usize * block_size;
                    list.extend(start..(start + block_size).min(limit));
                }
            }
            DecodeSource::TopK { topk, indices } => {
                let keys = &indices[((b * q_len + i) * hkv + hk) * topk..][..*topk];
                list.extend(keys.iter().filter(|&&key| key >= 0 && (key as usize) < limit).map(|&key| key as usize));
            }
        }
    })
    .map_err(wrap)?;
    stash(op.lse.as_ref(), || LseStorage::Cpu(lse_f32(&lse_to_batched(&r.lse, batch, s.heads_q(), q_len))))?;
    Ok((round_out(op.dtype, &r.out), q.1.shape().clone()))
}

/// The cache row of every key the step reads, sequence by sequence: `b * capacity + j` in a
/// contiguous cache, `block_table[b][j / page_size] * page_size + j % page_size` in a paged
/// one, whose table entries must name pages of the cache.
fn cache_rows(op: &Decode, k: &Layout, seqlens: &[i32]) -> candle_core::Result<Vec<usize>> {
    let (outer, inner) = (k.dims()[0], k.dims()[1]);
    let table = op.block_table.as_ref().map(|t| Ok::<_, candle_core::Error>((index_i32("block_table", t)?, t.dims()[1]))).transpose()?;
    // Every j below is under seqlens_k[b] <= capacity (check_host_seqlens): within the
    // sequence's cache rows, or its block-table row.
    let mut rows = Vec::new();
    for (b, &n) in seqlens.iter().enumerate() {
        for j in 0..n as usize {
            let row = match &table {
                None => b * inner + j,
                Some((table, max_pages)) => {
                    let page = table[b * max_pages + j / inner];
                    if page < 0 || page as usize >= outer {
                        return Err(wrap(Error::IndexOutOfRange {
                            tensor: "block_table",
                            at: format!("[{b}, {}]", j / inner),
                            value: page.into(),
                            range: format!("0..{outer} (the caches' pages)"),
                        }));
                    }
                    page as usize * inner + j % inner
                }
            };
            rows.push(row);
        }
    }
    Ok(rows)
}
