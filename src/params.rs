//! Rust mirrors of the launch-parameter structs in `kernels/params.h`.
//!
//! Each struct is `#[repr(C)]` with the same fields in the same order, and plain old data
//! (`bytemuck::Pod`) so it can be passed to a kernel as raw bytes. Device pointers are
//! `u64` addresses: raw pointers are not `Pod`, and the kernels cast them back.
//! `tests/params_layout.rs` compiles a host program against `params.h` and checks size,
//! alignment and every field offset against these definitions.

use crate::error::{Error, Result};
use crate::mask::SparsePattern;
use crate::pattern::vertical_slash::VerticalSlash;
use crate::pattern::vs_convert::row_blocks;
use crate::shape::AttnShape;

/// Threads per block of `vertical_slash_convert` (one thread per row block).
pub const VS_CONVERT_THREADS: u32 = 128;

/// Parameters of `vertical_slash_convert` (kernels/index.cu), passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct VsConvertParams {
    /// Device address of `vertical_indexes`, i32 `[batch, heads, nnz_v]`.
    pub vertical_indexes: u64,
    /// Device address of `slash_indexes`, i32 `[batch, heads, nnz_s]`.
    pub slash_indexes: u64,
    /// Device address of the output `block_count`, i32 `[batch, heads, row_blocks]`.
    pub block_count: u64,
    /// Device address of the output `block_offset`, i32 `[batch, heads, row_blocks, nnz_s]`.
    pub block_offset: u64,
    /// Device address of the output `column_count`, i32 `[batch, heads, row_blocks]`.
    pub column_count: u64,
    /// Device address of the output `column_index`, i32 `[batch, heads, row_blocks, nnz_v]`.
    pub column_index: u64,
    /// `B`.
    pub batch: i32,
    /// The descriptor's `H` (`heads_q` or `heads_kv`).
    pub heads: i32,
    /// Query length.
    pub seq_q: i32,
    /// Key length.
    pub seq_k: i32,
    /// Verticals per head.
    pub nnz_v: i32,
    /// Slashes per head.
    pub nnz_s: i32,
    /// `ceil(seq_q / BLOCK_M)`.
    pub row_blocks: i32,
    /// Explicit tail padding (C would insert it implicitly; `Pod` forbids implicit padding).
    pub pad0: i32,
}

impl VsConvertParams {
    /// The sizes for converting `vs` under `shape` (validated first), with every device
    /// address 0: the launcher fills those in once the buffers exist.
    pub fn for_problem(vs: &VerticalSlash, shape: &AttnShape) -> Result<Self> {
        vs.validate(shape)?;
        let to_i32 = |dim: &'static str, value: usize| {
            i32::try_from(value).map_err(|_| Error::DimensionTooLarge { dim, value, max: i32::MAX as usize })
        };
        Ok(Self {
            batch: to_i32("batch", vs.batch())?,
            heads: to_i32("heads", vs.heads())?,
            seq_q: to_i32("seq_q", shape.seq_q)?,
            seq_k: to_i32("seq_k", shape.seq_k)?,
            nnz_v: to_i32("nnz_v", vs.nnz_v())?,
            nnz_s: to_i32("nnz_s", vs.nnz_s())?,
            row_blocks: to_i32("row_blocks", row_blocks(shape.seq_q))?,
            ..Self::default()
        })
    }

    /// Grid size (blocks of [`VS_CONVERT_THREADS`]) covering every row block once.
    pub fn grid_blocks(&self) -> u64 {
        let tasks = self.batch.max(0) as u64 * self.heads.max(0) as u64 * self.row_blocks.max(0) as u64;
        tasks.div_ceil(VS_CONVERT_THREADS as u64)
    }
}
