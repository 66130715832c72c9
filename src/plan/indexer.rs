//! DeepSeek's lightning indexer on the device (`kernels/indexer.cu`), chunk by chunk: for
//! each chunk of query rows, `indexer_scores_<dtype>_d<head_dim>` writes the chunk's f32
//! scores into the caller's workspace and `topk_select_rows_f32` selects each row's top-k
//! from them into the index tensor. The workspace holds [`workspace_len`]`(dims,
//! chunk_rows)` floats, so memory is bounded by the chunk, never by `[seq_q, seq_k]`. The
//! rule and the host reference are in [`crate::pattern::indexer`].

use super::buffers::DeviceBuffer;
use super::paged::PagedKvBuffers;
use super::varlen::VarlenBuffers;
use super::LaunchPlan;
use crate::checked::{product, to_i32};
use crate::error::{Error, Result};
use crate::params::{IndexRowsParams, IndexerParams, TopkSelectRowsParams, INDEXER_THREADS};
use crate::pattern::indexer::IndexerDims;
use crate::shape::{AttnShape, DType};

/// The `kernels/<MODULE>.cu` file stem of the scores kernels.
pub const MODULE: &str = "indexer";

/// Threads per CTA of the scores kernels (one key each).
pub const THREADS: u32 = INDEXER_THREADS;

/// The scores kernel for q / k of `dtype` and `head_dim`: `indexer_scores_<f16|bf16>_d<64|128>`.
pub fn kernel(dtype: DType, head_dim: usize) -> String {
    format!("indexer_scores_{}_d{head_dim}", dtype.name())
}

/// Where the rows' sequences and keys are.
#[derive(Debug, Clone, Copy)]
pub enum IndexerLayout<'a> {
    /// q `[batch, seq_q, groups, heads, head_dim]`, k `[batch, seq_k, groups, head_dim]`.
    Contiguous,
    /// Packed rows and keys: q `[total_q, ...]`, k `[total_k, groups, head_dim]`; the dims'
    /// seq_q and seq_k are the longest sequences.
    Varlen(&'a VarlenBuffers<'a>),
    /// Packed query rows, keys in a page cache `[num_pages, page_size, groups, head_dim]`
    /// (dense), `seqlens_k[b]` keys each; the dims' seq_k bounds every sequence's keys.
    Paged(&'a PagedKvBuffers<'a>),
}

/// The device buffers of an indexer launch.
#[derive(Debug, Clone, Copy)]
pub struct IndexerBuffers {
    /// q's dtype: indexer q `[rows, groups, heads, head_dim]`.
    pub q: DeviceBuffer,
    /// q's dtype: indexer k (16-byte aligned).
    pub k: DeviceBuffer,
    /// f32 or q's dtype: weights `[rows, groups, heads]`.
    pub w: DeviceBuffer,
    /// f32 scratch of at least [`workspace_len`]`(dims, 1)` floats; its length sets the chunk.
    pub workspace: DeviceBuffer,
    /// i32 output `[rows, groups, k]`.
    pub indices: DeviceBuffer,
}

/// The launches of one indexer call: for every chunk of query rows, its scores then its
/// selection (which reads the workspace the scores wrote, so they run on one stream, in
/// chunk order). Chunks are built on demand ([`IndexerPlan::chunk`]), so a long prefill with
/// a small workspace does not hold thousands of plans at once; every chunk was validated
/// with the whole call.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexerPlan {
    chunk_rows: usize,
    total_q: usize,
    kernel: String,
    key_tiles: u32,
    scores: IndexerParams,
    select: TopkSelectRowsParams,
}

impl IndexerPlan {
    /// Query rows per chunk (the last chunk may have fewer).
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    /// The number of chunks.
    pub fn chunks(&self) -> usize {
        self.total_q.div_ceil(self.chunk_rows)
    }

