//! Sparsity descriptors, one file per pattern, and the host builders that estimate them.
//!
//! Each descriptor validates its index tensors against a problem shape and expands to the
//! exact element mask it implies (`SparsePattern`). Tiles are `BLOCK_M` query rows by
//! `BLOCK_N` keys.

/// Query rows per tile (row block) in every index format.
pub const BLOCK_M: usize = 64;
/// Keys per tile (key block) in every index format.
pub const BLOCK_N: usize = 64;
