//! From checked arguments to an applied op: the problem's [`AttnShape`], the index tensors
//! made contiguous, the op run on (q, k, v), and the LSE taken out when asked for.

use std::sync::{Arc, Mutex};

use candle_core::{Shape, Tensor};

use super::args::{self, bad, wrap};
use super::ops::{Decode, LseSlot, Prefill, TakeLse};
use super::pattern::{DecodeCache, Pattern, VarlenSeqs};
use crate::plan::decode::{DecodeOptions, DecodeSource};
use crate::shape::{AttnOptions, AttnShape};

const BSHD_Q: &str = "[batch, seq_q, heads_q, head_dim]";
const BSHD_KV: &str = "[batch, seq_k, heads_kv, head_dim]";
const PACKED_Q: &str = "[total_q, heads_q, head_dim]";
const PACKED_KV: &str = "[total_k, heads_kv, head_dim]";

/// Checks and runs attention: batched BSHD, or varlen (packed) with `varlen`.
pub(super) fn prefill(
    [q, k, v]: [&Tensor; 3],
    pattern: &Pattern<&Tensor>,
    varlen: Option<&VarlenSeqs<&Tensor>>,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
    want_lse: bool,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let dtype = args::attn_dtype(q, [("k", k), ("v", v)])?;
    let device = q.device();
    args::same_device("k", k, device)?;
    args::same_device("v", v, device)?;
    let (r, q_what, kv_what) = if varlen.is_some() { (3, PACKED_Q, PACKED_KV) } else { (4, BSHD_Q, BSHD_KV) };
    args::dense("q", q, r, q_what)?;
    args::dense("k", k, r, kv_what)?;
    args::dense("v", v, r, kv_what)?;
    if v.dims() != k.dims() {
        return Err(bad("v", format!("has shape {:?}, but k has {:?}; they must match", v.dims(), k.dims())));
    }
    let last = r - 1;
    args::same_dim(("q", q, last), ("k", k, last), "head_dim")?;
    let (hq, hkv, d) = (q.dims()[last - 1], k.dims()[last - 1], q.dims()[last]);
    let shape = match varlen {
        None => {
            args::same_dim(("q", q, 0), ("k", k, 0), "batch")?;
            AttnShape::new(q.dims()[0], q.dims()[1], k.dims()[1], hq, hkv, d)
        }
        Some(seqs) => {
            let batch = varlen_batch(seqs, device)?;
            AttnShape::new(batch, seqs.max_seqlen_q, seqs.max_seqlen_k, hq, hkv, d)
        }
    }
    .map_err(wrap)?;
    args::options(opts, d)?;
    args::sinks(sinks, device, hq)?;
    check_pattern(pattern, device, varlen.is_some())?;

    let lse_dims = match varlen {
        None => vec![shape.batch(), hq, shape.seq_q()],
        Some(_) => vec![hq, q.dims()[0]],
    };
    let slot = want_lse.then(new_slot);
    let op = Prefill {
        shape,
        dtype,
        opts: AttnOptions { return_lse: want_lse, ..*opts },
        pattern: pattern.try_map(|t| args::flat(t))?,
        varlen: varlen.map(|s| s.try_map(|t| args::flat(t))).transpose()?,
        sinks: sinks.map(args::flat).transpose()?,
        lse: slot.clone(),
    };
    let out = q.apply_op3_no_bwd(k, v, &op)?;
    take_lse(out, slot, lse_dims)
}

/// The batch of a varlen call, from its `cu_seqlens` tensors' length.
fn varlen_batch(seqs: &VarlenSeqs<&Tensor>, device: &candle_core::Device) -> candle_core::Result<usize> {
    args::index("cu_seqlens_q", seqs.cu_seqlens_q, device, 1, "[batch + 1]")?;
    args::index("cu_seqlens_k", seqs.cu_seqlens_k, device, 1, "[batch + 1]")?;
    args::same_dim(("cu_seqlens_q", seqs.cu_seqlens_q, 0), ("cu_seqlens_k", seqs.cu_seqlens_k, 0), "batch + 1")?;
    match seqs.cu_seqlens_q.dims()[0] {
        0 | 1 => Err(bad("cu_seqlens_q", "has fewer than 2 entries; it needs batch + 1 with batch >= 1")),
        n => Ok(n - 1),
    }
}

/// Device, dtype and rank of each index tensor, and the dimensions that tensors of one set
/// share. How they fit the problem is the planner's and the reference's to check.
fn check_pattern(pattern: &Pattern<&Tensor>, device: &candle_core::Device, varlen: bool) -> candle_core::Result<()> {
    const ROWS: &str = "[batch, heads, row_blocks]";
    match *pattern {
        Pattern::Dense => Ok(()),
        Pattern::BlockSparse { block_count, block_index } => {
            args::index("block_count", block_count, device, 3, ROWS)?;
            args::index("block_index", block_index, device, 4, "[batch, heads, row_blocks, max_blocks]")?;
            args::same_prefix(("block_count", block_count), ("block_index", block_index), 3)
        }
        Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
            args::index("vertical_indexes", vertical_indexes, device, 3, "[batch, heads, nnz_v]")?;
            args::index("slash_indexes", slash_indexes, device, 3, "[batch, heads, nnz_s]")?;
            args::same_prefix(("vertical_indexes", vertical_indexes), ("slash_indexes", slash_indexes), 2)
        }
        Pattern::VsIndex { block_count, block_offset, column_count, column_index } => {
            args::index("block_count", block_count, device, 3, ROWS)?;
            args::index("block_offset", block_offset, device, 4, "[batch, heads, row_blocks, nnz_s]")?;
            args::index("column_count", column_count, device, 3, ROWS)?;
            args::index("column_index", column_index, device, 4, "[batch, heads, row_blocks, nnz_v]")?;
            args::same_prefix(("block_count", block_count), ("block_offset", block_offset), 3)?;
            args::same_prefix(("block_count", block_count), ("column_count", column_count), 3)?;
            args::same_prefix(("block_count", block_count), ("column_index", column_index), 3)
        }
        Pattern::TopK { indices } if varlen => args::index("indices", indices, device, 3, "[total_q, heads_kv, k]"),
        Pattern::TopK { indices } => args::index("indices", indices, device, 4, "[batch, seq_q, heads_kv, k]"),
    }
}

