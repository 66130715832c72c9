//! ptx-sim: runs PTX produced by nvcc on the CPU, with bounds-checked memory.
//!
//! Work in progress (issue 3).
