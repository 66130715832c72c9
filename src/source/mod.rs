//! The one key-source vocabulary: which keys each query row attends, as index tensors of
//! any buffer kind.
//!
//! [`Source<B>`] is generic over where the tensors live:
//! - host slices (`Source<&[i32]>`, `Source<Vec<i32>>`): the CPU reference and the simulator;
//! - device buffers (`Source<CudaSlice<i32>>`, `Source<CudaView<i32>>`, anything that
//!   implements cudarc's `DevicePtr<i32>`): the GPU;
//! - [`DeviceBuffer`](crate::plan::DeviceBuffer): the raw address-and-length form a
//!   [`LaunchPlan`](crate::plan::LaunchPlan) is built from.
//!
//! [`Source::try_map`] turns one kind into another (upload, take device pointers, check
//! contexts), so no other code matches over the patterns to move buffers around. Host
//! descriptors give their source after validating it against a shape
//! (`descriptor.source(&shape)?`); a converted vertical-slash index converts with
//! `Source::from(&index)`.

mod dims;

pub use dims::{key_blocks, row_blocks, BlockSparseDims, TopkDims, VsIndexDims, VsTensorLens};

/// The key tiles or tokens each query row attends. A-shape runs as `BlockSparse`
/// ([`crate::pattern::AShape::to_block_sparse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<B> {
    /// Every key (a causal launch stops at the last visible one); no index tensor.
    Dense,
    /// Per row block, the key blocks it attends.
    BlockSparse(BlockSparseIndex<B>),
    /// Converted vertical-slash indices: per row block, key tiles plus single columns.
    VerticalSlash(VsIndex<B>),
    /// Per query row and kv head, the keys it attends.
    TopK(TopkIndex<B>),
}

/// Block-sparse index tensors (i32); layout as [`crate::pattern::BlockSparse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSparseIndex<B> {
    /// Sizes of both tensors.
    pub dims: BlockSparseDims,
    /// `[B, H, MB]`: entries per row block.
    pub block_count: B,
    /// `[B, H, MB, max_blocks]`: ascending key-block ids; entries past the count are ignored.
    pub block_index: B,
}

/// Converted vertical-slash index tensors (i32): what
/// [`crate::pattern::vs_convert::convert`] and the `vertical_slash_convert` kernel produce.
/// The default `Vec<i32>` is the host form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsIndex<B = Vec<i32>> {
    /// Sizes of the four tensors.
    pub dims: VsIndexDims,
    /// `[B, H, MB]`: tiles per row block.
    pub block_count: B,
    /// `[B, H, MB, NNZ_S]`: tile start keys, ascending; -1 past the count.
    pub block_offset: B,
    /// `[B, H, MB]`: columns per row block.
    pub column_count: B,
    /// `[B, H, MB, NNZ_V]`: column keys, ascending; -1 past the count.
    pub column_index: B,
}

/// Top-k token index tensor (i32); layout as [`crate::pattern::TopkTokens`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopkIndex<B> {
    /// `[B, seq_q, heads_kv, k]`.
    pub dims: TopkDims,
    /// Keys per (batch, query row, kv head); -1 is an empty slot.
    pub indices: B,
}

