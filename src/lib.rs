//! # sparse-attn
//!
//! CUDA kernels for sparse attention in long-context LLM inference, with safe Rust launch
//! functions over [`cudarc`] device buffers, sparsity descriptors that every kernel agrees
//! on, and a CPU reference that is the oracle for every test.
//!
//! | | |
//! |---|---|
//! | patterns | block-sparse, vertical-slash (MInference), A-shape (sink + local), top-k tokens |
//! | dtypes | f16, bf16 in and out; f32 accumulation |
//! | head_dim | 64, 96, 128 |
//! | GPUs | sm_80 and later (PTX for sm_80 embedded, ptxas-checked for sm_80 and sm_90) |
//! | layout | BSHD, strides in elements, last dimension contiguous; varlen (packed, [`Varlen`], `cuda::attention_varlen`) for every pattern; paged K/V caches (`cuda::attention_paged`) for every pattern |
//!
//! Conventions: GQA/MQA needs `heads_q % heads_kv == 0` and never repeats K/V; causal masks
//! are aligned bottom-right (query `i` sees key `j` iff `j <= i + seq_k - seq_q`); every
//! index tensor is i32; a row that sees no key gets output 0 and LSE `-inf`.
//!
//! The path of a call: a descriptor ([`pattern`]) gives a [`Source`] of index tensors; a
//! backend ([`cuda`], or `sim` with the `sim` feature) turns its buffers into addresses;
//! [`plan`] validates everything and computes one [`plan::LaunchPlan`]; the backend runs it.
//! docs/architecture.md in the repository describes the layers and how to extend them.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod checked;
mod inputs;
#[cfg(feature = "candle")]
pub mod candle;
pub mod cuda;
pub mod error;
pub mod mask;
pub mod params;
pub mod pattern;
pub mod plan;
pub mod ptx;
pub mod reference;
pub mod shape;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_decode;
#[cfg(feature = "sim")]
pub mod sim_vs_estimate;
#[cfg(feature = "sim")]
pub mod sim_indexer;
#[cfg(feature = "sim")]
pub mod sim_pipeline;
#[cfg(feature = "sim")]
pub mod sim_block_select;
pub mod source;

pub use error::{Error, Result};
pub use mask::{ElementMask, SparsePattern};
pub use plan::{support, supports, SupportQuery, Unsupported};
pub use shape::{kernel_scale_range, AttnDtype, AttnOptions, AttnShape, Bshd, DType, Varlen};
pub use source::Source;
