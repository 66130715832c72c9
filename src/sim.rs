//! The simulator backend: executes a [`LaunchPlan`] on `ptx-sim` (the exact PTX that
//! build.rs embedded, run on the CPU with bounds-checked memory), so every kernel can be
//! tested on a machine without a GPU. The plan is the same one the cudarc backend
//! launches; nothing about the launch is recomputed here.

use std::collections::HashMap;
use std::sync::Mutex;

use ptx_sim::{Counters, Device, LaunchConfig, LaunchOptions, Module};

use crate::attention::DeviceBuffer;
use crate::error::{Error, Result};
use crate::kernels::module_for;
use crate::plan::LaunchPlan;

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
        let filler = [T::default()];
        let data = if data.is_empty() { &filler[..] } else { data };
        let ptr = self.device.upload(data).map_err(sim)?;
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
        let module = self.module(plan.module)?;
        let cfg = LaunchConfig { grid: plan.grid, block: plan.block, dynamic_shared_bytes: plan.shared_mem_bytes };
        self.device.launch(&module, plan.kernel, &cfg, &[&plan.params], opts).map_err(sim)
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

/// A pattern's index tensors on the host, for [`SimBackend::attention`].
#[derive(Debug, Clone, Copy)]
pub enum HostSource<'a> {
    Dense,
    BlockSparse(&'a crate::pattern::BlockSparse),
    /// The converted form (see [`crate::pattern::vs_convert::convert`] or
    /// [`SimBackend::vs_convert`]).
    VerticalSlash(&'a crate::pattern::vs_convert::VsIndex),
    Topk(&'a crate::pattern::TopkTokens),
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
    /// Runs the attention kernel for `source` on contiguous host tensors: uploads them,
    /// launches the same plan the cudarc backend would, and downloads output and LSE.
    /// Memcheck is always on; any fault is an error.
    pub fn attention<T: crate::shape::AttnDtype + ptx_sim::Element>(
        &self,
        shape: &crate::shape::AttnShape,
        opts: &crate::shape::AttnOptions,
        q: &[T],
        k: &[T],
        v: &[T],
        source: HostSource<'_>,
    ) -> Result<SimAttention<T>> {
        use crate::attention::{AttnBuffers, AttnLayouts, SourceBuffers};
        shape.validate()?;
        let bufs = AttnBuffers {
            q: self.upload(q)?,
            k: self.upload(k)?,
            v: self.upload(v)?,
            out: self.alloc::<T>(shape.q_len())?,
            lse: Some(self.alloc::<f32>(shape.lse_len())?),
            layouts: AttnLayouts::contiguous(shape),
        };
        let opts = crate::shape::AttnOptions { return_lse: true, ..*opts };
        let plan = match source {
            HostSource::Topk(d) => crate::plan::topk_attention(shape, T::DTYPE, &opts, &bufs, self.upload(d.indices())?, d.dims())?,
            HostSource::Dense => crate::plan::attention(shape, T::DTYPE, &opts, &bufs, &SourceBuffers::Dense)?,
            HostSource::BlockSparse(d) => {
                let source = SourceBuffers::BlockSparse {
                    dims: d.dims(),
                    block_count: self.upload(d.block_count())?,
                    block_index: self.upload(d.block_index())?,
                };
                crate::plan::attention(shape, T::DTYPE, &opts, &bufs, &source)?
            }
            HostSource::VerticalSlash(x) => {
                let source = SourceBuffers::VerticalSlash {
                    dims: x.dims,
                    block_count: self.upload(&x.block_count)?,
                    block_offset: self.upload(&x.block_offset)?,
                    column_count: self.upload(&x.column_count)?,
                    column_index: self.upload(&x.column_index)?,
                };
                crate::plan::attention(shape, T::DTYPE, &opts, &bufs, &source)?
            }
        };
        let counters = self.launch(&plan, &LaunchOptions::default())?;
        let lse = bufs.lse.map_or(Ok(Vec::new()), |l| self.download::<f32>(l))?;
        Ok(SimAttention { out: self.download(bufs.out)?, lse, counters })
    }

    /// Converts a vertical-slash descriptor with the `vertical_slash_convert` kernel; the
    /// simulator counterpart of [`crate::cuda::convert_on_gpu`].
    pub fn vs_convert(
        &self,
        vs: &crate::pattern::VerticalSlash,
        shape: &crate::shape::AttnShape,
    ) -> Result<crate::pattern::vs_convert::VsIndex> {
        use crate::pattern::vs_convert::{VsIndex, VsIndexDims};
        let sizes = crate::params::VsConvertParams::for_problem(vs, shape)?;
        let dims = VsIndexDims::of(vs, shape);
        let lens = dims.lens()?;
        let (bc, bo) = (self.alloc::<i32>(lens.rows)?, self.alloc::<i32>(lens.block_offset)?);
        let (cc, ci) = (self.alloc::<i32>(lens.rows)?, self.alloc::<i32>(lens.column_index)?);
        let params = crate::params::VsConvertParams {
            vertical_indexes: self.upload(vs.vertical_indexes())?.addr,
            slash_indexes: self.upload(vs.slash_indexes())?.addr,
            block_count: bc.addr,
            block_offset: bo.addr,
            column_count: cc.addr,
            column_index: ci.addr,
            ..sizes
        };
        self.launch(&crate::plan::vs_convert(&params)?, &LaunchOptions::default())?;
        let get = |buf: DeviceBuffer, n: usize| -> Result<Vec<i32>> {
            let mut v = self.download::<i32>(buf)?;
            v.truncate(n);
            Ok(v)
        };
        Ok(VsIndex {
            block_count: get(bc, lens.rows)?,
            block_offset: get(bo, lens.block_offset)?,
            column_count: get(cc, lens.rows)?,
            column_index: get(ci, lens.column_index)?,
            dims,
        })
    }
}
