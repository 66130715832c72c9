//! The checks on candle arguments that run before any op: devices, dtypes, ranks, the
//! contiguous last dimension, and the options. Each failure is a [`crate::Error`] naming the
//! tensor or argument and what was expected, wrapped into a `candle_core::Error` with its
//! message intact. What the crate's planners and references check anyway (index values,
//! buffer sizes against the problem, head_dim on the GPU) is left to them.

use candle_core::{DType as CDType, Device, Tensor};

use crate::error::Error;
use crate::shape::{AttnOptions, DType};

/// A crate error as a candle error; its `Display` (what candle prints) is the crate's message.
pub(super) fn wrap(e: Error) -> candle_core::Error {
    candle_core::Error::wrap(e)
}

/// An `InvalidParameter` error naming `name`, as a candle error.
pub(super) fn bad(name: &'static str, reason: impl Into<String>) -> candle_core::Error {
    wrap(Error::InvalidParameter { name, reason: reason.into() })
}

/// The element type of q and its keys and values (`kv`, named as the call names them):
/// f16 or bf16, the same for all three.
pub(super) fn attn_dtype(q: &Tensor, kv: [(&'static str, &Tensor); 2]) -> candle_core::Result<DType> {
    let dtype = match q.dtype() {
        CDType::F16 => DType::F16,
        CDType::BF16 => DType::BF16,
        other => return Err(bad("q", format!("dtype {other:?}; q, k and v must be f16 or bf16"))),
    };
    for (name, t) in kv {
        if t.dtype() != q.dtype() {
            return Err(bad(name, format!("dtype {:?}, but q is {:?}; q, k and v must have one dtype", t.dtype(), q.dtype())));
        }
    }
    Ok(dtype)
}

/// `t` lives on `device` (q's).
pub(super) fn same_device(name: &'static str, t: &Tensor, device: &Device) -> candle_core::Result<()> {
    if t.device().same_device(device) {
        return Ok(());
    }
    Err(bad(name, format!("is on {:?}, but q is on {:?}; every tensor of a call must be on q's device", t.device().location(), device.location())))
}

/// `t` has rank `rank` (`what` spells the expected dims in the message).
pub(super) fn rank(name: &'static str, t: &Tensor, rank: usize, what: &str) -> candle_core::Result<()> {
    if t.rank() == rank {
        return Ok(());
    }
    Err(bad(name, format!("has shape {:?}; expected rank {rank}: {what}", t.dims())))
}

/// A dense tensor (q, k, v, a cache) of rank `r`: its last dimension contiguous, since the
/// kernels load head vectors as contiguous 16-byte chunks (a size-1 last dimension has no
/// stride to speak of).
pub(super) fn dense(name: &'static str, t: &Tensor, r: usize, what: &str) -> candle_core::Result<()> {
    rank(name, t, r, what)?;
    let layout = t.layout();
    let last = r - 1;
    if layout.dims()[last] > 1 && layout.stride()[last] != 1 {
        return Err(bad(
            name,
            format!("the last (head_dim) dimension has stride {}; it must be contiguous (stride 1): call .contiguous() first", layout.stride()[last]),
        ));
    }
    Ok(())
}

/// An index tensor: i32 or u32, rank `r`, on q's device.
pub(super) fn index(name: &'static str, t: &Tensor, device: &Device, r: usize, what: &str) -> candle_core::Result<()> {
    same_device(name, t, device)?;
    if !matches!(t.dtype(), CDType::I32 | CDType::U32) {
        return Err(bad(name, format!("dtype {:?}; index tensors must be i32 or u32", t.dtype())));
    }
    rank(name, t, r, what)
}

/// Two tensors' dimension `i` agree (`what` says which dimension).
pub(super) fn same_dim(a: (&'static str, &Tensor, usize), b: (&'static str, &Tensor, usize), what: &str) -> candle_core::Result<()> {
    let (da, db) = (a.1.dims()[a.2], b.1.dims()[b.2]);
    if da == db {
        return Ok(());
    }
    Err(bad(b.0, format!("has {what} = {db} (dim {} of {:?}), but {} has {da} (dim {} of {:?})", b.2, b.1.dims(), a.0, a.2, a.1.dims())))
}

/// `b`'s leading dimensions equal `a`'s (index tensors that come in a set).
pub(super) fn same_prefix(a: (&'static str, &Tensor), b: (&'static str, &Tensor), n: usize) -> candle_core::Result<()> {
    if a.1.dims().get(..n) == b.1.dims().get(..n) {
        return Ok(());
    }
    Err(bad(b.0, format!("has shape {:?}; its first {n} dimensions must equal those of {} {:?}", b.1.dims(), a.0, a.1.dims())))
}

/// The sinks: f32 `[heads_q]` on q's device.
pub(super) fn sinks(sinks: Option<&Tensor>, device: &Device, heads_q: usize) -> candle_core::Result<()> {
    let Some(s) = sinks else { return Ok(()) };
    same_device("sinks", s, device)?;
    if s.dtype() != CDType::F32 {
        return Err(bad("sinks", format!("dtype {:?}; sinks are f32 logits, one per query head", s.dtype())));
    }
    if s.dims() != [heads_q] {
        return Err(bad("sinks", format!("has shape {:?}; expected [heads_q] = [{heads_q}]", s.dims())));
    }
    Ok(())
}

/// The options every forward validates alike: softcap finite and > 0, a window that fits
/// the kernels' i32, a finite positive scale.
pub(super) fn options(opts: &AttnOptions, head_dim: usize) -> candle_core::Result<()> {
    opts.checked_softcap().map_err(wrap)?;
    opts.checked_window_left().map_err(wrap)?;
    opts.scale(head_dim).map_err(wrap)?;
    Ok(())
}

/// Makes an index-like tensor contiguous: the kernels and the host read them as flat
/// arrays. A no-op (no copy) for a contiguous tensor, at any start offset.
pub(super) fn flat(t: &Tensor) -> candle_core::Result<Tensor> {
    t.contiguous()
}
