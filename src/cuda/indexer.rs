//! DeepSeek's lightning indexer and its top-k on the GPU (kernels/indexer.cu then
//! `topk_select_rows_f32`, chunk by chunk), planned by [`crate::plan::indexer`].

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::{PagedTensors, VarlenTensors};
use super::tensors::{read, write};
use crate::error::Result;
use crate::pattern::indexer::{IndexerDims, IndexerWeight};
use crate::plan::indexer::{IndexerBuffers, IndexerLayout, WeightDtype};
use crate::shape::AttnDtype;

/// Where an indexer call's rows and keys are (see [`IndexerLayout`]).
pub enum IndexerLayoutTensors<'a, B> {
    /// q `[batch, seq_q, groups, heads, head_dim]`, k `[batch, seq_k, groups, head_dim]`.
    Contiguous,
    /// Packed rows and keys with device `cu_seqlens_q` / `cu_seqlens_k`.
    Varlen(VarlenTensors<'a, B>),
    /// Packed rows, keys in a dense page cache `[num_pages, page_size, groups, head_dim]`.
    Paged(PagedTensors<'a, B>),
}

/// The tensors of an indexer call: q and k of one dtype `T` (one buffer type `Q`), the
/// weights (f32 or `T`), the f32 workspace and the i32 output.
pub struct IndexerTensors<'a, Q, W, S, O> {
    /// Indexer q `[rows, groups, heads, head_dim]`.
    pub q: &'a Q,
    /// Indexer k, 16-byte aligned.
    pub k: &'a Q,
    /// Weights `[rows, groups, heads]`.
    pub w: &'a W,
    /// f32 scratch of at least `plan::indexer::workspace_len(dims, 1)` floats; its length
    /// sets the rows per chunk.
    pub workspace: &'a mut S,
    /// i32 `[rows, groups, top_k]`: each row's kept keys, ascending, `-1` padded.
    pub indices: &'a mut O,
}

/// Enqueues the indexer's top-k on `stream`: for every chunk of query rows (as many as the
/// workspace holds), the scores `sum_h w[t, g, h] * relu(q[t, g, h] . k[s, g])` in f32 into
/// the workspace, then each row's `top_k` best keys (ties to the lower key, NaN lowest,
/// with `causal` only `s <= i + len_k - len_q`) into `indices`, a
/// [`crate::pattern::TopkTokens`] tensor with `heads_kv = groups` (packed like q for varlen
/// and paged). `T` is f16 or bf16; `Wt` is f32 or `T`. Everything is checked first
/// ([`crate::plan::indexer::plan`]); equal to
/// [`crate::pattern::indexer::indexer_topk_host`] up to the f32 rounding of near ties.
pub fn indexer_topk<T, Wt, B, Q, W, S, O>(
    stream: &Arc<CudaStream>,
    dims: &IndexerDims,
    layout: IndexerLayoutTensors<'_, B>,
    top_k: usize,
    causal: bool,
    tensors: IndexerTensors<'_, Q, W, S, O>,
) -> Result<()>
where
    T: AttnDtype + DeviceRepr,
    Wt: IndexerWeight + DeviceRepr,
    B: DevicePtr<i32>,
    Q: DevicePtr<T>,
    W: DevicePtr<Wt>,
    S: DevicePtrMut<f32>,
    O: DevicePtrMut<i32>,
{
    let mut guards = Vec::new();
    let varlen;
    let paged;
    let plan_layout = match &layout {
        IndexerLayoutTensors::Contiguous => IndexerLayout::Contiguous,
        IndexerLayoutTensors::Varlen(v) => {
            varlen = v.buffers(stream, &mut guards)?;
            IndexerLayout::Varlen(&varlen)
        }
        IndexerLayoutTensors::Paged(p) => {
            paged = p.buffers(stream, &mut guards)?;
            IndexerLayout::Paged(&paged)
        }
    };
    let bufs = IndexerBuffers {
        q: read(stream, "q", tensors.q, &mut guards)?,
        k: read(stream, "k", tensors.k, &mut guards)?,
        w: read(stream, "w", tensors.w, &mut guards)?,
        workspace: write(stream, "workspace", tensors.workspace, &mut guards)?,
        indices: write(stream, "indices", tensors.indices, &mut guards)?,
    };
    let w_dtype = if Wt::IS_F32 { WeightDtype::F32 } else { WeightDtype::SameAsQ };
    let plan = crate::plan::indexer::plan(dims, plan_layout, top_k, causal, T::DTYPE, w_dtype, &bufs)?;
    for chunk in plan.launches() {
        let [scores, select] = chunk?;
        for launch in [&scores, &select] {
        // SAFETY: every address comes from a live buffer of this stream's context (checked
        // above) whose length the planner checked against every element the kernels
        // address; the guards keep cudarc's ordering until every launch is enqueued, and
        // the launches of one stream run in order (a chunk's selection after its scores,
        // the next chunk's scores after that selection).
        unsafe { super::launch::launch(stream.cu_stream(), launch) }?;
        }
    }
    drop(guards);
    Ok(())
}
