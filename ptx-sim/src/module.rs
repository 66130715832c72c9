//! A parsed module: kernels in decoded form plus what a launch needs to lay out memory.

use crate::ir::Instr;
use std::collections::HashMap;
use std::sync::Arc;

/// One `.param` of an entry, at its ABI offset in the parameter buffer.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// Name as declared.
    pub name: String,
    /// Size in bytes (a by-value struct is one `.b8 name[size]` parameter).
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
    /// Offset in the parameter buffer, laid out in declaration order with alignment.
    pub offset: u32,
}

/// A kernel ready to execute.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub name: String,
    pub params: Vec<ParamInfo>,
    pub param_bytes: u32,
    pub code: Vec<Instr>,
    /// Number of register slots (each 64 bits per thread).
    pub nregs: u32,
    /// Static shared memory bytes (module-level and function-scope `.shared`).
    pub static_smem: u32,
    /// Alignment of the dynamic shared memory that follows the static part.
    pub dyn_smem_align: u32,
    /// Per-thread `.local` bytes.
    pub local_bytes: u32,
    /// The PTX source lines, to quote the faulting instruction in reports.
    pub source: Arc<Vec<String>>,
}

impl Kernel {
    /// The source text of the instruction at `pc`, trimmed, for error messages.
    pub(crate) fn instr_text(&self, pc: usize) -> String {
        let line = self.code.get(pc).map_or(0, |i| i.line as usize);
        self.source.get(line.wrapping_sub(1)).map_or_else(String::new, |s| s.trim().to_string())
    }
}

/// A loaded PTX module: its kernels by name.
#[derive(Debug, Clone)]
pub struct Module {
    pub(crate) kernels: HashMap<String, Arc<Kernel>>,
}

impl Module {
    /// Names of the `.entry` kernels in the module, sorted.
    pub fn kernel_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.kernels.keys().cloned().collect();
        v.sort();
        v
    }

    /// The parameter list of a kernel, with ABI offsets, or `None` if there is no such kernel.
    pub fn params(&self, kernel: &str) -> Option<&[ParamInfo]> {
        self.kernels.get(kernel).map(|k| k.params.as_slice())
    }

    /// Static shared memory of a kernel in bytes.
    pub fn static_shared_bytes(&self, kernel: &str) -> Option<u32> {
        self.kernels.get(kernel).map(|k| k.static_smem)
    }

    /// Number of decoded instructions of a kernel (a size measure for tests and reports).
    pub fn instruction_count(&self, kernel: &str) -> Option<usize> {
        self.kernels.get(kernel).map(|k| k.code.len())
    }
}