/// Checks and runs a decode step.
pub(super) fn decode(
    q: &Tensor,
    cache: &DecodeCache<&Tensor>,
    source: &DecodeSource<&Tensor>,
    opts: &DecodeOptions,
    sinks: Option<&Tensor>,
    want_lse: bool,
) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let (k, v) = (cache.k, cache.v);
    let dtype = args::attn_dtype(q, [("k_cache", k), ("v_cache", v)])?;
    let device = q.device();
    args::same_device("k_cache", k, device)?;
    args::same_device("v_cache", v, device)?;
    args::dense("q", q, 4, "[batch, q_len, heads_q, head_dim]")?;
    let cache_what = if cache.block_table.is_some() { "[num_pages, page_size, heads_kv, head_dim]" } else { "[batch, capacity, heads_kv, head_dim]" };
    args::dense("k_cache", k, 4, cache_what)?;
    args::dense("v_cache", v, 4, cache_what)?;
    if v.dims() != k.dims() {
        return Err(bad("v_cache", format!("has shape {:?}, but k_cache has {:?}; they must match", v.dims(), k.dims())));
    }
    args::same_dim(("q", q, 3), ("k_cache", k, 3), "head_dim")?;
    let [batch, q_len, hq, d] = [0, 1, 2, 3].map(|i| q.dims()[i]);
    args::index("seqlens_k", cache.seqlens_k, device, 1, "[batch]")?;
    args::same_dim(("q", q, 0), ("seqlens_k", cache.seqlens_k, 0), "batch")?;
    let capacity = match cache.block_table {
        None => {
            args::same_dim(("q", q, 0), ("k_cache", k, 0), "batch")?;
            k.dims()[1]
        }
        Some(table) => {
            args::index("block_table", table, device, 2, "[batch, max_pages]")?;
            args::same_dim(("q", q, 0), ("block_table", table, 0), "batch")?;
            table.dims()[1].checked_mul(k.dims()[1]).ok_or_else(|| bad("block_table", "max_pages * page_size overflows usize"))?
        }
    };
    let shape = AttnShape::new(batch, q_len, capacity, hq, k.dims()[2], d).map_err(wrap)?;
    args::options(&opts.attn(), d)?;
    args::sinks(sinks, device, hq)?;
    check_decode_source(source, device, &shape)?;

    let slot = want_lse.then(new_slot);
    let op = Decode {
        shape,
        dtype,
        opts: DecodeOptions { return_lse: want_lse, ..*opts },
        seqlens_k: args::flat(cache.seqlens_k)?,
        block_table: cache.block_table.map(args::flat).transpose()?,
        source: source.try_map(|_, t| args::flat(t))?,
        sinks: sinks.map(args::flat).transpose()?,
        lse: slot.clone(),
    };
    let out = q.apply_op3_no_bwd(k, v, &op)?;
    take_lse(out, slot, vec![batch, hq, q_len])
}

/// A decode source's tensors against the sizes it states: block lists `[batch, heads_kv]`
/// and `[batch, heads_kv, max_blocks]`, top-k rows `[batch * q_len, heads_kv, topk]`.
fn check_decode_source(source: &DecodeSource<&Tensor>, device: &candle_core::Device, shape: &AttnShape) -> candle_core::Result<()> {
    let (batch, hkv) = (shape.batch(), shape.heads_kv());
    let expect = |name: &'static str, t: &Tensor, dims: Vec<usize>, what: &str| -> candle_core::Result<()> {
        args::index(name, t, device, dims.len(), what)?;
        if t.dims() != dims.as_slice() {
            return Err(bad(name, format!("has shape {:?}; expected {what} = {dims:?}", t.dims())));
        }
        Ok(())
    };
    match *source {
        DecodeSource::Dense => Ok(()),
        DecodeSource::BlockSparse { max_blocks, block_count, block_index, .. } => {
            expect("block_count", block_count, vec![batch, hkv], "[batch, heads_kv]")?;
            expect("block_index", block_index, vec![batch, hkv, max_blocks], "[batch, heads_kv, max_blocks]")
        }
        DecodeSource::TopK { topk, indices } => {
            let rows = batch.checked_mul(shape.seq_q()).ok_or_else(|| bad("indices", "batch * q_len overflows usize"))?;
            expect("indices", indices, vec![rows, hkv, topk], "[batch * q_len, heads_kv, topk]")
        }
    }
}

fn new_slot() -> LseSlot {
    Arc::new(Mutex::new(None))
}

/// The output, and with `slot` the LSE its forward left there, as a tensor of `dims`.
fn take_lse(out: Tensor, slot: Option<LseSlot>, dims: Vec<usize>) -> candle_core::Result<(Tensor, Option<Tensor>)> {
    let Some(slot) = slot else { return Ok((out, None)) };
    let lse = out.apply_op1_no_bwd(&TakeLse { slot, shape: Shape::from(dims) })?;
    Ok((out, Some(lse)))
}
