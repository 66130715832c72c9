//! # ptx-sim-driver
//!
//! A CUDA driver library (`libcuda`) whose device is [`ptx_sim`]: code written against the
//! CUDA driver API, cudarc's safe API included, runs on the CPU, every memory access
//! checked. It exists so that the cudarc path of `sparse-attn` (argument passing, module
//! loading, function attributes, streams, events and buffer lifetimes) runs in CI without
//! a GPU.
//!
//! The cdylib exports the driver entry points that cudarc 0.19 binds, with the driver's
//! ABI. The device is one sm_90-class GPU ("ptx-sim (simulated)", compute capability 9.0,
//! 132 SMs, 227 KiB of opt-in shared memory per block). Work is deferred per stream and
//! runs at synchronisation points, in an order that exposes missing events (see
//! `sched.rs`). A kernel fault is a sticky `CUDA_ERROR_ILLEGAL_ADDRESS` (or
//! `CUDA_ERROR_MISALIGNED_ADDRESS`, `CUDA_ERROR_LAUNCH_FAILED`) with a report on stderr and
//! from [`fault_report`]. Entry points the simulator does not model return
//! `CUDA_ERROR_NOT_SUPPORTED` and say so on stderr once; event timing is one of them.
//!
//! The simulator's work counters of the launches that ran ([`counters`]) and racecheck
//! ([`set_racecheck`]) are there too, since a simulator has no GPU time to report.
//!
//! The rlib side chooses the library in a process: [`install`] before the first cudarc
//! call (tests), or [`library_dir`] for a child process's `LD_LIBRARY_PATH`.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// Each module uses only those before it: abi, errors (leaves); unsupported, fault, work; state
// (the driver's tables and the entry wrapper); sched (deferred work); the entry points of
// context, memory, stream, module; select and choice (the Rust API).
pub mod abi;
mod errors;
mod unsupported;
mod fault;
mod work;
mod state;
mod sched;
mod context;
mod memory;
mod stream;
mod module;
mod select;
mod choice;
#[cfg(test)]
mod tests;

pub use choice::{select, DeviceChoice, Selected};
pub use select::{counters, fault_report, set_racecheck, install, install_from, is_installed, library_dir, library_path, SelectError};
