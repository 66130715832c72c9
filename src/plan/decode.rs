//! Split-KV decode (`kernels/decode.cu`): 1 to [`DECODE_MAX_Q_LEN`] new query tokens per
//! sequence against its cached keys, in two launches:
//! 1. `decode_<source>_<dtype>_hd<D>`: the keys of each (sequence, kv head) in `splits`
//!    ranges, one CTA each (grid = (splits, heads_kv x token groups x row chunks, batch)),
//!    every CTA writing its range's normalised output and LSE as f32 partials into the
//!    caller's workspace;
//! 2. `merge_states` ([`super::merge`]): the partials combined into the output and LSE.
//!
//! A CTA packs up to [`DECODE_ROWS`] query rows as the mma's M dimension: for dense and
//! block-sparse keys, every head of a GQA group for every new token, so one K/V tile load
//! serves the whole group; for top-k keys, whose slots differ per token, the group's heads of
//! one token (a token group per token).
//!
//! CUDA-graph safe: the split count, the grid and the workspace come from the shape's
//! capacity (its `seq_k`, the block list's or index row's slots), never from one step's
//! lengths, which the kernel reads on the device (`seqlens_k`, `cu_seqlens_q`, the block
//! counts); nothing is read back and nothing is allocated.

use super::buffers::{AttnBuffers, DeviceBuffer};
use super::decode_splits::num_splits;
use super::merge::{self, LseLayout, MergeBuffers, MergeLayouts, MergeShape, PartialLseLayout, PartialOutLayout, RowLayout};
use super::tensors::{check_tensors, with_opt, DenseArgs};
use super::{instantiation, LaunchPlan};
use crate::checked::{product, to_i32, to_u32};
use crate::error::{Error, Result};
use crate::params::{DecodeParams, DECODE_MAX_Q_LEN, DECODE_ROWS, DECODE_THREADS};
use crate::shape::{AttnOptions, AttnShape, DType, Varlen};

/// The `kernels/<MODULE>.cu` file stem.
pub const MODULE: &str = "decode";

/// Threads per CTA: 4 warps, each one 16-row m-tile of the CTA's [`DECODE_ROWS`] rows.
pub const THREADS: u32 = DECODE_THREADS;

/// Block sizes, in tokens, of the block-sparse decode source.
pub const BLOCK_SIZES: [usize; 4] = [16, 32, 64, 128];

/// Key slots per K/V tile at `head_dim` (the kernel's `tile_slots`): 64, and 16 at head_dim
/// 256 (where the Q fragments and accumulators leave few registers for scores).
pub fn tile_slots(head_dim: usize) -> usize {
    if head_dim <= 128 {
        64
    } else {
        16
    }
}

/// Dynamic shared memory at `head_dim`: two stages of K and V tiles of [`tile_slots`] rows,
/// or the [`DECODE_ROWS`]-row Q tile staged before them, whichever is larger; 16-bit
/// elements. Saturates at `u32::MAX` for a head_dim no kernel has.
pub fn shared_mem_bytes(head_dim: usize) -> u32 {
    let rows = (4 * tile_slots(head_dim)).max(DECODE_ROWS);
    u32::try_from((rows * 2).saturating_mul(head_dim)).unwrap_or(u32::MAX)
}

/// The keys a decode step attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeSource<B> {
    /// Every key of the sequence (causal within the new tokens when asked).
    Dense,
    /// Blocks of `block_size` keys per (sequence, kv head), the SeerAttention-R / Quest
    /// form: i32 `block_count [batch, heads_kv]` and `block_index [batch, heads_kv,
    /// max_blocks]`, block ids ascending. The device skips an id that is negative or past
    /// the sequence; a repeated id would count its keys twice (the host checks its copy).
    BlockSparse {
        /// Tokens per block, one of [`BLOCK_SIZES`].
        block_size: usize,
        /// Capacity of a `block_index` row.
        max_blocks: usize,
        /// i32 `[batch, heads_kv]`.
        block_count: B,
        /// i32 `[batch, heads_kv, max_blocks]`.
        block_index: B,
    },
    /// Keys per (new token, kv head): i32 `indices [rows, heads_kv, topk]`, rows = `batch *
    /// q_len` (packed queries: `total_q`), -1 for none; a key outside the sequence, or past
    /// the token's causal limit, is skipped.
    TopK {
        /// Slots per index row.
        topk: usize,
        /// i32 `[rows, heads_kv, topk]`.
        indices: B,
    },
}

