//! CPU reference attention: the oracle every kernel is tested against.
//!
//! All arithmetic is f64. Inputs are the exact f16/bf16 values the kernels read, widened
//! once. `attend_rows` is the one softmax-attention loop; the dense masked reference and
//! every per-pattern sparse reference differ only in which keys they hand it, so comparing
//! them checks a descriptor's key enumeration against its element mask.
//! `merge_states_reference` is the specification of merging partial states by their LSE.

mod core;
mod block_sparse;
mod dense;
mod merge;
mod topk;
mod varlen;
mod vertical_slash;

pub use self::block_sparse::{a_shape_attention, block_sparse_attention};
pub use self::core::{attend_rows, attend_rows_with, RefOutput, ScoreRule};
pub use crate::inputs::RefInputs;
pub use self::dense::{dense_attention, masked_attention};
pub use self::merge::{merge_states_reference, RefMerged};
pub use self::topk::topk_attention;
pub use self::varlen::{varlen_attention, varlen_block_sparse_attention, varlen_dense_attention, varlen_topk_attention, varlen_vertical_slash_attention, VarlenInputs, VarlenOutput};
pub use self::vertical_slash::vertical_slash_attention;
