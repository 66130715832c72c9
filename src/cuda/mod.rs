//! The cudarc backend: finding a GPU, loading the embedded PTX, and launching a
//! [`LaunchPlan`](crate::plan::LaunchPlan).

mod device;
mod launch;
mod vs_convert;

pub use device::{gpu_context, GpuUnavailable};
pub use launch::{launch, load_function};
pub use vs_convert::{convert_on_gpu, vertical_slash_convert, VsIndexDevice};