impl<B> DecodeSource<B> {
    /// The kernel-name stem: `dense`, `block_sparse`, `topk`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Dense => "dense",
            Self::BlockSparse { .. } => "block_sparse",
            Self::TopK { .. } => "topk",
        }
    }

    /// The same source over other buffers: `f(name, buffer)` for each index tensor (to
    /// upload host tensors, or to take device pointers).
    pub fn try_map<'s, C, E>(&'s self, mut f: impl FnMut(&'static str, &'s B) -> std::result::Result<C, E>) -> std::result::Result<DecodeSource<C>, E> {
        Ok(match self {
            Self::Dense => DecodeSource::Dense,
            Self::BlockSparse { block_size, max_blocks, block_count, block_index } => DecodeSource::BlockSparse {
                block_size: *block_size,
                max_blocks: *max_blocks,
                block_count: f("block_count", block_count)?,
                block_index: f("block_index", block_index)?,
            },
            Self::TopK { topk, indices } => DecodeSource::TopK { topk: *topk, indices: f("indices", indices)? },
        })
    }

    /// The most key slots one (sequence, kv head) or (token, kv head) can have: what the
    /// splits divide.
    fn slot_capacity(&self, seq_k: usize) -> Result<usize> {
        match self {
            Self::Dense => Ok(seq_k),
            Self::BlockSparse { block_size, max_blocks, .. } => product("max_blocks * block_size", &[*max_blocks, *block_size]),
            Self::TopK { topk, .. } => Ok(*topk),
        }
    }
}

/// The options of a decode launch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    /// Causal within the new tokens: token `t` of `q_len` sees keys up to `seqlens_k - q_len + t`.
    pub causal: bool,
    /// Multiplies q·k; `None` means `1 / sqrt(head_dim)`.
    pub softmax_scale: Option<f32>,
    /// Also write the f32 LSE (`[batch, heads_q, q_len]`, packed: `[heads_q, total_q]`).
    pub return_lse: bool,
    /// The split count; `None` chooses it ([`super::decode_splits::num_splits`]).
    pub splits: Option<usize>,
    /// Streaming multiprocessors the split heuristic fills (the device's; 132 for an H100 SXM).
    pub sm_count: usize,
    /// Logit softcap, as [`AttnOptions::softcap`].
    pub softcap: Option<f32>,
    /// Sliding window, as [`AttnOptions::window_left`]: token `t` sees no key below
    /// `seqlens_k - q_len + t - window_left`.
    pub window_left: Option<usize>,
}

impl DecodeOptions {
    /// The attention options these decode options share.
    pub fn attn(&self) -> AttnOptions {
        AttnOptions {
            causal: self.causal,
            softmax_scale: self.softmax_scale,
            return_lse: self.return_lse,
            softcap: self.softcap,
            window_left: self.window_left,
        }
    }
}

/// A paged KV cache's metadata (as in [`super::PagedKvBuffers`]): k and v are `[num_pages,
/// page_size, heads_kv, head_dim]` (NHD) or HND caches by their layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodePages {
    /// i32 `[batch, max_pages]`.
    pub block_table: DeviceBuffer,
    /// Entries per block-table row.
    pub max_pages: usize,
    /// Tokens per page: a power of two in [`super::paged::PAGE_SIZES`].
    pub page_size: usize,
    /// Pages in each cache.
    pub num_pages: usize,
}

/// Packed queries: q and out `[total_q, heads_q, head_dim]`, sequence `b`'s new tokens at
/// rows `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]` (at most the shape's q_len).
#[derive(Debug, Clone, Copy)]
pub struct PackedQueries<'a> {
    /// i32 `[batch + 1]` on the device.
    pub cu_seqlens_q: DeviceBuffer,
    /// Packed rows.
    pub total_q: usize,
    /// The host copy, checked when given.
    pub host: Option<&'a Varlen>,
}