    /// `[scores, select]` of chunk `c` (rows `c * chunk_rows ..`); an error past the last.
    pub fn chunk(&self, c: usize) -> Result<[LaunchPlan; 2]> {
        let first = c.checked_mul(self.chunk_rows).filter(|&f| f < self.total_q).ok_or_else(|| Error::InvalidParameter {
            name: "chunk",
            reason: format!("chunk {c} of {}", self.chunks()),
        })?;
        let n = self.chunk_rows.min(self.total_q - first);
        // Both fit i32: the whole call's rows and rows * groups were checked by plan.
        let rows = IndexRowsParams { first_row: to_i32("first_row", first)?, rows: to_i32("rows", n)?, ..self.scores.rows };
        let ctas = to_i32("rows * groups", n * self.scores.groups as usize)? as u32;
        let scores = IndexerParams { rows, ..self.scores };
        let select = TopkSelectRowsParams { rows, ..self.select };
        let select_kernel = super::topk_select::rows_kernel(crate::pattern::topk_select::ScoreDtype::F32);
        Ok([
            LaunchPlan::new(MODULE, self.kernel.clone(), [ctas, self.key_tiles, 1], [THREADS, 1, 1], 0, &scores)?,
            LaunchPlan::new(super::topk_select::MODULE, select_kernel, [ctas, 1, 1], [super::topk_select::THREADS, 1, 1], 0, &select)?,
        ])
    }

    /// Every chunk's `[scores, select]`, in launch order.
    pub fn launches(&self) -> impl Iterator<Item = Result<[LaunchPlan; 2]>> + '_ {
        (0..self.chunks()).map(|c| self.chunk(c))
    }
}

/// Floats of workspace a launch of `chunk_rows` query rows per chunk needs: `chunk_rows *
/// groups * seq_k`.
pub fn workspace_len(dims: &IndexerDims, chunk_rows: usize) -> Result<usize> {
    product("workspace", &[chunk_rows, dims.groups, dims.seq_k])
}

/// The element type of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    /// f32 weights.
    F32,
    /// Weights of q's dtype.
    SameAsQ,
}

/// A device address holding `needed` elements of `elem_bytes` each, aligned to `align`.
fn addr(buf: DeviceBuffer, tensor: &'static str, needed: usize, align: u64) -> Result<u64> {
    if buf.len < needed {
        return Err(Error::BufferTooSmall { tensor, needed, len: buf.len });
    }
    if buf.addr == 0 || !buf.addr.is_multiple_of(align) {
        return Err(Error::InvalidParameter { name: tensor, reason: format!("device address {:#x} is null or not {align}-byte aligned", buf.addr) });
    }
    Ok(buf.addr)
}

/// The rows params of the whole launch (chunk fields 0), and its key rows and page fields,
/// after checking the layout's metadata against the dims.
struct Geometry {
    rows: IndexRowsParams,
    key_rows: usize,
    block_table: u64,
    max_pages: i32,
    page_shift: i32,
    num_pages: i32,
}

fn geometry(dims: &IndexerDims, layout: IndexerLayout<'_>, causal: bool) -> Result<Geometry> {
    let mut rows = IndexRowsParams {
        batch: to_i32("batch", dims.batch)?,
        seq_q: to_i32("seq_q", dims.seq_q)?,
        seq_k: to_i32("seq_k", dims.seq_k)?,
        causal: i32::from(causal),
        ..Default::default()
    };
    // The attention planners' metadata checks, on a stand-in shape with the same lengths.
    let shape = AttnShape::new(dims.batch, dims.seq_q, dims.seq_k, 1, 1, 64)?;
    let cu = |buf: DeviceBuffer, tensor| DeviceBuffer::index_addr(buf, tensor, dims.batch + 1);
    let mut g = Geometry { rows, key_rows: 0, block_table: 0, max_pages: 0, page_shift: 0, num_pages: 0 };
    match layout {
        IndexerLayout::Contiguous => {
            rows.total_q = to_i32("total_q", product("total_q", &[dims.batch, dims.seq_q])?)?;
            g.key_rows = product("k", &[dims.batch, dims.seq_k])?;
        }
        IndexerLayout::Varlen(v) => {
            super::varlen::check_host(&shape, v)?;
            for (dim, value) in [("total_q", v.total_q), ("total_k", v.total_k)] {
                if value == 0 {
                    return Err(Error::ZeroDimension { dim });
                }
            }
            rows.cu_seqlens_q = cu(v.cu_seqlens_q, "cu_seqlens_q")?;
            rows.cu_seqlens_k = cu(v.cu_seqlens_k, "cu_seqlens_k")?;
            rows.total_q = to_i32("total_q", v.total_q)?;
            rows.total_k = to_i32("total_k", v.total_k)?;
            g.key_rows = v.total_k;
        }
        IndexerLayout::Paged(p) => {
            g.page_shift = super::paged::check_metadata(&shape, p)? as i32;
            rows.cu_seqlens_q = cu(p.cu_seqlens_q, "cu_seqlens_q")?;
            rows.seqlens_k = p.seqlens_k.index_addr("seqlens_k", dims.batch)?;
            rows.total_q = to_i32("total_q", p.total_q)?;
            g.block_table = p.block_table.index_addr("block_table", product("block_table", &[dims.batch, p.max_pages])?)?;
            g.max_pages = to_i32("max_pages", p.max_pages)?;
            g.num_pages = to_i32("num_pages", p.num_pages)?;
            g.key_rows = product("k", &[p.num_pages, p.page_size])?;
        }
    }
    g.rows = rows;
    Ok(g)
}

