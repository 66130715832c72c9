//! The kernel instantiations of `kernels/prefill.cu` and what they support.

use crate::error::{Error, Result};
use crate::shape::DType;

/// Head dimensions with a kernel instantiation.
pub const SUPPORTED_HEAD_DIMS: &[usize] = &[64, 128];

/// Oldest GPU generation the kernels run on: mma.sync bf16 and cp.async need sm_80.
pub const MIN_COMPUTE_CAPABILITY: u32 = 80;

/// Threads per CTA: 4 warps, each owning 16 of the 64 query rows.
pub const THREADS: u32 = 128;

/// Which key-tile source the main loop runs with (A-shape runs as [`AttnPattern::BlockSparse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttnPattern {
    /// Every key tile (a causal launch stops at the last visible one).
    Dense,
    /// The row block's list of key blocks.
    BlockSparse,
    /// Converted vertical-slash tiles, then gathered vertical columns.
    VerticalSlash,
}

/// Whether an attention kernel exists for this dtype and head_dim on a GPU of compute
/// capability `compute_capability` (major * 10 + minor), in this build: false too when the
/// crate was built without nvcc. Engines call it to decide whether to fall back.
pub fn supports(dtype: DType, head_dim: usize, compute_capability: u32) -> bool {
    let dtype_ok = matches!(dtype, DType::F16 | DType::BF16);
    dtype_ok
        && SUPPORTED_HEAD_DIMS.contains(&head_dim)
        && compute_capability >= MIN_COMPUTE_CAPABILITY
        && crate::kernels::module_for("prefill", compute_capability).is_ok()
}

/// Dynamic shared memory of one CTA: K and V tiles of 64 x head_dim 16-bit elements, two
/// stages each (the Q tile borrows a stage before the loop starts). Saturates at
/// `u32::MAX` for a head_dim no kernel has.
pub fn shared_mem_bytes(head_dim: usize) -> u32 {
    u32::try_from((4 * 64 * 2usize).saturating_mul(head_dim)).unwrap_or(u32::MAX)
}

/// Generates the name table so it cannot drift from the macro list in kernels/prefill.cu
/// by a hand-copied typo: both spell `attn_fwd_<pattern>_<dtype>_hd<D>`.
macro_rules! kernel_table {
    ($($pattern:ident => $p:literal),*) => {
        fn lookup(pattern: AttnPattern, dtype: DType, head_dim: usize) -> Option<&'static str> {
            match (pattern, dtype, head_dim) {
                $(
                    (AttnPattern::$pattern, DType::F16, 64) => Some(concat!("attn_fwd_", $p, "_f16_hd64")),
                    (AttnPattern::$pattern, DType::F16, 128) => Some(concat!("attn_fwd_", $p, "_f16_hd128")),
                    (AttnPattern::$pattern, DType::BF16, 64) => Some(concat!("attn_fwd_", $p, "_bf16_hd64")),
                    (AttnPattern::$pattern, DType::BF16, 128) => Some(concat!("attn_fwd_", $p, "_bf16_hd128")),
                )*
                _ => None,
            }
        }
    };
}

kernel_table!(Dense => "dense", BlockSparse => "block_sparse", VerticalSlash => "vertical_slash");

/// The `extern "C"` name of the instantiation for `pattern`, `dtype` and `head_dim`.
pub fn kernel_name(pattern: AttnPattern, dtype: DType, head_dim: usize) -> Result<&'static str> {
    lookup(pattern, dtype, head_dim).ok_or(Error::UnsupportedHeadDim { head_dim, supported: SUPPORTED_HEAD_DIMS })
}
