//! Split-KV decode on the PTX simulator: [`SimBackend::decode`] uploads host tensors, runs
//! the two launches of [`crate::plan::decode::plan`] (the split kernel, then the merge) and
//! downloads the output and LSE.

use ptx_sim::{Counters, LaunchOptions};

use crate::error::Result;
use crate::plan::decode::{check_host_seqlens, workspace_len, DecodeBuffers, DecodeOptions, DecodePages, DecodeSource, PackedQueries};
use crate::plan::decode_host::check_host_source;
use crate::plan::{AttnBuffers, AttnLayouts};
use crate::shape::{AttnDtype, AttnShape, Bshd, Varlen};
use crate::sim::{PagedCache, SimBackend};

/// The KV cache of a simulated decode step.
#[derive(Debug, Clone, Copy)]
pub enum DecodeCache<'a, T> {
    /// `[batch, seq_k, heads_kv, head_dim]` caches (seq_k the shape's capacity), with the
    /// keys each sequence holds.
    Contiguous {
        /// Keys.
        k: &'a [T],
        /// Values.
        v: &'a [T],
        /// Keys per sequence (each at most the shape's seq_k).
        seqlens_k: &'a [i32],
    },
    /// Page caches (their `seqlens_k` and block table).
    Paged(PagedCache<'a, T>),
}

/// What a simulated decode step produced.
#[derive(Debug, Clone)]
pub struct SimDecode<T> {
    /// Like q: `[batch, q_len, heads_q, head_dim]`, or packed `[total_q, heads_q, head_dim]`.
    pub out: Vec<T>,
    /// `[batch, heads_q, q_len]`, or `[heads_q, total_q]` when packed; natural log.
    pub lse: Vec<f32>,
    /// The split kernel's work (simulator counts, not GPU timings).
    pub counters: Counters,
    /// The merge's work.
    pub merge_counters: Counters,
    /// The split count the plan chose.
    pub splits: usize,
}

/// How [`SimBackend::decode_with`] runs a decode step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimDecodeRun<'a> {
    /// Check the host copies first (the key counts, the source's index tensors with
    /// [`check_host_source`]); off, the step runs as an engine whose lengths and indices
    /// live only on the device: nothing but the sizes is checked, and the kernel skips what
    /// is out of range.
    pub host_checks: bool,
    /// The simulator's racecheck on both launches (a shared-memory race between barriers
    /// is an error; slower).
    pub racecheck: bool,
    /// Attention sinks, one f32 logit per query head (uploaded); `None` = none.
    pub sinks: Option<&'a [f32]>,
}

impl Default for SimDecodeRun<'_> {
    fn default() -> Self {
        Self { host_checks: true, racecheck: false, sinks: None }
    }
}

impl SimBackend {
    /// Runs a decode step: q `[batch, q_len, heads_q, head_dim]` for the shape (batch,
    /// q_len, seq_k capacity, heads_q, heads_kv, head_dim), or packed `[total_q, heads_q,
    /// head_dim]` with `packed` (uploaded as the device's cu_seqlens_q and checked as the
    /// host copy); the cache and the source's index tensors are uploaded too, and the
    /// workspace allocated at [`workspace_len`]. The host copies are checked first. The LSE
    /// is always computed.
    pub fn decode<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(
        &self,
        shape: &AttnShape,
        opts: &DecodeOptions,
        q: &[T],
        packed: Option<&Varlen>,
        cache: DecodeCache<'_, T>,
        source: &DecodeSource<D>,
    ) -> Result<SimDecode<T>> {
        self.decode_with(shape, opts, q, packed, cache, source, SimDecodeRun::default())
    }

    /// [`Self::decode`], run as `run` says.
    #[allow(clippy::too_many_arguments)]
    pub fn decode_with<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(
        &self,
        shape: &AttnShape,
        opts: &DecodeOptions,
        q: &[T],
        packed: Option<&Varlen>,
        cache: DecodeCache<'_, T>,
        source: &DecodeSource<D>,
        run: SimDecodeRun<'_>,
    ) -> Result<SimDecode<T>> {
        let seqlens_k = match cache {
            DecodeCache::Contiguous { seqlens_k, .. } => seqlens_k,
            DecodeCache::Paged(c) => c.seqlens_k,
        };
        if run.host_checks {
            check_host_seqlens(shape, seqlens_k)?;
            check_host_source(shape, seqlens_k, packed, source)?;
        }
        let host_copies = run.host_checks;
        let launch = LaunchOptions { racecheck: run.racecheck, ..Default::default() };
        let opts = DecodeOptions { return_lse: true, ..*opts };
        let (rows, lse_len) = match packed {
            Some(v) => (v.total_q(), shape.heads_q() * v.total_q()),
            None => (shape.batch() * shape.seq_q(), shape.lse_len()),
        };
        let q_layout = match packed {
            Some(v) => Bshd::contiguous(v.total_q(), shape.heads_q(), shape.head_dim()),
            None => AttnLayouts::contiguous(shape).q,
        };
        let (k, v, kv_layout) = match cache {
            DecodeCache::Contiguous { k, v, .. } => (k, v, AttnLayouts::contiguous(shape).k),
            DecodeCache::Paged(c) => (c.k, c.v, c.layout),
        };
        let attn = AttnBuffers {
            q: self.upload(q)?,
            k: self.upload(k)?,
            v: self.upload(v)?,
            out: self.alloc::<T>(rows * shape.heads_q() * shape.head_dim())?,
            lse: Some(self.alloc::<f32>(lse_len)?),
            sinks: run.sinks.map(|s| self.upload(s)).transpose()?,
            layouts: AttnLayouts { q: q_layout, k: kv_layout, v: kv_layout, out: q_layout },
        };
        let pages = match cache {
            DecodeCache::Contiguous { .. } => None,
            DecodeCache::Paged(c) => Some(DecodePages { block_table: self.upload(c.block_table)?, max_pages: c.max_pages, page_size: c.page_size, num_pages: c.num_pages }),
        };
        let packed = match packed {
            Some(v) => Some(PackedQueries { cu_seqlens_q: self.upload(v.cu_seqlens_q())?, total_q: v.total_q(), host: host_copies.then_some(v) }),
            None => None,
        };
        let source = source.try_map(|_, data| self.upload(data.as_ref()))?;
        let workspace = self.alloc::<f32>(workspace_len(shape, packed.map(|p| p.total_q), &opts, &source)?)?;
        let host_seqlens_k = host_copies.then_some(seqlens_k);
        let bufs = DecodeBuffers { attn, seqlens_k: self.upload(seqlens_k)?, host_seqlens_k, pages, packed, workspace };
        let plan = crate::plan::decode::plan(shape, T::DTYPE, &opts, &bufs, &source)?;
        let counters = self.launch(&plan.split_kv, &launch)?;
        let merge_counters = self.launch(&plan.merge, &launch)?;
        let lse = attn.lse.map_or(Ok(Vec::new()), |l| self.download::<f32>(l))?;
        Ok(SimDecode { out: self.download(attn.out)?, lse, counters, merge_counters, splits: plan.splits })
    }
}