/// The buffers of a decode launch.
#[derive(Debug, Clone, Copy)]
pub struct DecodeBuffers<'a> {
    /// q, out, the LSE (when asked for), and the k and v caches: `[batch, seq_k, heads_kv,
    /// head_dim]` by their layouts, or page caches with `pages`.
    pub attn: AttnBuffers,
    /// i32 `seqlens_k [batch]` on the device: the keys of each sequence, its new tokens'
    /// included (at most the shape's seq_k).
    pub seqlens_k: DeviceBuffer,
    /// The host copy of `seqlens_k`, checked when given.
    pub host_seqlens_k: Option<&'a [i32]>,
    /// The paging metadata when k and v are page caches.
    pub pages: Option<DecodePages>,
    /// Packed queries, when q is not `[batch, q_len, ...]`.
    pub packed: Option<PackedQueries<'a>>,
    /// f32 scratch for the partial states, at least [`workspace_len`] elements; reused
    /// across steps (the plan addresses it, so it must stay put).
    pub workspace: DeviceBuffer,
}

/// The two launches of a decode step, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodePlan {
    /// The split-KV kernel.
    pub split_kv: LaunchPlan,
    /// The merge of its partial states.
    pub merge: LaunchPlan,
    /// The split count it was planned with.
    pub splits: usize,
}

/// The geometry both the workspace query and the plan derive from the shape.
struct Geometry {
    rows: usize,
    row_chunks: usize,
    token_groups: usize,
    splits: usize,
    split_slots: usize,
}

fn geometry<B>(shape: &AttnShape, total_q: Option<usize>, opts: &DecodeOptions, source: &DecodeSource<B>) -> Result<Geometry> {
    let q_len = shape.seq_q();
    if q_len > DECODE_MAX_Q_LEN {
        return Err(Error::InvalidParameter { name: "q_len", reason: format!("{q_len} new tokens; decode takes 1 to {DECODE_MAX_Q_LEN} per sequence") });
    }
    let rows = match total_q {
        Some(0) => return Err(Error::ZeroDimension { dim: "total_q" }),
        Some(t) => t,
        None => product("batch * q_len", &[shape.batch(), q_len])?,
    };
    let group = shape.heads_q() / shape.heads_kv();
    let (rows_per_group, token_groups) = match source {
        DecodeSource::TopK { .. } => (group, q_len),
        _ => (group * q_len, 1),
    };
    let row_chunks = rows_per_group.div_ceil(DECODE_ROWS);
    let slots = source.slot_capacity(shape.seq_k())?;
    if slots == 0 {
        return Err(Error::ZeroDimension { dim: if matches!(source, DecodeSource::TopK { .. }) { "topk" } else { "max_blocks" } });
    }
    let n = tile_slots(shape.head_dim());
    let tiles = slots.div_ceil(n);
    let ctas = product("decode CTAs per split", &[shape.batch(), shape.heads_kv(), token_groups, row_chunks])?;
    let splits = match opts.splits {
        Some(0) => return Err(Error::InvalidParameter { name: "splits", reason: "must be at least 1".into() }),
        Some(s) => s.min(tiles),
        None => {
            if opts.sm_count == 0 {
                return Err(Error::InvalidParameter { name: "sm_count", reason: "the split heuristic needs the SM count (at least 1)".into() });
            }
            num_splits(ctas, tiles, opts.sm_count)
        }
    };
    let split_slots = tiles.div_ceil(splits) * n;
    // The kernel computes split * split_slots in i32.
    to_i32("splits * split_slots", product("splits * split_slots", &[splits, split_slots])?)?;
    Ok(Geometry { rows, row_chunks, token_groups, splits, split_slots })
}

impl Geometry {
    /// f32 elements of the partial outputs `[splits, rows, heads_q, head_dim]`; the partial
    /// LSEs `[splits, heads_q, rows]` follow them in the workspace.
    fn partial_out_len(&self, shape: &AttnShape) -> usize {
        self.splits * self.rows * shape.heads_q() * shape.head_dim()
    }

    /// f32 elements of the whole workspace: the partial outputs and LSEs.
    fn workspace_len(&self, shape: &AttnShape) -> Result<usize> {
        product("decode workspace", &[self.splits, self.rows, shape.heads_q(), shape.head_dim() + 1])
    }
}

/// f32 elements of workspace a decode launch of this shape needs: the partial outputs
/// `[splits, rows, heads_q, head_dim]` and LSEs `[splits, heads_q, rows]`. `total_q` is
/// the packed row count for packed queries.
pub fn workspace_len<B>(shape: &AttnShape, total_q: Option<usize>, opts: &DecodeOptions, source: &DecodeSource<B>) -> Result<usize> {
    let g = geometry(shape, total_q, opts, source)?;
    g.workspace_len(shape)
}

