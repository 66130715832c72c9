//! The simulator backend: executes a [`LaunchPlan`] on `ptx-sim` (the exact PTX that
//! build/main.rs embedded, run on the CPU with bounds-checked memory), so every kernel can be
//! tested on a machine without a GPU. The plan is the same one the cudarc backend
//! launches; nothing about the launch is recomputed here.

use std::collections::HashMap;
use std::sync::Mutex;

use ptx_sim::{Counters, Device, LaunchConfig, LaunchOptions, Module};

use crate::checked::non_empty;
use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::pattern::vs_convert::index_dims;
use crate::pattern::VerticalSlash;
use crate::plan::merge::{InPlaceBuffers, InPlaceLayouts, MergeBuffers, MergeElement, MergeLayouts};
use crate::plan::{AttnBuffers, AttnLayouts, DeviceBuffer, LaunchPlan, PagedHost, PagedKvBuffers, VarlenBuffers};
use crate::ptx::module_for;
use crate::shape::{AttnDtype, AttnOptions, AttnShape, MergeShape, Varlen};
use crate::source::{Source, VsIndex};

fn sim(e: ptx_sim::SimError) -> Error {
    Error::Simulator(e.to_string())
}

/// A simulated device plus the modules loaded on it. Parsing a module takes tens of
/// milliseconds, so each is parsed once per backend.
pub struct SimBackend {
    device: Device,
    compute_capability: u32,
    modules: Mutex<HashMap<&'static str, Module>>,
}

impl SimBackend {
    /// A fresh simulated device that loads the PTX built for `compute_capability` (the
    /// newest embedded target not above it, as on a real device).
    pub fn new(compute_capability: u32) -> Self {
        Self { device: Device::new(), compute_capability, modules: Mutex::new(HashMap::new()) }
    }

    /// The simulated device, for allocating and copying buffers.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Copies `data` into a new device allocation and describes it for the plan builders.
    /// An empty slice gets a one-element allocation (as the cudarc backend does), so its
    /// address is still a real one.
    pub fn upload<T: ptx_sim::Element + Default>(&self, data: &[T]) -> Result<DeviceBuffer> {
        let data = non_empty(data);
        let ptr = self.device.upload(&data).map_err(sim)?;
        Ok(DeviceBuffer { addr: ptr.0, len: data.len() })
    }

    /// A zero-initialised allocation of `len` elements of `T`.
    pub fn alloc<T: ptx_sim::Element + Default>(&self, len: usize) -> Result<DeviceBuffer> {
        self.upload(&vec![T::default(); len.max(1)])
    }

    /// Reads `buf` back.
    pub fn download<T: ptx_sim::Element>(&self, buf: DeviceBuffer) -> Result<Vec<T>> {
        self.device.download(ptx_sim::DevicePtr(buf.addr), buf.len).map_err(sim)
    }

    /// Runs `plan` to completion and returns the simulator's work counters. Any memcheck,
    /// barrier or race fault (racecheck when `opts.racecheck`) is an error.
    pub fn launch(&self, plan: &LaunchPlan, opts: &LaunchOptions) -> Result<Counters> {
        let module = self.module(plan.module())?;
        let cfg = LaunchConfig { grid: plan.grid(), block: plan.block(), dynamic_shared_bytes: plan.shared_mem_bytes() };
        self.device.launch(&module, plan.kernel(), &cfg, &[plan.params()], opts).map_err(sim)
    }

    fn module(&self, name: &'static str) -> Result<Module> {
        let mut modules = self.modules.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let ptx = module_for(name, self.compute_capability)?.ptx;
        let m = self.device.load_ptx(ptx).map_err(sim)?;
        modules.insert(name, m.clone());
        Ok(m)
    }
}

