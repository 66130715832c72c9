//! Split-KV decode on a GPU through cudarc ([`decode`]): the two launches of
//! [`crate::plan::decode::plan`], enqueued on the caller's stream with the caller's
//! workspace. No allocation, no host synchronisation and no read-back, so a decode step can
//! be captured in a CUDA graph and replayed while the lengths on the device grow.

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::tensors::{attn_buffers, read, write, AttnTensors};
use crate::error::Result;
use crate::plan::decode::{DecodeBuffers, DecodeOptions, DecodePages, DecodeSource, PackedQueries};
use crate::shape::{AttnDtype, AttnShape, Varlen};

/// The per-step metadata of a decode launch on the device.
pub struct DecodeTensors<'a, B> {
    /// i32 `seqlens_k [batch]`: keys per sequence, the new tokens' included.
    pub seqlens_k: &'a B,
    /// The host copy of `seqlens_k`, checked when given.
    pub host_seqlens_k: Option<&'a [i32]>,
    /// For page caches: i32 `block_table [batch, max_pages]`, entries per row, tokens per
    /// page and pages per cache.
    pub pages: Option<(&'a B, usize, usize, usize)>,
    /// For packed queries: i32 `cu_seqlens_q [batch + 1]`, the packed row count, and the
    /// host copy when the caller has it.
    pub packed: Option<(&'a B, usize, Option<&'a Varlen>)>,
}

/// Enqueues a decode step ([`crate::plan::decode::plan`]): `shape` is (batch, q_len, seq_k
/// capacity, heads_q, heads_kv, head_dim); `tensors` holds q, the k and v caches
/// (`[batch, seq_k, heads_kv, head_dim]` by their layouts, or page caches with
/// `meta.pages`), out and the LSE; `workspace` is f32 scratch of at least
/// [`crate::plan::decode::workspace_len`] elements, reused across steps.
pub fn decode<T: AttnDtype + DeviceRepr, B: DevicePtr<i32>, W: DevicePtrMut<f32>>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &DecodeOptions,
    tensors: AttnTensors<'_, T>,
    meta: DecodeTensors<'_, B>,
    workspace: &mut W,
    source: &DecodeSource<B>,
) -> Result<()> {
    let mut guards = Vec::new();
    let attn = attn_buffers(stream, tensors, &mut guards)?;
    let seqlens_k = read(stream, "seqlens_k", meta.seqlens_k, &mut guards)?;
    let pages = match meta.pages {
        Some((table, max_pages, page_size, num_pages)) => {
            Some(DecodePages { block_table: read(stream, "block_table", table, &mut guards)?, max_pages, page_size, num_pages })
        }
        None => None,
    };
    let packed = match meta.packed {
        Some((cu, total_q, host)) => Some(PackedQueries { cu_seqlens_q: read(stream, "cu_seqlens_q", cu, &mut guards)?, total_q, host }),
        None => None,
    };
    let source = source.try_map(|name, b| read(stream, name, b, &mut guards))?;
    let workspace = write(stream, "workspace", workspace, &mut guards)?;
    let bufs = DecodeBuffers { attn, seqlens_k, host_seqlens_k: meta.host_seqlens_k, pages, packed, workspace };
    let plan = crate::plan::decode::plan(shape, T::DTYPE, opts, &bufs, &source)?;
    // SAFETY: every address in both plans comes from a live buffer of this stream's context
    // (checked as it was read) whose true length the planner checked against what the
    // kernels address; the two launches are ordered on the one stream, and the guards keep
    // cudarc's event ordering for the buffers until both are enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan.split_kv) }
        .and_then(|()| unsafe { super::launch::launch(stream.cu_stream(), &plan.merge) });
    drop(guards);
    launched
}