/// The `extern "C"` name of the split kernel: `decode_<source>_<dtype>_hd<D>`.
pub fn kernel_name<B>(source: &DecodeSource<B>, dtype: DType, head_dim: usize) -> Result<String> {
    instantiation(&format!("decode_{}", source.name()), dtype, head_dim)
}

/// Plans a decode step after validating it: `shape` is (batch, q_len, seq_k capacity,
/// heads_q, heads_kv, head_dim); see [`DecodeBuffers`] for the tensors. Errors name what is
/// wrong: q_len 0 or past [`DECODE_MAX_Q_LEN`], a split count of 0, an unsupported block
/// size, a workspace or index tensor that is too small, a host `seqlens_k` past the
/// capacity, and everything the attention kernels check on q, k, v, out and the LSE.
pub fn plan(shape: &AttnShape, dtype: DType, opts: &DecodeOptions, bufs: &DecodeBuffers, source: &DecodeSource<DeviceBuffer>) -> Result<DecodePlan> {
    let total_q = bufs.packed.map(|p| p.total_q);
    let g = geometry(shape, total_q, opts, source)?;
    let dense = check_decode_tensors(shape, dtype, opts, bufs)?;
    let mut t = dense.tensors;
    let batch = shape.batch();
    t.seqlens_k = bufs.seqlens_k.index_addr("seqlens_k", batch)?;
    if let Some(host) = bufs.host_seqlens_k {
        check_host_seqlens(shape, host)?;
    }
    if let Some(packed) = bufs.packed {
        t.cu_seqlens_q = packed.cu_seqlens_q.index_addr("cu_seqlens_q", batch + 1)?;
        t.total_q = to_i32("total_q", packed.total_q)?;
        // Packed rows are addressed from the sequence's first row, not a batch stride.
        t.q_batch_stride = 0;
        if let Some(host) = packed.host {
            super::varlen::check_host_queries(shape, host, packed.total_q)?;
        }
    }
    let workspace_needed = g.workspace_len(shape)?;
    if bufs.workspace.len < workspace_needed {
        return Err(Error::BufferTooSmall { tensor: "workspace", needed: workspace_needed, len: bufs.workspace.len });
    }
    if !bufs.workspace.addr.is_multiple_of(16) {
        return Err(Error::InvalidParameter { name: "workspace", reason: format!("device address {:#x} is not 16-byte aligned", bufs.workspace.addr) });
    }
    let mut p = DecodeParams {
        tensors: t,
        partial_out: bufs.workspace.addr,
        partial_lse: bufs.workspace.addr + 4 * g.partial_out_len(shape) as u64,
        batch: to_i32("batch", batch)?,
        q_len: to_i32("q_len", shape.seq_q())?,
        seq_k: to_i32("seq_k", shape.seq_k())?,
        heads_q: to_i32("heads_q", shape.heads_q())?,
        heads_kv: to_i32("heads_kv", shape.heads_kv())?,
        splits: to_i32("splits", g.splits)?,
        split_slots: to_i32("split_slots", g.split_slots)?,
        row_chunks: to_i32("row chunks", g.row_chunks)?,
        rows: to_i32("rows", g.rows)?,
        causal: i32::from(opts.causal),
        softmax_scale: dense.scale,
        scale_log2: dense.scale_log2,
        ..DecodeParams::default()
    };
    let kv_rows = shape.batch() * shape.heads_kv();
    match source {
        DecodeSource::Dense => {}
        DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => {
            if !BLOCK_SIZES.contains(block_size) {
                return Err(Error::InvalidParameter { name: "block_size", reason: format!("{block_size} tokens; decode blocks hold one of {BLOCK_SIZES:?}") });
            }
            p.block_shift = block_size.trailing_zeros() as i32;
            p.max_blocks = to_i32("max_blocks", *max_blocks)?;
            p.block_count = block_count.index_addr("block_count", kv_rows)?;
            p.block_index = block_index.index_addr("block_index", product("block_index", &[kv_rows, *max_blocks])?)?;
        }
        DecodeSource::TopK { topk, indices } => {
            p.topk = to_i32("topk", *topk)?;
            p.indices = indices.index_addr("indices", product("indices", &[g.rows, shape.heads_kv(), *topk])?)?;
        }
    }
    let grid_y = product("heads_kv * token groups * row chunks", &[shape.heads_kv(), g.token_groups, g.row_chunks])?;
    let grid = [to_u32("splits", g.splits)?, to_u32("heads_kv * token groups * row chunks", grid_y)?, to_u32("batch", batch)?];
    let kernel = instantiation(&format!("decode_{}{}", source.name(), with_opt("", &p.tensors)), dtype, shape.head_dim())?;
    let split_kv = LaunchPlan::new(MODULE, kernel, grid, [THREADS, 1, 1], shared_mem_bytes(shape.head_dim()), &p)?;
    let merge = merge_plan(shape, dtype, &g, &p, bufs, &dense)?;
    Ok(DecodePlan { split_kv, merge, splits: g.splits })
}

