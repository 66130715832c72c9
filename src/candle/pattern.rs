//! What a call attends besides q, k and v: the pattern's index tensors, a varlen batch's
//! boundaries, a decode step's cache. Generic over how the tensors are held: the public
//! functions take borrowed `&Tensor`s, and the ops keep owned clones (a candle `Tensor` is
//! a reference-counted handle, so a clone copies no data).

#[cfg(feature = "candle-cuda")]
use crate::plan::decode::DecodeSource;

/// The keys each query row attends, as candle tensors (i32 or u32, on q's device). The
/// formats are the crate's (docs/architecture.md); `H` is `heads_q`, or `heads_kv` when one
/// index serves a GQA group; `MB` is `ceil(seq_q / 64)` (varlen: of `max_seqlen_q`).
#[derive(Debug, Clone, Copy)]
pub enum Pattern<T> {
    /// Every key (under the causal mask when asked for).
    Dense,
    /// `block_count [B, H, MB]`, `block_index [B, H, MB, max_blocks]`: per row block, the key
    /// blocks of 64 keys it attends, ascending.
    BlockSparse {
        /// `[B, H, MB]`.
        block_count: T,
        /// `[B, H, MB, max_blocks]`.
        block_index: T,
    },
    /// MInference's vertical and slash indexes, `[B, H, NNZ_V]` ascending key positions and
    /// `[B, H, NNZ_S]` diagonal distances, descending; converted on the call's device
    /// (the CUDA forward runs the conversion kernel, the CPU forward the host converter).
    /// Causal only.
    VerticalSlash {
        /// `[B, H, NNZ_V]`.
        vertical_indexes: T,
        /// `[B, H, NNZ_S]`.
        slash_indexes: T,
    },
    /// An already converted vertical-slash index (`cuda::vs_convert`'s output, or the host
    /// `pattern::vs_convert::convert`). Causal only.
    VsIndex {
        /// `[B, H, MB]`: tiles per row block.
        block_count: T,
        /// `[B, H, MB, NNZ_S]`: tile start keys.
        block_offset: T,
        /// `[B, H, MB]`: columns per row block.
        column_count: T,
        /// `[B, H, MB, NNZ_V]`: column keys.
        column_index: T,
    },
    /// Per query row and kv head, the keys it attends: `[B, seq_q, heads_kv, k]`, or packed
    /// `[total_q, heads_kv, k]` for varlen; -1 for none.
    TopK {
        /// The index tensor.
        indices: T,
    },
}

impl<T> Pattern<T> {
    /// The same pattern over other tensor handles; stops at the first error.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<Pattern<U>, E> {
        Ok(match self {
            Pattern::Dense => Pattern::Dense,
            Pattern::BlockSparse { block_count, block_index } => Pattern::BlockSparse { block_count: f(block_count)?, block_index: f(block_index)? },
            Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
                Pattern::VerticalSlash { vertical_indexes: f(vertical_indexes)?, slash_indexes: f(slash_indexes)? }
            }
            Pattern::VsIndex { block_count, block_offset, column_count, column_index } => Pattern::VsIndex {
                block_count: f(block_count)?,
                block_offset: f(block_offset)?,
                column_count: f(column_count)?,
                column_index: f(column_index)?,
            },
            Pattern::TopK { indices } => Pattern::TopK { indices: f(indices)? },
        })
    }

    /// Each index tensor with its name, in a fixed order.
    #[cfg(feature = "candle-cuda")]
    pub(super) fn tensors(&self) -> Vec<(&'static str, &T)> {
        match self {
            Pattern::Dense => vec![],
            Pattern::BlockSparse { block_count, block_index } => vec![("block_count", block_count), ("block_index", block_index)],
            Pattern::VerticalSlash { vertical_indexes, slash_indexes } => {
                vec![("vertical_indexes", vertical_indexes), ("slash_indexes", slash_indexes)]
            }
            Pattern::VsIndex { block_count, block_offset, column_count, column_index } => vec![
                ("block_count", block_count),
                ("block_offset", block_offset),
                ("column_count", column_count),
                ("column_index", column_index),
            ],
            Pattern::TopK { indices } => vec![("indices", indices)],
        }
    }
}

/// The sequences of a varlen batch, as `flash_attn_varlen` takes them: i32 or u32
/// `cu_seqlens_q` and `cu_seqlens_k` (`batch + 1` prefix sums, on q's device) and the
/// longest lengths, which size the launch and the index tensors' row blocks without reading
/// the device's tensors back.
#[derive(Debug, Clone, Copy)]
pub struct VarlenSeqs<T> {
    /// `[batch + 1]`: sequence `b`'s query rows are `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]`.
    pub cu_seqlens_q: T,
    /// `[batch + 1]`, the same for keys.
    pub cu_seqlens_k: T,
    /// The longest query sequence.
    pub max_seqlen_q: usize,
    /// The longest key sequence.
    pub max_seqlen_k: usize,
}

impl<T> VarlenSeqs<T> {
    /// The same boundaries over other tensor handles; stops at the first error.
    pub fn try_map<U, E>(&self, mut f: impl FnMut(&T) -> Result<U, E>) -> Result<VarlenSeqs<U>, E> {
        Ok(VarlenSeqs {
            cu_seqlens_q: f(&self.cu_seqlens_q)?,
            cu_seqlens_k: f(&self.cu_seqlens_k)?,
            max_seqlen_q: self.max_seqlen_q,
            max_seqlen_k: self.max_seqlen_k,
        })
    }
}

/// The K/V cache a decode step reads.
#[derive(Debug, Clone, Copy)]
pub struct DecodeCache<T> {
    /// Keys: `[batch, capacity, heads_kv, head_dim]`, or with `block_table` pages
    /// `[num_pages, page_size, heads_kv, head_dim]` (an HND cache is passed as its
    /// `transpose(1, 2)` view: strides, not a copy).
    pub k: T,
    /// Values, laid out like the keys.
    pub v: T,
    /// i32 or u32 `[batch]`: keys per sequence, the new tokens' included.
    pub seqlens_k: T,
    /// i32 or u32 `[batch, max_pages]` for a paged cache: the pages of each sequence, in order.
    pub block_table: Option<T>,
}

/// Each index tensor of a decode source with its name.
#[cfg(feature = "candle-cuda")]
pub(super) fn source_tensors<T>(source: &DecodeSource<T>) -> Vec<(&'static str, &T)> {
    match source {
        DecodeSource::Dense => vec![],
        DecodeSource::BlockSparse { block_count, block_index, .. } => vec![("block_count", block_count), ("block_index", block_index)],
        DecodeSource::TopK { indices, .. } => vec![("indices", indices)],
    }
}
