//! Token top-k selection on the GPU (`topk_select_<f32|bf16>`, kernels/topk_select.cu), planned by
//! [`crate::plan::topk_select`].

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::tensors::{read, write};
use crate::error::Result;
use crate::pattern::topk_select::{Score, SelectDims};

/// Writes the indices of the `k` largest scores of every row of device-resident `scores
/// [batch, seq_q, heads, seq_k]` (`T`: f32 or bf16) to `indices [batch, seq_q, heads, k]` (i32),
/// asynchronously on `stream`: ascending key order, `-1` padding, ties to the lower key,
/// NaN below every number, and with `causal` only keys `j <= i + seq_k - seq_q` (the rule
/// of `crate::pattern::topk_select`, whose [`select_topk_host`] is the host reference).
/// The result is a [`crate::pattern::TopkTokens`] tensor with `heads_kv = heads`.
///
/// Sizes, `k` (`1..=seq_k`) and both buffers' lengths are checked first
/// ([`crate::plan::topk_select::plan`]).
///
/// [`select_topk_host`]: crate::pattern::topk_select::select_topk_host
pub fn topk_select<T: Score + DeviceRepr, S: DevicePtr<T>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    dims: &SelectDims,
    k: usize,
    causal: bool,
    scores: &S,
    indices: &mut O,
) -> Result<()> {
    let mut guards = Vec::new();
    let scores = read(stream, "scores", scores, &mut guards)?;
    let indices = write(stream, "indices", indices, &mut guards)?;
    let plan = crate::plan::topk_select::plan(dims, k, causal, T::DTYPE, scores, indices)?;
    // SAFETY: both addresses come from live buffers of this stream's context (checked
    // above) whose lengths the planner checked against every element the kernel addresses;
    // the guards keep cudarc's ordering until the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}

/// [`topk_select`] for the chunk of query rows `rows` (flat rows of `[batch, seq_q]`), each
/// index head over `group` score heads (their f32 sum ranks the keys; `group` 1 is plain
/// selection): `scores [rows, heads, seq_k]` holds only the chunk, and the
/// chunk's rows of the whole `indices [batch, seq_q, heads, k]` are written, each with its
/// own causal limit ([`crate::plan::topk_select::plan_rows`]). Selecting every chunk equals
/// one [`topk_select`] of the whole tensor.
#[allow(clippy::too_many_arguments)]
pub fn topk_select_rows<T: Score + DeviceRepr, S: DevicePtr<T>, O: DevicePtrMut<i32>>(
    stream: &Arc<CudaStream>,
    dims: &SelectDims,
    rows: std::ops::Range<usize>,
    group: usize,
    k: usize,
    causal: bool,
    scores: &S,
    indices: &mut O,
) -> Result<()> {
    let mut guards = Vec::new();
    let scores = read(stream, "scores", scores, &mut guards)?;
    let indices = write(stream, "indices", indices, &mut guards)?;
    let plan = crate::plan::topk_select::plan_rows(dims, rows, group, k, causal, T::DTYPE, scores, indices)?;
    // SAFETY: as in topk_select: live buffers of this context, lengths checked by the plan,
    // guards held until the launch is enqueued.
    let launched = unsafe { super::launch::launch(stream.cu_stream(), &plan) };
    drop(guards);
    launched
}
