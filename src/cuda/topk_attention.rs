//! Top-k token attention on a GPU through cudarc (`topk_attn_fwd_*` in kernels/gather.cu).

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr};

use super::attention::AttnTensors;
use crate::attention::{AttnBuffers, DeviceBuffer};
use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::pattern::TopkTokens;
use crate::shape::{AttnDtype, AttnOptions, AttnShape};

/// A top-k index tensor in device memory: i32 `[batch, seq_q, heads_kv, k]`.
pub struct TopkDevice {
    /// The indices, -1 for an empty slot.
    pub indices: CudaSlice<i32>,
    /// `[batch, seq_q, heads_kv, k]`.
    pub dims: [usize; 4],
}

impl TopkDevice {
    /// Validates `desc` against `shape` on the host (out-of-range or repeated keys are an
    /// error here, where the kernel could only skip or double-count them) and uploads it.
    pub fn upload(stream: &Arc<CudaStream>, desc: &TopkTokens, shape: &AttnShape) -> Result<Self> {
        desc.validate(shape)?;
        let indices = stream.clone_htod(desc.indices()).map_err(|e| Error::Driver(e.to_string()))?;
        Ok(Self { indices, dims: desc.dims() })
    }
}

/// Enqueues top-k token attention on `stream`: query row `i` of head `h` attends the keys
/// listed for row `i` of kv head `h / (heads_q / heads_kv)`.
pub fn attention_topk<T: AttnDtype + DeviceRepr>(
    stream: &Arc<CudaStream>,
    shape: &AttnShape,
    opts: &AttnOptions,
    tensors: AttnTensors<'_, T>,
    indices: &TopkDevice,
) -> Result<()> {
    let buffer = |addr: u64, len: usize| DeviceBuffer { addr, len };
    let check = |name, s: &CudaSlice<T>| super::launch::check_context(stream, name, s);
    check("q", tensors.q)?;
    check("k", tensors.k)?;
    check("v", tensors.v)?;
    check("out", tensors.out)?;
    if let Some(l) = tensors.lse.as_deref() {
        super::launch::check_context(stream, "lse", l)?;
    }
    super::launch::check_context(stream, "indices", &indices.indices)?;
    let (q_ptr, _q_guard) = tensors.q.device_ptr(stream);
    let (k_ptr, _k_guard) = tensors.k.device_ptr(stream);
    let (v_ptr, _v_guard) = tensors.v.device_ptr(stream);
    let out_len = tensors.out.len();
    let (out_ptr, _out_guard) = tensors.out.device_ptr_mut(stream);
    let lse = tensors.lse.map(|l| {
        let len = l.len();
        let (ptr, guard) = l.device_ptr_mut(stream);
        (buffer(ptr, len), guard)
    });
    let (idx_ptr, _idx_guard) = indices.indices.device_ptr(stream);
    let bufs = AttnBuffers {
        q: buffer(q_ptr, tensors.q.len()),
        k: buffer(k_ptr, tensors.k.len()),
        v: buffer(v_ptr, tensors.v.len()),
        out: buffer(out_ptr, out_len),
        lse: lse.as_ref().map(|(b, _)| *b),
        layouts: tensors.layouts,
    };
    let plan = crate::plan::topk_attention(shape, T::DTYPE, opts, &bufs, buffer(idx_ptr, indices.indices.len()), indices.dims)?;
    // SAFETY: the plan is `plan::topk_attention`'s own, unmodified (params, grid and
    // shared memory agree); every address in the plan comes from a live CudaSlice of this
    // stream's context (checked above) whose length `plan::topk_attention` checked against
    // what the kernel addresses; the guards keep cudarc's ordering for those buffers until
    // the launch is enqueued. The shared memory (at most 36 KiB) needs no opt-in.
    unsafe { super::launch(stream, &plan) }
}
