//! What a launch is given, as plain numbers: device addresses and element counts of every
//! buffer, their layouts, and the sparse source's tensors. Both backends describe their
//! buffers this way, so validation and the params struct are computed once.

use crate::pattern::vs_convert::VsIndexDims;
use crate::shape::{AttnShape, Bshd};

/// One device buffer: its address and how many elements it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBuffer {
    /// Device address of element 0.
    pub addr: u64,
    /// Capacity in elements of the buffer's type.
    pub len: usize,
}

/// BSHD strides of the four attention tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnLayouts {
    /// Layout of q.
    pub q: Bshd,
    /// Layout of k.
    pub k: Bshd,
    /// Layout of v.
    pub v: Bshd,
    /// Layout of the output.
    pub out: Bshd,
}

impl AttnLayouts {
    /// Densely packed BSHD for every tensor of `shape`.
    pub fn contiguous(shape: &AttnShape) -> Self {
        let (q, kv) = (shape.q_layout(), shape.kv_layout());
        Self { q, k: kv, v: kv, out: q }
    }
}

/// The dense tensors of one launch (element type = the kernel's dtype; LSE is f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnBuffers {
    /// Queries.
    pub q: DeviceBuffer,
    /// Keys.
    pub k: DeviceBuffer,
    /// Values.
    pub v: DeviceBuffer,
    /// Output, written by the kernel.
    pub out: DeviceBuffer,
    /// f32 LSE `[batch, heads_q, seq_q]`; must be present exactly when the options ask for it.
    pub lse: Option<DeviceBuffer>,
    /// Strides of q, k, v and the output.
    pub layouts: AttnLayouts,
}

/// The key-tile source and its i32 index tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceBuffers {
    /// All key tiles; no index tensor.
    Dense,
    /// Block-sparse (and A-shape): `block_count [B, H, MB]`, `block_index [B, H, MB, max_blocks]`.
    BlockSparse {
        /// `[B, H, MB, max_blocks]` as [`crate::pattern::BlockSparse::dims`] gives them.
        dims: [usize; 4],
        /// Entries per row block.
        block_count: DeviceBuffer,
        /// Ascending key-block ids, padding past the count.
        block_index: DeviceBuffer,
    },
    /// Converted vertical-slash indices ([`crate::pattern::vs_convert::VsIndex`]'s layout).
    VerticalSlash {
        /// Sizes of the four tensors.
        dims: VsIndexDims,
        /// Tiles per row block.
        block_count: DeviceBuffer,
        /// Tile start keys.
        block_offset: DeviceBuffer,
        /// Columns per row block.
        column_count: DeviceBuffer,
        /// Column keys.
        column_index: DeviceBuffer,
    },
}

impl SourceBuffers {
    /// The pattern whose kernel runs this source.
    pub fn pattern(&self) -> super::AttnPattern {
        match self {
            SourceBuffers::Dense => super::AttnPattern::Dense,
            SourceBuffers::BlockSparse { .. } => super::AttnPattern::BlockSparse,
            SourceBuffers::VerticalSlash { .. } => super::AttnPattern::VerticalSlash,
        }
    }
}
