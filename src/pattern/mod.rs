//! Sparsity descriptors, one file per pattern, and the host builders that estimate them.
//!
//! Each descriptor validates its index tensors against a problem shape and expands to the
//! exact element mask it implies (`SparsePattern`). Tiles are `BLOCK_M` query rows by
//! `BLOCK_N` keys.

/// Query rows per tile (row block) in every index format.
pub const BLOCK_M: usize = 64;
/// Keys per tile (key block) in every index format.
pub const BLOCK_N: usize = 64;

pub mod topk;
pub mod vertical_slash;
pub mod vs_convert;
pub use self::vertical_slash::VerticalSlash;
pub mod vs_estimate;
pub mod a_shape;
pub mod block_sparse;
pub mod block_topk;
pub use self::{a_shape::AShape, block_sparse::BlockSparse, block_topk::{estimate_block_topk, BlockTopkConfig}};
pub use self::topk::TopkTokens;
pub use self::vs_estimate::{estimate_vertical_slash, VsEstimateConfig};
