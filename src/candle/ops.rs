//! The candle CustomOps: [`Prefill`] (batched or varlen attention under a [`Pattern`]) and
//! [`Decode`] (a decode step over a cache), both `CustomOp3` over (q, k, v) that carry
//! their other tensors inside, and [`TakeLse`], the second op that hands out the LSE.
//!
//! The LSE: a CustomOp has one output. The forward writes the LSE next to the output in
//! the same launch (or the same reference run) and leaves its storage in an [`LseSlot`]
//! that the op shares with a [`TakeLse`]; applying `TakeLse` to the output tensor right
//! after moves that storage into a tensor of its own. Nothing is recomputed or copied.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

use super::args::bad;
use super::pattern::{Pattern, VarlenSeqs};
use crate::plan::decode::{DecodeOptions, DecodeSource};
use crate::shape::{AttnOptions, AttnShape, DType};

/// An LSE storage, on the device its forward ran on.
pub(super) enum LseStorage {
    /// From the CPU forward.
    Cpu(CpuStorage),
    /// From the CUDA forward.
    #[cfg(feature = "candle-cuda")]
    Cuda(candle_core::CudaStorage),
}

/// Where a forward leaves its LSE for [`TakeLse`].
pub(super) type LseSlot = Arc<Mutex<Option<LseStorage>>>;

/// Attention over a batched BSHD problem, or a varlen one when `varlen` is set.
pub(super) struct Prefill {
    /// Batch and (longest) lengths, heads, head_dim.
    pub shape: AttnShape,
    /// q, k, v and out.
    pub dtype: DType,
    /// `return_lse` set exactly when `lse` is.
    pub opts: AttnOptions,
    /// The index tensors, contiguous, on q's device.
    pub pattern: Pattern<Tensor>,
    /// The sequence boundaries of a varlen call (contiguous).
    pub varlen: Option<VarlenSeqs<Tensor>>,
    /// f32 `[heads_q]`.
    pub sinks: Option<Tensor>,
    /// Set for the `_with_lse` functions.
    pub lse: Option<LseSlot>,
}

/// A decode step: q `[batch, q_len, heads_q, head_dim]` over k and v caches.
pub(super) struct Decode {
    /// (batch, q_len, capacity, heads_q, heads_kv, head_dim).
    pub shape: AttnShape,
    /// q, the caches and out.
    pub dtype: DType,
    /// `return_lse` set exactly when `lse` is.
    pub opts: DecodeOptions,
    /// `[batch]` keys per sequence (contiguous).
    pub seqlens_k: Tensor,
    /// `[batch, max_pages]` for a paged cache (contiguous).
    pub block_table: Option<Tensor>,
    /// The keys each new token attends (index tensors contiguous).
    pub source: DecodeSource<Tensor>,
    /// f32 `[heads_q]`.
    pub sinks: Option<Tensor>,
    /// Set for [`super::decode_with_lse`].
    pub lse: Option<LseSlot>,
}

/// Leaves `lse` in the op's slot, when the op has one.
pub(super) fn stash(slot: Option<&LseSlot>, lse: impl FnOnce() -> LseStorage) -> candle_core::Result<()> {
    let Some(slot) = slot else { return Ok(()) };
    let mut guard = slot.lock().map_err(|_| bad("lse", "the LSE slot was poisoned by a panic in another thread"))?;
    *guard = Some(lse());
    Ok(())
}

impl CustomOp3 for Prefill {
    fn name(&self) -> &'static str {
        "sparse-attn-attention"
    }

    fn cpu_fwd(&self, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        super::cpu::prefill(self, (q, ql), (k, kl), (v, vl))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        ql: &Layout,
        k: &candle_core::CudaStorage,
        kl: &Layout,
        v: &candle_core::CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::prefill(self, (q, ql), (k, kl), (v, vl))
    }
}

impl CustomOp3 for Decode {
    fn name(&self) -> &'static str {
        "sparse-attn-decode"
    }

    fn cpu_fwd(&self, q: &CpuStorage, ql: &Layout, k: &CpuStorage, kl: &Layout, v: &CpuStorage, vl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        super::cpu::decode(self, (q, ql), (k, kl), (v, vl))
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        ql: &Layout,
        k: &candle_core::CudaStorage,
        kl: &Layout,
        v: &candle_core::CudaStorage,
        vl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        super::cuda::decode(self, (q, ql), (k, kl), (v, vl))
    }
}

/// The second op of a `_with_lse` call: applied to the output tensor (which it ignores), it
/// returns the LSE its forward left in `slot`, as a tensor of `shape`.
pub(super) struct TakeLse {
    pub slot: LseSlot,
    pub shape: Shape,
}

impl TakeLse {
    fn take(&self) -> candle_core::Result<LseStorage> {
        let mut guard = self.slot.lock().map_err(|_| bad("lse", "the LSE slot was poisoned by a panic in another thread"))?;
        guard.take().ok_or_else(|| bad("lse", "the attention op left no LSE (it did not run, or its LSE was taken already)"))
    }
}

impl CustomOp1 for TakeLse {
    fn name(&self) -> &'static str {
        "sparse-attn-lse"
    }

    fn cpu_fwd(&self, _out: &CpuStorage, _layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        match self.take()? {
            LseStorage::Cpu(s) => Ok((s, self.shape.clone())),
            #[cfg(feature = "candle-cuda")]
            LseStorage::Cuda(_) => Err(bad("lse", "the forward ran on CUDA but the output is on the CPU")),
        }
    }

    #[cfg(feature = "candle-cuda")]
    fn cuda_fwd(&self, _out: &candle_core::CudaStorage, _layout: &Layout) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        match self.take()? {
            LseStorage::Cuda(s) => Ok((s, self.shape.clone())),
            LseStorage::Cpu(_) => Err(bad("lse", "the forward ran on the CPU but the output is on CUDA")),
        }
    }
}
