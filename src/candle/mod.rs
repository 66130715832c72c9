//! Attention on candle [`Tensor`]s (features `candle` and `candle-cuda`), in
//! candle-flash-attn's style: each function takes q, k and v and returns the output tensor.
//!
//! | function | q, k, v | keys |
//! |---|---|---|
//! | [`attention`], [`block_sparse`], [`vertical_slash`], [`topk`], [`sparse`] | BSHD `[batch, seq, heads, head_dim]` | dense, or a [`Pattern`]'s index tensors |
//! | [`varlen`] | packed `[total, heads, head_dim]` + [`VarlenSeqs`] (`cu_seqlens` tensors) | any [`Pattern`] |
//! | [`decode`] | q `[batch, q_len, heads_q, head_dim]`, a [`DecodeCache`] (contiguous or paged with a block table) | a [`DecodeSource`] of tensors |
//!
//! Each has a `_with_lse` variant that also returns the f32 LSE (natural log): `[batch,
//! heads_q, seq_q]`, varlen `[heads_q, total_q]`, decode `[batch, heads_q, q_len]`. Options
//! are the crate's [`AttnOptions`] (causal, scale, `softcap`, `window_left`; `return_lse` is
//! ignored, the function decides) or [`DecodeOptions`]; `sinks` is an optional f32
//! `[heads_q]` tensor. q, k and v are f16 or bf16 (one dtype, the output's too); index
//! tensors, `cu_seqlens`, `seqlens_k` and block tables are i32 or u32, on q's device (a
//! device tensor made by this crate's index builders is used where it is, never read back
//! on the CUDA path). Nothing here records a backward pass.
//!
//! # Two forwards
//! Every call is a candle `CustomOp3` over (q, k, v), its other tensors carried in the op.
//! - CPU tensors run the crate's f64 reference ([`crate::reference`]) on the gathered inputs
//!   and round the result once to q's dtype: exact, slow, and what every kernel is tested
//!   against. Index values, sequence boundaries and block tables are checked on the host
//!   and an error names the first bad entry. The CPU forward takes what the reference takes:
//!   any head_dim, decode q_len, decode block size or page size, where the CUDA forward
//!   takes the kernels' (`crate::supports`, [`crate::plan::decode`]) and errors otherwise.
//! - CUDA tensors (feature `candle-cuda`) launch this crate's kernels ([`crate::cuda`]) on
//!   candle's stream, with the output (and LSE) allocated on the device. Index values stay
//!   on the device and are not checked there; the kernels skip bad entries, as in
//!   [`crate::cuda`]. A decode step allocates its split-KV workspace per call, and
//!   `DecodeOptions::sm_count == 0` asks the device for its SM count. Vertical and slash
//!   indexes ([`Pattern::VerticalSlash`]) are converted on the device per call.
//!
//! # Layouts: what is copied
//! q, k, v and the caches are passed as they are: any strides candle can describe whose last
//! dimension is contiguous (a Q/K/V split of a fused projection by `narrow`, a transposed
//! HND page cache, a slice of a larger cache). The CUDA forward hands the kernels a view at
//! the tensor's start offset with its strides, no copy; the kernels load 16-byte rows, so
//! strides and offset must be multiples of 8 elements (true of any view that keeps whole
//! head vectors of head_dim 64, 96 or 128), and otherwise the call errors naming the tensor.
//! A last dimension that is not contiguous is an error on both devices: call `.contiguous()`.
//! Index-like tensors (indices, `cu_seqlens`, `seqlens_k`, block tables, sinks) are read
//! as flat arrays, so a non-contiguous one is first copied by `.contiguous()` on its own
//! device. The CPU forward gathers every input into contiguous f64 anyway (the reference's
//! input), so there any layout costs the same.
//!
//! # The LSE: a second op
//! A CustomOp has one output. The `_with_lse` functions run the same single op, which writes
//! the LSE next to the output (in the same kernel launch, or the same reference run) and
//! leaves its storage in a slot the op shares with a second, trivial op; that op, applied to
//! the output right after, returns the stored LSE as its own tensor. Nothing is recomputed
//! and nothing is copied. An in-place LSE buffer was the alternative; it would take a
//! caller-allocated tensor and candle's in-place op traits, which give one writable
//! storage, the output's, so the LSE would still have to travel outside the op's arguments.
//!
//! # Errors
//! Every bad argument returns a `candle_core::Error` wrapping a [`crate::Error`] that names
//! the tensor or argument and what was expected: tensors on different devices, dtypes
//! (q/k/v f16 or bf16 and equal, index tensors i32 or u32, sinks f32), a last dimension
//! that is not contiguous, ranks and mismatched dimensions, softcap <= 0, a window past
//! `i32::MAX`, and whatever the reference or the launch planner rejects. Nothing panics on
//! caller input.

mod args;
mod cpu;
#[cfg(feature = "candle-cuda")]
mod cuda;
mod host;
mod ops;
mod pattern;
mod problem;

use candle_core::Tensor;

pub use self::pattern::{DecodeCache, Pattern, VarlenSeqs};
pub use crate::plan::decode::{DecodeOptions, DecodeSource};
pub use crate::shape::AttnOptions;

/// Dense attention (causal when `opts.causal`), BSHD q `[batch, seq_q, heads_q, head_dim]`
/// and k, v `[batch, seq_k, heads_kv, head_dim]`.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions, sinks: Option<&Tensor>) -> candle_core::Result<Tensor> {
    sparse(q, k, v, &Pattern::Dense, opts, sinks)
}