/// q, out and the LSE against the shape (packed: `[total_q, ...]`), k and v against the
/// cache they are (`[batch, seq_k]` rows, or `[num_pages, page_size]` with a block table
/// whose span covers the capacity).
fn check_decode_tensors(shape: &AttnShape, dtype: DType, opts: &DecodeOptions, bufs: &DecodeBuffers) -> Result<DenseArgs> {
    let q_shape = match bufs.packed {
        Some(p) => AttnShape::new(1, p.total_q, shape.seq_k(), shape.heads_q(), shape.heads_kv(), shape.head_dim())?,
        None => *shape,
    };
    let Some(pages) = bufs.pages else {
        return check_tensors(&q_shape, [shape.batch(), shape.seq_k()], dtype, &opts.attn(), &bufs.attn);
    };
    let meta = super::PagedKvBuffers {
        cu_seqlens_q: DeviceBuffer { addr: 0, len: 0 },
        total_q: q_shape.batch() * q_shape.seq_q(),
        seqlens_k: bufs.seqlens_k,
        block_table: pages.block_table,
        max_pages: pages.max_pages,
        page_size: pages.page_size,
        num_pages: pages.num_pages,
        host: None,
    };
    super::paged::paged_tensors(shape, &q_shape, &meta, dtype, &opts.attn(), &bufs.attn)
}

/// The host copy of `seqlens_k`: one entry per sequence, each in `0..=seq_k`.
pub fn check_host_seqlens(shape: &AttnShape, host: &[i32]) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidCuSeqlens { tensor: "seqlens_k", reason });
    if host.len() != shape.batch() {
        return bad(format!("has {} entries for a batch of {}", host.len(), shape.batch()));
    }
    for (b, &k) in host.iter().enumerate() {
        if k < 0 || k as usize > shape.seq_k() {
            return bad(format!("sequence {b} has {k} keys; it must be in 0..={} (the shape's seq_k)", shape.seq_k()));
        }
    }
    Ok(())
}

/// The merge of the split kernel's partials into the output and LSE: the partials seen as
/// (batch, q_len) rows (packed: batch 1, `total_q` rows, as the varlen LSE `[heads_q,
/// total_q]` is), the output and LSE by the caller's layouts.
fn merge_plan(shape: &AttnShape, dtype: DType, g: &Geometry, p: &DecodeParams, bufs: &DecodeBuffers, dense: &DenseArgs) -> Result<LaunchPlan> {
    let (batch, seq) = if bufs.packed.is_some() { (1, g.rows) } else { (shape.batch(), shape.seq_q()) };
    let merge_shape = MergeShape::new(g.splits, batch, seq, shape.heads_q(), shape.head_dim())?;
    let (rows, h, d) = (g.rows as i64, shape.heads_q() as i64, shape.head_dim() as i64);
    let seq = seq as i64;
    let t = &dense.tensors;
    let layouts = MergeLayouts {
        partial_out: PartialOutLayout { state: rows * h * d, batch: seq * h * d, seq: h * d, head: d },
        partial_lse: PartialLseLayout { state: h * rows, batch: seq, head: rows },
        out: RowLayout { batch: t.out_batch_stride, seq: t.out_seq_stride, head: t.out_head_stride },
        lse: LseLayout { batch: t.lse_batch_stride, head: t.lse_head_stride },
    };
    let partial = |addr: u64, len: usize| DeviceBuffer { addr, len };
    let merge_bufs = MergeBuffers {
        partial_out: partial(p.partial_out, g.partial_out_len(shape)),
        partial_lse: partial(p.partial_lse, g.splits * g.rows * shape.heads_q()),
        out: bufs.attn.out,
        lse: bufs.attn.lse,
        layouts,
    };
    merge::plan(&merge_shape, dtype, &merge_bufs)
}