/// Host tensors of one simulated attention call: contiguous BSHD q `[batch, seq_q, heads_q,
/// head_dim]`, k and v `[batch, seq_k, heads_kv, head_dim]`.
#[derive(Debug, Clone, Copy)]
pub struct HostTensors<'a, T> {
    /// Queries, `[batch, seq_q, heads_q, head_dim]`.
    pub q: &'a [T],
    /// Keys, `[batch, seq_k, heads_kv, head_dim]`.
    pub k: &'a [T],
    /// Values, `[batch, seq_k, heads_kv, head_dim]`.
    pub v: &'a [T],
    /// Attention sinks, one f32 logit per query head; `None` = none.
    pub sinks: Option<&'a [f32]>,
}

/// Host K/V page caches for [`SimBackend::attention_paged`].
#[derive(Debug, Clone, Copy)]
pub struct PagedCache<'a, T> {
    /// The key cache: `num_pages` pages of `page_size` tokens of `heads_kv x head_dim`, laid
    /// out by `layout` (batch stride = page stride, seq stride = token stride).
    pub k: &'a [T],
    /// The value cache, laid out like the keys.
    pub v: &'a [T],
    /// The (page, token, head) strides of both caches.
    pub layout: crate::shape::Bshd,
    /// Tokens per page.
    pub page_size: usize,
    /// Pages in each cache.
    pub num_pages: usize,
    /// `[batch, max_pages]` page numbers.
    pub block_table: &'a [i32],
    /// Entries per block-table row.
    pub max_pages: usize,
    /// Keys per sequence.
    pub seqlens_k: &'a [i32],
}

/// What a simulated attention launch produced.
#[derive(Debug, Clone)]
pub struct SimAttention<T> {
    /// Contiguous BSHD `[batch, seq_q, heads_q, head_dim]`.
    pub out: Vec<T>,
    /// `[batch, heads_q, seq_q]`, natural log; -inf for rows that see no key.
    pub lse: Vec<f32>,
    /// Work the launch executed (simulator counts, not GPU timings).
    pub counters: Counters,
}

impl SimBackend {
    /// Runs attention for `source` on host tensors: uploads them, launches the same plan
    /// the cudarc backend would ([`crate::plan::attention`]), and downloads output and LSE.
    /// The arguments mirror [`crate::cuda::attention`]; like there, `source` comes from a
    /// descriptor's validated [`SparsePattern::source`]. Memcheck is always on; any fault is
    /// an error.
    pub fn attention<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(
        &self,
        shape: &AttnShape,
        opts: &AttnOptions,
        tensors: HostTensors<'_, T>,
        source: &Source<D>,
    ) -> Result<SimAttention<T>> {
        let bufs = self.upload_attn(shape, None, tensors)?;
        let opts = AttnOptions { return_lse: true, ..*opts };
        let source = source.as_ref().try_map(|_, data| self.upload(data.as_ref()))?;
        let plan = crate::plan::attention(shape, T::DTYPE, &opts, &bufs, &source)?;
        self.run_attention(&plan, &bufs)
    }

    /// Runs varlen attention ([`crate::plan::attention_varlen`]) on packed host tensors: q
    /// `[total_q, heads_q, head_dim]`, k and v `[total_k, heads_kv, head_dim]`, with the
    /// sequences of `varlen` (uploaded as the device's cu_seqlens, and passed as the host
    /// copy); `shape` holds the batch and the longest sequences. The output is packed like
    /// q, the LSE `[heads_q, total_q]`.
    pub fn attention_varlen<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(
        &self,
        shape: &AttnShape,
        varlen: &Varlen,
        opts: &AttnOptions,
        tensors: HostTensors<'_, T>,
        source: &Source<D>,
    ) -> Result<SimAttention<T>> {
        let bufs = self.upload_attn(shape, Some(varlen), tensors)?;
        let lens = self.upload_varlen(varlen)?;
        let opts = AttnOptions { return_lse: true, ..*opts };
        let source = source.as_ref().try_map(|_, data| self.upload(data.as_ref()))?;
        let plan = crate::plan::attention_varlen(shape, &lens, T::DTYPE, &opts, &bufs, &source)?;
        self.run_attention(&plan, &bufs)
    }

