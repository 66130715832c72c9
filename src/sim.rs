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