impl<B> VsIndex<B> {
    /// Applies `f` to each tensor, with its name; stops at the first error.
    pub fn try_map<C, E>(self, mut f: impl FnMut(&'static str, B) -> Result<C, E>) -> Result<VsIndex<C>, E> {
        Ok(VsIndex {
            dims: self.dims,
            block_count: f("block_count", self.block_count)?,
            block_offset: f("block_offset", self.block_offset)?,
            column_count: f("column_count", self.column_count)?,
            column_index: f("column_index", self.column_index)?,
        })
    }

    /// Applies `f` to each tensor, with its name.
    pub fn map<C>(self, mut f: impl FnMut(&'static str, B) -> C) -> VsIndex<C> {
        match self.try_map(|name, b| Ok::<C, std::convert::Infallible>(f(name, b))) {
            Ok(mapped) => mapped,
            Err(never) => match never {},
        }
    }

    /// The same tensors, borrowed.
    pub fn as_ref(&self) -> VsIndex<&B> {
        VsIndex {
            dims: self.dims,
            block_count: &self.block_count,
            block_offset: &self.block_offset,
            column_count: &self.column_count,
            column_index: &self.column_index,
        }
    }

    /// The same tensors, mutably borrowed (e.g. as the conversion kernel's outputs).
    pub fn as_mut(&mut self) -> VsIndex<&mut B> {
        VsIndex {
            dims: self.dims,
            block_count: &mut self.block_count,
            block_offset: &mut self.block_offset,
            column_count: &mut self.column_count,
            column_index: &mut self.column_index,
        }
    }
}

impl VsIndex<Vec<i32>> {
    /// Cuts each tensor to its length under `dims`. A device copy of an empty tensor holds
    /// one filler element (device buffers are never empty), which this drops.
    pub fn truncate_to_dims(mut self) -> Self {
        let lens = self.dims.lens();
        self.block_count.truncate(lens.rows);
        self.block_offset.truncate(lens.block_offset);
        self.column_count.truncate(lens.rows);
        self.column_index.truncate(lens.column_index);
        self
    }
}

impl<B> Source<B> {
    /// Applies `f` to every index tensor, with its name (`"block_count"`, `"indices"`, ...),
    /// and keeps the pattern and sizes; stops at the first error.
    pub fn try_map<C, E>(self, mut f: impl FnMut(&'static str, B) -> Result<C, E>) -> Result<Source<C>, E> {
        Ok(match self {
            Source::Dense => Source::Dense,
            Source::BlockSparse(x) => Source::BlockSparse(BlockSparseIndex {
                dims: x.dims,
                block_count: f("block_count", x.block_count)?,
                block_index: f("block_index", x.block_index)?,
            }),
            Source::VerticalSlash(x) => Source::VerticalSlash(x.try_map(f)?),
            Source::TopK(x) => Source::TopK(TopkIndex { dims: x.dims, indices: f("indices", x.indices)? }),
        })
    }

    /// Applies `f` to every index tensor, with its name.
    pub fn map<C>(self, mut f: impl FnMut(&'static str, B) -> C) -> Source<C> {
        match self.try_map(|name, b| Ok::<C, std::convert::Infallible>(f(name, b))) {
            Ok(mapped) => mapped,
            Err(never) => match never {},
        }
    }

    /// The same source, borrowing its tensors.
    pub fn as_ref(&self) -> Source<&B> {
        match self {
            Source::Dense => Source::Dense,
            Source::BlockSparse(x) => {
                Source::BlockSparse(BlockSparseIndex { dims: x.dims, block_count: &x.block_count, block_index: &x.block_index })
            }
            Source::VerticalSlash(x) => Source::VerticalSlash(x.as_ref()),
            Source::TopK(x) => Source::TopK(TopkIndex { dims: x.dims, indices: &x.indices }),
        }
    }

    /// The pattern's name as kernel names spell it (`attn_fwd_<name>_...`): `dense`,
    /// `block_sparse`, `vertical_slash` or `topk`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Dense => "dense",
            Source::BlockSparse(_) => "block_sparse",
            Source::VerticalSlash(_) => "vertical_slash",
            Source::TopK(_) => "topk",
        }
    }
}

impl<B: AsRef<[i32]>> Source<B> {
    /// The host tensors as slices.
    pub fn host(&self) -> Source<&[i32]> {
        self.as_ref().map(|_, b| b.as_ref())
    }
}

impl<'a, B: AsRef<[i32]>> From<&'a VsIndex<B>> for Source<&'a [i32]> {
    fn from(x: &'a VsIndex<B>) -> Self {
        Source::VerticalSlash(x.as_ref().map(|_, b| b.as_ref()))
    }
}

impl<B> From<VsIndex<B>> for Source<B> {
    fn from(x: VsIndex<B>) -> Self {
        Source::VerticalSlash(x)
    }
}
