//! The GPU backend through cudarc: finding a GPU, taking device pointers from any cudarc
//! buffer kind, and launching a [`LaunchPlan`](crate::plan::LaunchPlan) computed by
//! [`crate::plan`] (the same plan the simulator runs).

mod attention;
mod block_select;
mod decode;
mod device;
mod driver_probe;
mod indexer;
mod launch;
mod merge;
mod minference;
mod module_load;
mod seer;
mod tensors;
mod topk_select;
mod vs_convert;
mod vs_estimate;

pub use attention::{attention, attention_dense, attention_paged, attention_raw, attention_varlen, upload, PagedTensors, VarlenTensors};
pub use block_select::{block_estimate, block_scores, block_select, BlockScoreTensors};
pub use decode::{decode, DecodeTensors};
pub use device::{gpu_context, GpuUnavailable};
pub use indexer::{indexer_topk, IndexerLayoutTensors, IndexerTensors};
pub use merge::{merge_state_in_place, merge_states};
pub use minference::{minference_attention, minference_attention_varlen};
pub use seer::{seer_attention, seer_attention_varlen, GateWeights};
pub use tensors::AttnTensors;
pub use topk_select::{topk_select, topk_select_rows};
pub use vs_estimate::{vs_estimate, VsEstimateInputs};
pub use vs_convert::{alloc_vs_index, convert_on_gpu, download_vs_index, vs_convert, vs_convert_varlen, SeqLensTensors};
