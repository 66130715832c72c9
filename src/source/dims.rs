//! The sizes of each sparse index format, validated once by their constructors: every
//! element count they imply fits in `usize`, so the length queries cannot overflow. The
//! fields are private; a value of these types is always consistent.
//!
//! Index tensors are i32 and tiled at the index granularity ([`INDEX_BLOCK_M`] query rows by
//! [`INDEX_BLOCK_N`] keys); docs/architecture.md lists the formats.

use crate::checked::product;
use crate::error::Result;
use crate::params::{INDEX_BLOCK_M, INDEX_BLOCK_N};

/// Row blocks (index tiles of [`INDEX_BLOCK_M`] query rows) of a query sequence.
pub fn row_blocks(seq_q: usize) -> usize {
    seq_q.div_ceil(INDEX_BLOCK_M)
}

/// Key blocks (index tiles of [`INDEX_BLOCK_N`] keys) of a key sequence.
pub fn key_blocks(seq_k: usize) -> usize {
    seq_k.div_ceil(INDEX_BLOCK_N)
}

/// Sizes of a block-sparse index: `block_count [batch, heads, row_blocks]` and
/// `block_index [batch, heads, row_blocks, max_blocks]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockSparseDims {
    batch: usize,
    heads: usize,
    row_blocks: usize,
    max_blocks: usize,
}

impl BlockSparseDims {
    /// Checks that both tensors' element counts fit in `usize`.
    pub fn new(batch: usize, heads: usize, row_blocks: usize, max_blocks: usize) -> Result<Self> {
        product("block_index", &[batch, heads, row_blocks, max_blocks])?;
        product("block_count", &[batch, heads, row_blocks])?;
        Ok(Self { batch, heads, row_blocks, max_blocks })
    }
    /// `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `H`: heads_q, or heads_kv when one index serves a GQA group.
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// `MB`.
    pub fn row_blocks(&self) -> usize {
        self.row_blocks
    }
    /// Capacity of one `block_index` row.
    pub fn max_blocks(&self) -> usize {
        self.max_blocks
    }
    /// `[B, H, MB, max_blocks]`.
    pub fn to_array(&self) -> [usize; 4] {
        [self.batch, self.heads, self.row_blocks, self.max_blocks]
    }
    /// Elements of `block_count`.
    pub fn count_len(&self) -> usize {
        self.batch * self.heads * self.row_blocks
    }
    /// Elements of `block_index`.
    pub fn index_len(&self) -> usize {
        self.count_len() * self.max_blocks
    }
}

/// Sizes of a top-k token index `indices [batch, seq_q, heads_kv, k]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopkDims {
    batch: usize,
    seq_q: usize,
    heads_kv: usize,
    k: usize,
}

impl TopkDims {
    /// Checks that the element count fits in `usize`.
    pub fn new(batch: usize, seq_q: usize, heads_kv: usize, k: usize) -> Result<Self> {
        product("indices", &[batch, seq_q, heads_kv, k])?;
        Ok(Self { batch, seq_q, heads_kv, k })
    }
    /// `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Query rows per sequence.
    pub fn seq_q(&self) -> usize {
        self.seq_q
    }
    /// Key/value heads.
    pub fn heads_kv(&self) -> usize {
        self.heads_kv
    }
    /// Slots per index row.
    pub fn k(&self) -> usize {
        self.k
    }
    /// `[B, seq_q, heads_kv, k]`.
    pub fn to_array(&self) -> [usize; 4] {
        [self.batch, self.seq_q, self.heads_kv, self.k]
    }
    /// Elements of `indices`.
    pub fn len(&self) -> usize {
        self.batch * self.seq_q * self.heads_kv * self.k
    }
    /// Whether the index holds no slot at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sizes of a converted vertical-slash index (and of the descriptor it came from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VsIndexDims {
    batch: usize,
    heads: usize,
    row_blocks: usize,
    nnz_v: usize,
    nnz_s: usize,
}

/// Element counts of the input and output tensors of a vertical-slash conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsTensorLens {
    /// `vertical_indexes`: `batch * heads * nnz_v`.
    pub vertical: usize,
    /// `slash_indexes`: `batch * heads * nnz_s`.
    pub slash: usize,
    /// `block_count` and `column_count`: `batch * heads * row_blocks`.
    pub rows: usize,
    /// `rows * nnz_s`.
    pub block_offset: usize,
    /// `rows * nnz_v`.
    pub column_index: usize,
}

impl VsIndexDims {
    /// Checks that every tensor's element count fits in `usize`.
    pub fn new(batch: usize, heads: usize, row_blocks: usize, nnz_v: usize, nnz_s: usize) -> Result<Self> {
        product("vertical_indexes", &[batch, heads, nnz_v])?;
        product("slash_indexes", &[batch, heads, nnz_s])?;
        product("block_offset", &[batch, heads, row_blocks, nnz_s])?;
        product("column_index", &[batch, heads, row_blocks, nnz_v])?;
        product("block_count", &[batch, heads, row_blocks])?;
        Ok(Self { batch, heads, row_blocks, nnz_v, nnz_s })
    }
    /// `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// `H` of the descriptor (`heads_q` or `heads_kv`).
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// `MB = ceil(seq_q / INDEX_BLOCK_M)`.
    pub fn row_blocks(&self) -> usize {
        self.row_blocks
    }
    /// Verticals per head: the capacity of a column row.
    pub fn nnz_v(&self) -> usize {
        self.nnz_v
    }
    /// Slashes per head: the capacity of a tile row.
    pub fn nnz_s(&self) -> usize {
        self.nnz_s
    }
    /// Element counts of the input and output tensors.
    pub fn lens(&self) -> VsTensorLens {
        let rows = self.batch * self.heads * self.row_blocks;
        VsTensorLens {
            vertical: self.batch * self.heads * self.nnz_v,
            slash: self.batch * self.heads * self.nnz_s,
            rows,
            block_offset: rows * self.nnz_s,
            column_index: rows * self.nnz_v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// Sizes whose products overflow used to panic (debug) or wrap (release) wherever the
    /// lengths were computed, and a wrapped product could let a short buffer pass the length
    /// checks; the constructor refuses them, so `lens` never overflows.
    #[test]
    fn tensor_lengths_of_absurd_dims_are_an_error_not_an_overflow() {
        let err = VsIndexDims::new(2, 1, 1, usize::MAX / 2 + 1, 1).unwrap_err();
        assert!(matches!(err, Error::DimensionTooLarge { dim: "vertical_indexes", .. }), "{err:?}");
        let err = VsIndexDims::new(1, 1, 1 << 33, 1, 1 << 31).unwrap_err();
        assert!(matches!(err, Error::DimensionTooLarge { dim: "block_offset", .. }), "{err:?}");
        let dims = VsIndexDims::new(2, 3, 5, 7, 11).unwrap();
        let want = VsTensorLens { vertical: 42, slash: 66, rows: 30, block_offset: 330, column_index: 210 };
        assert_eq!(dims.lens(), want);
    }
}