    /// Runs prefill of packed varlen queries against paged K/V caches
    /// ([`crate::plan::attention_paged`]): q `[total_q, heads_q, head_dim]` with the query
    /// sequences of `varlen_q` (its key half is unused), and the caches and block table of
    /// `cache`; everything is uploaded, and the host copies are checked. The output is
    /// packed like q, the LSE `[heads_q, total_q]`.
    pub fn attention_paged<T: AttnDtype + ptx_sim::Element, D: AsRef<[i32]>>(
        &self,
        shape: &AttnShape,
        varlen_q: &Varlen,
        cache: PagedCache<'_, T>,
        opts: &AttnOptions,
        q: &[T],
        source: &Source<D>,
    ) -> Result<SimAttention<T>> {
        let total_q = varlen_q.total_q();
        let q_layout = crate::shape::Bshd::contiguous(total_q, shape.heads_q(), shape.head_dim());
        let bufs = AttnBuffers {
            q: self.upload(q)?,
            k: self.upload(cache.k)?,
            v: self.upload(cache.v)?,
            out: self.alloc::<T>(total_q * shape.heads_q() * shape.head_dim())?,
            lse: Some(self.alloc::<f32>(shape.heads_q() * total_q)?),
            sinks: None,
            layouts: AttnLayouts { q: q_layout, k: cache.layout, v: cache.layout, out: q_layout },
        };
        let paged = PagedKvBuffers {
            cu_seqlens_q: self.upload(varlen_q.cu_seqlens_q())?,
            total_q,
            seqlens_k: self.upload(cache.seqlens_k)?,
            block_table: self.upload(cache.block_table)?,
            max_pages: cache.max_pages,
            page_size: cache.page_size,
            num_pages: cache.num_pages,
            host: Some(PagedHost { varlen_q, seqlens_k: cache.seqlens_k, block_table: cache.block_table }),
        };
        let opts = AttnOptions { return_lse: true, ..*opts };
        let source = source.as_ref().try_map(|_, data| self.upload(data.as_ref()))?;
        let plan = crate::plan::attention_paged(shape, &paged, T::DTYPE, &opts, &bufs, &source)?;
        self.run_attention(&plan, &bufs)
    }

    /// Uploads q, k and v and allocates a zeroed output and LSE: contiguous BSHD for
    /// `shape`, or packed `[total, heads, head_dim]` rows by `varlen` (LSE `[heads_q,
    /// total_q]`).
    pub(crate) fn upload_attn<T: ptx_sim::Element + Default>(&self, shape: &AttnShape, varlen: Option<&Varlen>, tensors: HostTensors<'_, T>) -> Result<AttnBuffers> {
        let (layouts, out_len, lse_len) = match varlen {
            None => (AttnLayouts::contiguous(shape), shape.q_len(), shape.lse_len()),
            Some(v) => {
                let packed = |rows: usize, heads: usize| crate::shape::Bshd::contiguous(rows, heads, shape.head_dim());
                let (q, kv) = (packed(v.total_q(), shape.heads_q()), packed(v.total_k(), shape.heads_kv()));
                let rows = crate::checked::product("out", &[v.total_q(), shape.heads_q()])?;
                (AttnLayouts { q, k: kv, v: kv, out: q }, crate::checked::product("out", &[rows, shape.head_dim()])?, rows)
            }
        };
        Ok(AttnBuffers {
            q: self.upload(tensors.q)?,
            k: self.upload(tensors.k)?,
            v: self.upload(tensors.v)?,
            out: self.alloc::<T>(out_len)?,
            lse: Some(self.alloc::<f32>(lse_len)?),
            sinks: tensors.sinks.map(|s| self.upload(s)).transpose()?,
            layouts,
        })
    }

