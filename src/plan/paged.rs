//! Paged K/V caches: prefill of varlen queries against keys and values that live in fixed-size
//! pages, addressed per sequence through a block table (vLLM, mistral.rs, FlashInfer).
//!
//! - q and out are packed like a varlen launch (`[total_q, heads_q, head_dim]`, with
//!   `cu_seqlens_q`); the LSE is `[heads_q, total_q]`.
//! - k and v are caches of `num_pages` pages of `page_size` tokens; their [`Bshd`](crate::Bshd)
//!   layouts give the (page, token, head) strides, so NHD `[num_pages, page_size, heads_kv,
//!   head_dim]` and HND `[num_pages, heads_kv, page_size, head_dim]` both work as they are.
//! - Key `j` of sequence `b` is token `j % page_size` of page
//!   `block_table[b][j / page_size]`; `seqlens_k[b]` keys. Pages may come in any order and
//!   be shared between sequences (prefix sharing).
//!
//! Every pattern runs paged (vertical-slash with its index converted per sequence,
//! `pattern::vs_convert::convert_varlen`, or [`super::vs_convert::plan_varlen`] on the device
//! from `seqlens_k`).
//!
//! The device's lengths and block table are never read back. The kernels run a sequence
//! whose query bounds are malformed, or whose key count needs more than `max_pages` pages,
//! as empty, and stop its keys at its first block-table entry outside `[0, num_pages)`.
//! With the host copies ([`PagedKvBuffers::host`]) the host checks them all before the
//! launch, naming the first bad entry.

use super::buffers::{AttnBuffers, DeviceBuffer};
use super::tensors::{check_tensors, DenseArgs};
use super::{prefill, topk_attention, LaunchPlan};
use crate::checked::{product, to_i32};
use crate::error::{Error, Result};
use crate::shape::{AttnOptions, AttnShape, DType, Varlen};
use crate::source::Source;

/// Smallest and largest page size, in tokens (powers of two in between).
pub const PAGE_SIZES: std::ops::RangeInclusive<usize> = 16..=256;

/// The host copies of a paged launch's device metadata, which engines usually have.
#[derive(Debug, Clone, Copy)]
pub struct PagedHost<'a> {
    /// The queries' sequences (`cu_seqlens_q`; its key half is unused).
    pub varlen_q: &'a Varlen,
    /// `seqlens_k`, one entry per sequence.
    pub seqlens_k: &'a [i32],
    /// `block_table`, `[batch, max_pages]`.
    pub block_table: &'a [i32],
}

/// The paging metadata of a launch ([`attention_paged`]).
#[derive(Debug, Clone, Copy)]
pub struct PagedKvBuffers<'a> {
    /// i32 `cu_seqlens_q [batch + 1]` on the device.
    pub cu_seqlens_q: DeviceBuffer,
    /// Packed query rows.
    pub total_q: usize,
    /// i32 `seqlens_k [batch]` on the device: keys per sequence.
    pub seqlens_k: DeviceBuffer,
    /// i32 `block_table [batch, max_pages]` on the device.
    pub block_table: DeviceBuffer,
    /// Entries per block-table row.
    pub max_pages: usize,
    /// Tokens per page: a power of two in [`PAGE_SIZES`].
    pub page_size: usize,
    /// Pages in each of the k and v caches.
    pub num_pages: usize,
    /// The host copies, checked before the launch when given.
    pub host: Option<PagedHost<'a>>,
}

/// The page size, the page count and the block table's span of keys.
fn check_geometry(shape: &AttnShape, paged: &PagedKvBuffers) -> Result<u32> {
    let ps = paged.page_size;
    if !ps.is_power_of_two() || !PAGE_SIZES.contains(&ps) {
        return Err(Error::InvalidParameter {
            name: "page_size",
            reason: format!("{ps} tokens: pages must hold a power of two from {} to {} tokens", PAGE_SIZES.start(), PAGE_SIZES.end()),
        });
    }
    for (dim, value) in [("num_pages", paged.num_pages), ("max_pages", paged.max_pages), ("total_q", paged.total_q)] {
        if value == 0 {
            return Err(Error::ZeroDimension { dim });
        }
    }
    to_i32("num_pages", paged.num_pages)?;
    // Key positions are i32 in the kernels: every key a block-table row can address.
    let span = product("max_pages * page_size", &[paged.max_pages, ps])?;
    to_i32("max_pages * page_size", span)?;
    if span < shape.seq_k() {
        return Err(Error::InvalidParameter {
            name: "max_pages",
            reason: format!("{} pages of {ps} tokens hold {span} keys, fewer than max_seqlen_k = {}", paged.max_pages, shape.seq_k()),
        });
    }
    Ok(ps.trailing_zeros())
}

/// The paging metadata against the launch: its geometry, and the host copies when given.
/// Returns log2(page_size).
pub(super) fn check_metadata(shape: &AttnShape, paged: &PagedKvBuffers) -> Result<u32> {
    let page_shift = check_geometry(shape, paged)?;
    check_host(shape, paged)?;
    Ok(page_shift)
}

