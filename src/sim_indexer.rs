//! The simulator backend of DeepSeek's lightning indexer and of chunked top-k selection:
//! the plans [`crate::cuda::indexer_topk`] and [`crate::cuda::topk_select_rows`] launch, run
//! on `ptx-sim` from host tensors.

use ptx_sim::{Counters, LaunchOptions};

use crate::error::{Error, Result};
use crate::pattern::indexer::{HostLayout, IndexerDims, IndexerWeight};
use crate::pattern::topk_select::{Score, SelectDims};
use crate::plan::indexer::{workspace_len, IndexerBuffers, IndexerLayout, WeightDtype};
use crate::plan::{PagedHost, PagedKvBuffers, VarlenBuffers};
use crate::shape::AttnDtype;
use crate::sim::SimBackend;

/// Host tensors of a simulated indexer call (layouts in [`crate::pattern::indexer`]).
#[derive(Debug, Clone, Copy)]
pub struct IndexerHostTensors<'a, T, W> {
    /// Indexer q `[rows, groups, heads, head_dim]`.
    pub q: &'a [T],
    /// Indexer k: `[batch, seq_k, ...]`, `[total_k, ...]` or `[num_pages, page_size, ...]`.
    pub k: &'a [T],
    /// Weights `[rows, groups, heads]`.
    pub w: &'a [W],
}

/// How [`SimBackend::indexer_topk`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimIndexerRun {
    /// Query rows per chunk: the workspace gets [`workspace_len`]`(dims, chunk_rows)` floats.
    pub chunk_rows: usize,
    /// The simulator's shared-memory race check on every launch (slower).
    pub racecheck: bool,
}

/// What a simulated indexer call produced.
#[derive(Debug, Clone)]
pub struct SimIndexer {
    /// `[rows, groups, top_k]`.
    pub indices: Vec<i32>,
    /// The scores launches' work, all chunks (simulator counts, not GPU timings).
    pub score_counters: Counters,
    /// The selection launches' work, all chunks.
    pub select_counters: Counters,
    /// Chunks run.
    pub chunks: usize,
}

impl SimBackend {
    /// Runs the indexer's top-k ([`crate::plan::indexer::plan`], the plan
    /// [`crate::cuda::indexer_topk`] launches) on host tensors, with a workspace of
    /// [`workspace_len`]`(dims, run.chunk_rows)` floats; the layout's host copies are
    /// uploaded and checked. Equal to
    /// [`crate::pattern::indexer::indexer_topk_host`] up to f32 rounding at near ties.
    pub fn indexer_topk<T: AttnDtype + ptx_sim::Element, W: IndexerWeight + ptx_sim::Element>(
        &self,
        dims: &IndexerDims,
        layout: HostLayout<'_>,
        tensors: IndexerHostTensors<'_, T, W>,
        top_k: usize,
        causal: bool,
        run: SimIndexerRun,
    ) -> Result<SimIndexer> {
        let SimIndexerRun { chunk_rows, racecheck } = run;
        dims.validate(top_k)?;
        let total_q = layout.total_q(dims);
        let bufs = IndexerBuffers {
            q: self.upload(tensors.q)?,
            k: self.upload(tensors.k)?,
            w: self.upload(tensors.w)?,
            workspace: self.alloc::<f32>(workspace_len(dims, chunk_rows)?)?,
            indices: self.alloc::<i32>(total_q * dims.groups * top_k)?,
        };
        // A zero-row workspace still gets one element from alloc: keep the length honest.
        let bufs = if chunk_rows == 0 { IndexerBuffers { workspace: crate::plan::DeviceBuffer { len: 0, ..bufs.workspace }, ..bufs } } else { bufs };
        let w_dtype = if W::IS_F32 { WeightDtype::F32 } else { WeightDtype::SameAsQ };
        let varlen;
        let paged;
        let plan_layout = match layout {
            HostLayout::Contiguous => IndexerLayout::Contiguous,
            HostLayout::Varlen(v) => {
                varlen = VarlenBuffers {
                    cu_seqlens_q: self.upload(v.cu_seqlens_q())?,
                    cu_seqlens_k: self.upload(v.cu_seqlens_k())?,
                    total_q: v.total_q(),
                    total_k: v.total_k(),
                    host: Some(v),
                };
                IndexerLayout::Varlen(&varlen)
            }
            HostLayout::Paged { varlen_q, seqlens_k, block_table, page_size } => {
                let row = dims.groups * dims.head_dim * page_size;
                if row == 0 || !tensors.k.len().is_multiple_of(row) {
                    return Err(Error::InvalidParameter { name: "k", reason: "a paged cache holds whole pages".into() });
                }
                paged = PagedKvBuffers {
                    cu_seqlens_q: self.upload(varlen_q.cu_seqlens_q())?,
                    total_q: varlen_q.total_q(),
                    seqlens_k: self.upload(seqlens_k)?,
                    block_table: self.upload(block_table)?,
                    max_pages: block_table.len() / dims.batch,
                    page_size,
                    num_pages: tensors.k.len() / row,
                    host: Some(PagedHost { varlen_q, seqlens_k, block_table }),
                };
                IndexerLayout::Paged(&paged)
            }
        };
        let plan = crate::plan::indexer::plan(dims, plan_layout, top_k, causal, T::DTYPE, w_dtype, &bufs)?;
        let opts = LaunchOptions { racecheck, ..Default::default() };
        let (mut score_counters, mut select_counters) = (Counters::default(), Counters::default());
        for chunk in plan.launches() {
            let [scores, select] = chunk?;
            score_counters.add(&self.launch(&scores, &opts)?);
            select_counters.add(&self.launch(&select, &opts)?);
        }
        Ok(SimIndexer { indices: self.download(bufs.indices)?, score_counters, select_counters, chunks: plan.chunks() })
    }

    /// Chunked top-k selection on the simulator ([`crate::plan::topk_select::plan_rows`]):
    /// `scores [rows.len(), heads * group, seq_k]` are the scores of the query rows `rows`
    /// (flat rows of `[batch, seq_q]`) of a selection of `dims`, `group` score heads per index
    /// head; `indices`, the whole `[batch, seq_q, heads, k]`
    /// tensor, is uploaded, the chunk's rows selected into it, and downloaded.
    #[allow(clippy::too_many_arguments)]
    pub fn topk_select_rows<T: Score + ptx_sim::Element>(
        &self,
        scores: &[T],
        dims: &SelectDims,
        rows: std::ops::Range<usize>,
        group: usize,
        k: usize,
        causal: bool,
        indices: &[i32],
    ) -> Result<Vec<i32>> {
        let all = dims.validate(k)?;
        crate::shape::check_len("scores", scores.len(), &[rows.len(), dims.heads, group, dims.seq_k])?;
        crate::shape::check_len("indices", indices.len(), &[all, k])?;
        let (s, out) = (self.upload(scores)?, self.upload(indices)?);
        let plan = crate::plan::topk_select::plan_rows(dims, rows, group, k, causal, T::DTYPE, s, out)?;
        self.launch(&plan, &LaunchOptions::default())?;
        self.download(out)
    }
}