/// [`attention`] and its LSE `[batch, heads_q, seq_q]`.
pub fn attention_with_lse(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions, sinks: Option<&Tensor>) -> candle_core::Result<(Tensor, Tensor)> {
    sparse_with_lse(q, k, v, &Pattern::Dense, opts, sinks)
}

/// Block-sparse attention: `block_count [B, H, MB]`, `block_index [B, H, MB, max_blocks]`.
pub fn block_sparse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    block_count: &Tensor,
    block_index: &Tensor,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    sparse(q, k, v, &Pattern::BlockSparse { block_count, block_index }, opts, sinks)
}

/// [`block_sparse`] and its LSE `[batch, heads_q, seq_q]`.
pub fn block_sparse_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    block_count: &Tensor,
    block_index: &Tensor,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    sparse_with_lse(q, k, v, &Pattern::BlockSparse { block_count, block_index }, opts, sinks)
}

/// Vertical-slash attention (MInference; causal only) from the vertical `[B, H, NNZ_V]` and
/// slash `[B, H, NNZ_S]` indexes, converted per call; [`sparse`] with
/// [`Pattern::VsIndex`] takes an already converted index.
pub fn vertical_slash(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    vertical_indexes: &Tensor,
    slash_indexes: &Tensor,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    sparse(q, k, v, &Pattern::VerticalSlash { vertical_indexes, slash_indexes }, opts, sinks)
}

/// [`vertical_slash`] and its LSE `[batch, heads_q, seq_q]`.
pub fn vertical_slash_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    vertical_indexes: &Tensor,
    slash_indexes: &Tensor,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    sparse_with_lse(q, k, v, &Pattern::VerticalSlash { vertical_indexes, slash_indexes }, opts, sinks)
}

/// Top-k token attention: `indices [B, seq_q, heads_kv, k]`, -1 for none.
pub fn topk(q: &Tensor, k: &Tensor, v: &Tensor, indices: &Tensor, opts: &AttnOptions, sinks: Option<&Tensor>) -> candle_core::Result<Tensor> {
    sparse(q, k, v, &Pattern::TopK { indices }, opts, sinks)
}

/// [`topk`] and its LSE `[batch, heads_q, seq_q]`.
pub fn topk_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    indices: &Tensor,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    sparse_with_lse(q, k, v, &Pattern::TopK { indices }, opts, sinks)
}

/// Batched BSHD attention under any [`Pattern`].
pub fn sparse(q: &Tensor, k: &Tensor, v: &Tensor, pattern: &Pattern<&Tensor>, opts: &AttnOptions, sinks: Option<&Tensor>) -> candle_core::Result<Tensor> {
    Ok(problem::prefill([q, k, v], pattern, None, opts, sinks, false)?.0)
}

/// [`sparse`] and its LSE `[batch, heads_q, seq_q]`.
pub fn sparse_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pattern: &Pattern<&Tensor>,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    with_lse(problem::prefill([q, k, v], pattern, None, opts, sinks, true)?)
}

/// Varlen attention under any [`Pattern`]: q packed `[total_q, heads_q, head_dim]`, k and v
/// `[total_k, heads_kv, head_dim]`, the sequences in `seqs`; block-sparse and
/// vertical-slash indexes have the batch and the row blocks of `max_seqlen_q`, top-k
/// indices are packed like q (`[total_q, heads_kv, k]`). Causal masks are bottom-right per
/// sequence.
pub fn varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqs: &VarlenSeqs<&Tensor>,
    pattern: &Pattern<&Tensor>,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    Ok(problem::prefill([q, k, v], pattern, Some(seqs), opts, sinks, false)?.0)
}

/// [`varlen`] and its LSE `[heads_q, total_q]`.
pub fn varlen_with_lse(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqs: &VarlenSeqs<&Tensor>,
    pattern: &Pattern<&Tensor>,
    opts: &AttnOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    with_lse(problem::prefill([q, k, v], pattern, Some(seqs), opts, sinks, true)?)
}

/// A decode step: q `[batch, q_len, heads_q, head_dim]` (1 to 16 new tokens per sequence)
/// against `cache`, whose `seqlens_k` count each sequence's keys with the new tokens'; the
/// keys each token attends come from `source` (block lists `[batch, heads_kv]` and
/// `[batch, heads_kv, max_blocks]` of `block_size` keys, or top-k rows `[batch * q_len,
/// heads_kv, topk]`). With `opts.causal`, token `t` sees keys up to `seqlens_k - q_len + t`.
pub fn decode(
    q: &Tensor,
    cache: &DecodeCache<&Tensor>,
    source: &DecodeSource<&Tensor>,
    opts: &DecodeOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    Ok(problem::decode(q, cache, source, opts, sinks, false)?.0)
}

/// [`decode`] and its LSE `[batch, heads_q, q_len]`.
pub fn decode_with_lse(
    q: &Tensor,
    cache: &DecodeCache<&Tensor>,
    source: &DecodeSource<&Tensor>,
    opts: &DecodeOptions,
    sinks: Option<&Tensor>,
) -> candle_core::Result<(Tensor, Tensor)> {
    with_lse(problem::decode(q, cache, source, opts, sinks, true)?)
}

fn with_lse((out, lse): (Tensor, Option<Tensor>)) -> candle_core::Result<(Tensor, Tensor)> {
    match lse {
        Some(lse) => Ok((out, lse)),
        None => Err(args::bad("lse", "the op returned no LSE")),
    }
}
