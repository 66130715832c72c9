//! The cudarc backend: finding a GPU, loading the embedded PTX, and launching a
//! [`LaunchPlan`](crate::plan::LaunchPlan).

mod attention;
mod device;
mod launch;
mod topk_attention;
mod vs_convert;

pub use device::{gpu_context, GpuUnavailable};
pub use launch::{launch, load_function};
pub use vs_convert::{convert_on_gpu, vertical_slash_convert, VsIndexDevice};
pub use attention::{
    attention_block_sparse, attention_dense, attention_forward, attention_vertical_slash, upload_vs_index, AttnTensors,
    BlockSparseDevice, DeviceSource,
};
pub use topk_attention::{attention_topk, TopkDevice};