/// Plans the indexer's top-k of every query row after validating everything: the sizes
/// and `top_k` ([`IndexerDims::validate`]: `top_k` in `1..=seq_k`, a supported head_dim,
/// `heads * head_dim` at most [`crate::pattern::indexer::INDEXER_MAX_QROW`]), the layout's
/// metadata (host copies when given), every buffer's length and alignment, and a workspace
/// of at least one row (`groups * seq_k` floats; rows per chunk = its length / that, at
/// most the rows there are). `dtype` is q's and k's (f16 or bf16), `w_dtype` the weights'.
pub fn plan(
    dims: &IndexerDims,
    layout: IndexerLayout<'_>,
    top_k: usize,
    causal: bool,
    dtype: DType,
    w_dtype: WeightDtype,
    bufs: &IndexerBuffers,
) -> Result<IndexerPlan> {
    dims.validate(top_k)?;
    let g = geometry(dims, layout, causal)?;
    let total_q = g.rows.total_q as usize;
    let (groups, heads, d) = (dims.groups, dims.heads, dims.head_dim);
    let q = addr(bufs.q, "q", product("q", &[total_q, groups, heads, d])?, 2)?;
    let k = addr(bufs.k, "k", product("k", &[g.key_rows, groups, d])?, 16)?;
    let w_len = product("w", &[total_q, groups, heads])?;
    let w = match w_dtype {
        WeightDtype::F32 => addr(bufs.w, "w", w_len, 4)?,
        WeightDtype::SameAsQ => addr(bufs.w, "w", w_len, 2)?,
    };
    let indices = bufs.indices.index_addr("indices", product("indices", &[total_q, groups, top_k])?)?;
    let row_len = workspace_len(dims, 1)?;
    let workspace = addr(bufs.workspace, "workspace", row_len, 4)?;
    let chunk_rows = (bufs.workspace.len / row_len).min(total_q);
    let key_tiles = u32::try_from(dims.seq_k.div_ceil(THREADS as usize)).unwrap_or(u32::MAX);
    let scores = IndexerParams {
        q,
        k,
        w,
        scores: workspace,
        block_table: g.block_table,
        rows: g.rows,
        groups: to_i32("groups", groups)?,
        heads: to_i32("heads", heads)?,
        w_same_dtype: i32::from(w_dtype == WeightDtype::SameAsQ),
        max_pages: g.max_pages,
        page_shift: g.page_shift,
        num_pages: g.num_pages,
    };
    let select = TopkSelectRowsParams { scores: workspace, indices, rows: g.rows, heads: scores.groups, k: to_i32("k", top_k)?, group: 1, pad0: 0 };
    let plan = IndexerPlan { chunk_rows, total_q, kernel: kernel(dtype, d), key_tiles, scores, select };
    // The largest chunk is the first: its grid checks every chunk's.
    plan.chunk(0)?;
    Ok(plan)
}
