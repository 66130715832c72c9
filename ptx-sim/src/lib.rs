//! # ptx-sim
//!
//! Executes the PTX that nvcc emits on the CPU, so that CUDA kernels can be tested on a
//! machine without a GPU. It parses a module once into decoded instructions, runs blocks as
//! warps of 32 lanes with Volta-style independent thread scheduling, checks every memory
//! access (memcheck), reports barriers that not every thread reaches, optionally finds
//! shared-memory races (racecheck), and counts the work of each launch.
//!
//! ```no_run
//! use ptx_sim::{Args, Device, LaunchConfig, LaunchOptions};
//! # fn main() -> ptx_sim::Result<()> {
//! let dev = Device::new();
//! let module = dev.load_ptx(&std::fs::read_to_string("vec_add.ptx").unwrap())?;
//! let a = dev.upload(&[1.0f32, 2.0])?;
//! let b = dev.upload(&[3.0f32, 4.0])?;
//! let c = dev.alloc(8)?;
//! let args = Args::new().ptr(a).ptr(b).ptr(c).val(2i32);
//! dev.launch(&module, "vec_add", &LaunchConfig::linear(1, 32), &args.slices(), &LaunchOptions::default())?;
//! assert_eq!(dev.download::<f32>(c, 2)?, vec![4.0, 6.0]);
//! # Ok(()) }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The crate builds with the workspace's minimum Rust, 1.80 (ptx-sim/clippy.toml tells
// clippy, so `%` stays where `is_multiple_of` would need 1.87).

// Each module uses only modules listed before it here, so the module graph has no cycles:
// error, ir, counters, race (leaves); lex, float, memory, module; alu, tensor;
// the parser, lex -> syntax -> qualifiers -> decode -> body -> parse; exec (the interpreter);
// device (the host API, on top of parse and exec).
mod alu;
mod body;
mod counters;
mod decode;
mod device;
mod error;
mod exec;
mod float;
mod ir;
mod lex;
mod memory;
mod module;
mod parse;
mod qualifiers;
mod race;
mod syntax;
mod tensor;

pub use counters::Counters;
pub use device::{Args, Device, DevicePtr, Element, LaunchConfig, LaunchOptions, DEFAULT_INSTRUCTION_LIMIT, MAX_SHARED_BYTES};
pub use error::{MemoryFault, RaceFault, Result, SimError, Site};
pub use module::{Module, ParamInfo};
