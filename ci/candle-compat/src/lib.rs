//! An engine-shaped crate: candle-core with its `cuda` feature next to sparse-attn with
//! default features off. It is only ever `cargo check`ed (scripts/check-candle-compat.sh);
//! what it proves is that the two resolve to ONE cudarc crate instance with one set of
//! features, so candle's cudarc types are sparse-attn's cudarc types. Every function below
//! passes a value typed by candle's re-export of cudarc (`candle_core::cuda_backend::cudarc`)
//! where sparse-attn expects its own `cudarc` type, which compiles only if they are the
//! same crate.

use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, DriverError};
use candle_core::cuda_backend::{CudaDType, CudaDevice, CudaStorage};
use sparse_attn::cuda::AttnTensors;
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, Source};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attention over candle CUDA storages (`[q, k, v]` and `out` densely packed BSHD for
/// `shape`), on the device's own stream, with an index source already on the device.
pub fn attention_on_candle<T>(
    device: &CudaDevice,
    shape: &AttnShape,
    opts: &AttnOptions,
    [q, k, v]: [&CudaStorage; 3],
    out: &mut CudaStorage,
    source: &Source<CudaSlice<i32>>,
) -> Result<(), BoxError>
where
    T: AttnDtype + DeviceRepr + CudaDType,
{
    // candle's stream, typed by candle's cudarc ...
    let stream: Arc<CudaStream> = device.cuda_stream();
    let (q, k, v) = (
        q.as_cuda_slice::<T>()?,
        k.as_cuda_slice::<T>()?,
        v.as_cuda_slice::<T>()?,
    );
    let out = out.as_cuda_slice_mut::<T>()?;
    // ... and candle's CudaSlices, handed to sparse-attn as its own cudarc types.
    let tensors = AttnTensors::contiguous(shape, q, k, v, out, None);
    sparse_attn::cuda::attention(&stream, shape, opts, tensors, source)?;
    Ok(())
}

/// Uploads a host index source with sparse-attn on candle's stream, and wraps one of the
/// resulting `CudaSlice`s back into a candle storage: the round trip through both crates'
/// `CudaSlice` type.
pub fn upload_source<D: AsRef<[i32]>>(
    device: &CudaDevice,
    source: &Source<D>,
) -> Result<(Source<CudaSlice<i32>>, Option<CudaStorage>), BoxError> {
    let uploaded = sparse_attn::cuda::upload(&device.cuda_stream(), source)?;
    let mut first = None;
    uploaded.as_ref().try_map(|_, slice| {
        first.get_or_insert_with(|| slice.clone());
        Ok::<_, DriverError>(())
    })?;
    let storage = first.map(|slice| <i32 as CudaDType>::wrap_cuda_slice(slice, device.clone()));
    Ok((uploaded, storage))
}

/// sparse-attn's error converts from candle's cudarc `DriverError`.
pub fn driver_error(e: DriverError) -> sparse_attn::Error {
    e.into()
}

/// sparse-attn's context probe returns the context type candle's stream belongs to.
pub fn same_context(device: &CudaDevice) -> bool {
    let candle_ctx = device.cuda_stream().context().clone();
    match sparse_attn::cuda::gpu_context(candle_ctx.ordinal()) {
        Ok(ctx) => Arc::ptr_eq(&ctx, &candle_ctx) || ctx.cu_ctx() == candle_ctx.cu_ctx(),
        Err(_) => false,
    }
}

/// An engine's call of `sparse_attn::candle` on candle tensors; with sparse-attn's
/// `candle-cuda` feature on, CUDA tensors take the crate's kernels on candle's stream
/// (src/candle/cuda.rs, type-checked by this build against candle's `CudaStorage`).
pub fn attention_on_tensors(q: &candle_core::Tensor, k: &candle_core::Tensor, v: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    sparse_attn::candle::attention(q, k, v, &AttnOptions::causal(), None)
}
