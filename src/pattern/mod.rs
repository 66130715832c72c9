//! Sparsity descriptors, one file per pattern, and the host builders that estimate them.
//!
//! Each descriptor validates its index tensors against a problem shape and expands to the
//! exact element mask it implies (`SparsePattern`), and gives the [`Source`](crate::Source)
//! a launch takes (`descriptor.source(&shape)?`, validated first). Index tiles are `BLOCK_M`
//! query rows by `BLOCK_N` keys.

/// Query rows per index tile (row block) in every index format; the kernels' CTA tile is a
/// separate constant ([`crate::params::PREFILL_TILE_M`]).
pub const BLOCK_M: usize = crate::params::INDEX_BLOCK_M;
/// Keys per index tile (key block) in every index format.
pub const BLOCK_N: usize = crate::params::INDEX_BLOCK_N;

pub mod a_shape;
pub mod block_select;
pub mod block_sparse;
pub mod block_topk;
pub mod dense;
pub mod estimate_varlen;
pub mod indexer;
pub mod topk;
pub mod topk_select;
pub mod vertical_slash;
pub mod vs_convert;
pub mod vs_estimate;

pub use self::a_shape::AShape;
pub use self::block_sparse::BlockSparse;
pub use self::block_topk::{estimate_block_topk, BlockTopkConfig};
pub use self::estimate_varlen::{estimate_block_topk_varlen, estimate_vertical_slash_varlen};
pub use self::dense::Dense;
pub use self::topk::TopkTokens;
pub use self::vertical_slash::VerticalSlash;
pub use self::vs_estimate::{estimate_vertical_slash, VsEstimateConfig};
