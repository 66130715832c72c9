//! Attention on tensor cores: prefill (dense, block-sparse, vertical-slash and, through
//! block-sparse, A-shape), all running the one main loop of `kernels/prefill.cu`, and
//! top-k token attention (`kernels/topk_attention.cu`).
//!
//! This module is backend-neutral: it names the kernels, says what is supported, and turns
//! a problem plus device addresses into a validated [`AttnParams`](crate::params::AttnParams).
//! [`crate::plan::attention`] wraps that into a [`LaunchPlan`](crate::plan::LaunchPlan),
//! which the cudarc backend ([`crate::cuda`]) or the simulator executes.

mod args;
mod kernels;
mod topk;
mod validate;

pub use args::{AttnBuffers, AttnLayouts, DeviceBuffer, SourceBuffers};
pub use kernels::{kernel_name, shared_mem_bytes, supports, AttnPattern, MIN_COMPUTE_CAPABILITY, SUPPORTED_HEAD_DIMS, THREADS};
pub use topk::{topk_kernel_name, topk_params, topk_shared_mem_bytes, TOPK_HEADS_PER_WARP, TOPK_THREADS};
pub use validate::attn_params;