/// The host copies against the launch.
fn check_host(shape: &AttnShape, paged: &PagedKvBuffers) -> Result<()> {
    let Some(host) = paged.host else { return Ok(()) };
    super::varlen::check_host_queries(shape, host.varlen_q, paged.total_q)?;
    let bad = |tensor, reason: String| Err(Error::InvalidCuSeqlens { tensor, reason });
    let lens = &host.seqlens_k;
    if lens.len() != shape.batch() {
        return bad("seqlens_k", format!("has {} entries for a batch of {}", lens.len(), shape.batch()));
    }
    let rows = product("block_table", &[shape.batch(), paged.max_pages])?;
    if host.block_table.len() != rows {
        return Err(Error::WrongLength { tensor: "block_table", expected: rows, dims: format!("{} x {}", shape.batch(), paged.max_pages), len: host.block_table.len() });
    }
    for b in 0..shape.batch() {
        let k = lens[b];
        if k < 0 || k as usize > shape.seq_k() {
            return bad("seqlens_k", format!("sequence {b} has {k} keys; it must be in 0..={} (max_seqlen_k)", shape.seq_k()));
        }
        let pages = (k as usize).div_ceil(paged.page_size);
        let row = &host.block_table[b * paged.max_pages..][..pages];
        if let Some((p, &page)) = row.iter().enumerate().find(|(_, &page)| page < 0 || page as usize >= paged.num_pages) {
            return Err(Error::IndexOutOfRange { tensor: "block_table", at: format!("[{b}, {p}]"), value: i64::from(page), range: format!("0..{} (the caches' pages)", paged.num_pages) });
        }
    }
    Ok(())
}

/// The dense tensors of a launch whose k and v are page caches: `q_shape` sizes q, out and
/// the LSE; k and v are `[num_pages, page_size]` rows, their layouts' outer stride the page
/// stride. Checks the paging metadata ([`check_metadata`]) and fills the block table, page
/// counts, page shift and page strides (batch strides 0).
pub(super) fn paged_tensors(shape: &AttnShape, q_shape: &AttnShape, paged: &PagedKvBuffers, dtype: DType, opts: &AttnOptions, bufs: &AttnBuffers) -> Result<DenseArgs> {
    let page_shift = check_metadata(shape, paged)?;
    let mut dense = check_tensors(q_shape, [paged.num_pages, paged.page_size], dtype, opts, bufs)?;
    let t = &mut dense.tensors;
    t.block_table = paged.block_table.index_addr("block_table", product("block_table", &[shape.batch(), paged.max_pages])?)?;
    t.max_pages = to_i32("max_pages", paged.max_pages)?;
    t.num_pages = to_i32("num_pages", paged.num_pages)?;
    t.page_shift = page_shift as i32;
    // The caches' outer stride steps pages, not batch entries.
    (t.k_page_stride, t.v_page_stride) = (t.k_batch_stride, t.v_batch_stride);
    (t.k_batch_stride, t.v_batch_stride) = (0, 0);
    Ok(dense)
}

/// Plans a prefill launch of packed varlen queries against paged K/V caches after
/// validating it: `shape` is (batch, max_seqlen_q, max_seqlen_k, heads_q, heads_kv,
/// head_dim); `bufs` holds the packed q and out, the LSE `[heads_q, total_q]`, and the k
/// and v caches, whose layouts' batch stride is the page stride. Every source runs paged:
/// block-sparse and vertical-slash index tensors have the shape's batch and row blocks,
/// top-k indices are packed like q (a top-k key whose page is outside the caches is
/// skipped, where the other patterns stop the sequence's keys at that page).
pub fn attention_paged(
    shape: &AttnShape,
    paged: &PagedKvBuffers,
    dtype: DType,
    opts: &AttnOptions,
    bufs: &AttnBuffers,
    source: &Source<DeviceBuffer>,
) -> Result<LaunchPlan> {
    // q and out packed; k and v as [num_pages, page_size] rows.
    let packed = AttnShape::new(1, paged.total_q, shape.seq_k(), shape.heads_q(), shape.heads_kv(), shape.head_dim())?;
    let mut dense = paged_tensors(shape, &packed, paged, dtype, opts, bufs)?;
    let t = &mut dense.tensors;
    t.cu_seqlens_q = paged.cu_seqlens_q.index_addr("cu_seqlens_q", shape.batch() + 1)?;
    t.total_q = to_i32("total_q", paged.total_q)?;
    t.seqlens_k = paged.seqlens_k.index_addr("seqlens_k", shape.batch())?;
    t.lse_batch_stride = 0;
    t.lse_head_stride = paged.total_q as i64;
    match source {
        Source::TopK(index) => topk_attention::plan_packed(shape, dtype, dense, opts, index, paged.total_q, "_paged"),
        _ => prefill::plan_form(shape, dtype, dense, opts, source, "_paged"),
    }
}