    /// Uploads a varlen batch's boundaries as the device's cu_seqlens, with the host copy
    /// for the planners' checks.
    pub(crate) fn upload_varlen<'v>(&self, varlen: &'v Varlen) -> Result<VarlenBuffers<'v>> {
        Ok(VarlenBuffers {
            cu_seqlens_q: self.upload(varlen.cu_seqlens_q())?,
            cu_seqlens_k: self.upload(varlen.cu_seqlens_k())?,
            total_q: varlen.total_q(),
            total_k: varlen.total_k(),
            host: Some(varlen),
        })
    }

    /// Launches an attention plan and downloads its output and LSE.
    fn run_attention<T: ptx_sim::Element>(&self, plan: &LaunchPlan, bufs: &AttnBuffers) -> Result<SimAttention<T>> {
        let counters = self.launch(plan, &LaunchOptions::default())?;
        let lse = bufs.lse.map_or(Ok(Vec::new()), |l| self.download::<f32>(l))?;
        Ok(SimAttention { out: self.download(bufs.out)?, lse, counters })
    }

    /// Converts a vertical-slash descriptor (validated first) with the
    /// `vertical_slash_convert` kernel; the simulator counterpart of
    /// [`crate::cuda::convert_on_gpu`].
    pub fn vs_convert(&self, vs: &VerticalSlash, shape: &AttnShape) -> Result<VsIndex> {
        self.run_vs_convert(vs, shape, |vertical, slash, out| crate::plan::vs_convert::plan(shape, vertical, slash, out))
    }

    /// [`Self::vs_convert`] for a varlen batch, each sequence on its own lengths (uploaded
    /// and read on the simulated device): `crate::cuda::vs_convert_varlen`'s counterpart,
    /// equal to [`crate::pattern::vs_convert::convert_varlen`].
    pub fn vs_convert_varlen(&self, vs: &VerticalSlash, shape: &AttnShape, varlen: &Varlen) -> Result<VsIndex> {
        let lens = self.upload_varlen(varlen)?;
        let lens = crate::plan::vs_convert::SeqLens::Varlen(&lens);
        self.run_vs_convert(vs, shape, |vertical, slash, out| crate::plan::vs_convert::plan_varlen(shape, lens, vertical, slash, out))
    }

    /// Uploads a validated descriptor, runs the conversion `plan` gives for it and downloads
    /// the index.
    fn run_vs_convert(
        &self,
        vs: &VerticalSlash,
        shape: &AttnShape,
        plan: impl FnOnce(DeviceBuffer, DeviceBuffer, &VsIndex<DeviceBuffer>) -> Result<LaunchPlan>,
    ) -> Result<VsIndex> {
        vs.validate(shape)?;
        let dims = index_dims(vs, shape)?;
        let lens = dims.lens();
        let (vertical, slash) = (self.upload(vs.vertical_indexes())?, self.upload(vs.slash_indexes())?);
        let out = VsIndex {
            dims,
            block_count: self.alloc::<i32>(lens.rows)?,
            block_offset: self.alloc::<i32>(lens.block_offset)?,
            column_count: self.alloc::<i32>(lens.rows)?,
            column_index: self.alloc::<i32>(lens.column_index)?,
        };
        self.launch(&plan(vertical, slash, &out)?, &LaunchOptions::default())?;
        Ok(out.try_map(|_, buf| self.download::<i32>(buf))?.truncate_to_dims())
    }
}

impl SimBackend {
    /// Merges partial attention states on the simulator ([`crate::plan::merge::plan`], the
    /// plan [`crate::cuda::merge_states`] launches): uploads the f32 `partial_out` and
    /// `partial_lse` (laid out by `layouts`), allocates the output and the LSE (zeroed, each
    /// as long as its layout reaches), runs the kernel for `T` and downloads both, laid out
    /// by `layouts.out` and `layouts.lse`.
    pub fn merge_states<T: MergeElement + ptx_sim::Element>(
        &self,
        shape: &MergeShape,
        partial_out: &[f32],
        partial_lse: &[f32],
        layouts: &MergeLayouts,
    ) -> Result<(Vec<T>, Vec<f32>)> {
        let (b, t, h, d) = (shape.batch(), shape.seq(), shape.heads(), shape.head_dim());
        let bufs = MergeBuffers {
            partial_out: self.upload(partial_out)?,
            partial_lse: self.upload(partial_lse)?,
            out: self.alloc::<T>(reach("out", &[(layouts.out.batch, b), (layouts.out.seq, t), (layouts.out.head, h)], d)?)?,
            lse: Some(self.alloc::<f32>(reach("lse", &[(layouts.lse.batch, b), (layouts.lse.head, h)], t)?)?),
            layouts: *layouts,
        };
        let plan = crate::plan::merge::plan(shape, T::DTYPE, &bufs)?;
        self.launch(&plan, &LaunchOptions::default())?;
        let lse = bufs.lse.map_or(Ok(Vec::new()), |l| self.download::<f32>(l))?;
        Ok((self.download(bufs.out)?, lse))
    }

    /// The in-place merge of two states on the simulator ([`crate::plan::merge::plan_in_place`],
    /// as [`crate::cuda::merge_state_in_place`] launches it): uploads all four tensors, runs the
    /// kernel for `T`, and returns `v` and `lse` after the merge (their whole buffers).
    pub fn merge_state_in_place<T: MergeElement + ptx_sim::Element>(
        &self,
        shape: &MergeShape,
        v: &[T],
        lse: &[f32],
        v_other: &[T],
        lse_other: &[f32],
        layouts: &InPlaceLayouts,
    ) -> Result<(Vec<T>, Vec<f32>)> {
        let bufs = InPlaceBuffers {
            v: self.upload(v)?,
            lse: self.upload(lse)?,
            v_other: self.upload(v_other)?,
            lse_other: self.upload(lse_other)?,
            layouts: *layouts,
        };
        let plan = crate::plan::merge::plan_in_place(shape, T::DTYPE, &bufs)?;
        self.launch(&plan, &LaunchOptions::default())?;
        Ok((self.download(bufs.v)?, self.download(bufs.lse)?))
    }
}

/// Elements a tensor of `inner` contiguous elements at every combination of the strided
/// `dims` (stride, extent) reaches, for sizing an allocation; strides the planner would
/// refuse (negative, or past the address space) give an error naming `tensor`.
fn reach(tensor: &'static str, dims: &[(i64, usize)], inner: usize) -> Result<usize> {
    let mut last = inner as i128 - 1;
    for &(stride, extent) in dims.iter().filter(|&&(_, extent)| extent > 1) {
        if stride < 0 {
            return Err(Error::InvalidStrides { tensor, reason: format!("stride {stride} is negative") });
        }
        last += stride as i128 * (extent as i128 - 1);
    }
    usize::try_from(last + 1)
        .ok()
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| Error::InvalidStrides { tensor, reason: "the strides address more elements than memory holds".into() })
}

impl SimBackend {
    /// Token top-k selection on the simulator ([`crate::plan::topk_select::plan`], the plan
    /// [`crate::cuda::topk_select`] launches): uploads `scores [batch, seq_q, heads, seq_k]`
    /// (exactly that many elements of `T`, f32 or bf16), runs `topk_select_<T>` and downloads `indices [batch,
    /// seq_q, heads, k]`; equal to [`crate::pattern::topk_select::select_topk_host`].
    pub fn topk_select<T: crate::pattern::topk_select::Score + ptx_sim::Element>(&self, scores: &[T], dims: &crate::pattern::topk_select::SelectDims, k: usize, causal: bool) -> Result<Vec<i32>> {
        let rows = dims.validate(k)?;
        crate::shape::check_len("scores", scores.len(), &[rows, dims.seq_k])?;
        let scores = self.upload(scores)?;
        // validate has checked that rows * k fits usize.
        let indices = self.alloc::<i32>(rows * k)?;
        let plan = crate::plan::topk_select::plan(dims, k, causal, T::DTYPE, scores, indices)?;
        self.launch(&plan, &LaunchOptions::default())?;
        self.download(indices)
    }
}
