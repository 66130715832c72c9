//! DeepSeek sparse attention's lightning indexer (DSA, DeepSeek-V3.2-Exp): the rule that the
//! device path (`kernels/indexer.cu` then `topk_select_rows_f32`, planned by
//! [`crate::plan::indexer`]) implements, and its host reference [`indexer_topk_host`].
//!
//! For query row `t` and index group `g`, the score of key `s` is
//! `score[t, g, s] = sum over h of w[t, g, h] * relu(q[t, g, h] . k[s, g])`, with
//! `relu(x) = x if x > 0 else 0` (so a NaN dot product contributes 0), and row `(t, g)` of the
//! output keeps the `k` keys of highest score by [`select`](super::topk_select)'s order:
//! larger first, NaN lowest, ties to the lower key, listed ascending, `-1` padding, and with
//! `causal` only keys `s <= i + len_k - len_q` (bottom-right per sequence). The output is a
//! [`TopkTokens`](super::TopkTokens) tensor `[batch, seq_q, groups, k]` (its `heads_kv` =
//! `groups`), or packed `[total_q, groups, k]` for varlen and paged queries.
//!
//! Tensors (dense, last dimension contiguous): indexer q `[batch, seq_q, groups, heads,
//! head_dim]` (f16 / bf16), w `[batch, seq_q, groups, heads]` (f32, or q's dtype), indexer
//! k `[batch, seq_k, groups, head_dim]` (q's dtype); varlen packs the rows as `[total_q,
//! ...]` and `[total_k, ...]`; paged k is `[num_pages, page_size, groups, head_dim]`.
//!
//! Mapping from DeepSeek-V3.2-Exp's `Indexer` (inference/model.py): `index_n_heads` = 64 =
//! `heads`, `index_head_dim` = 128 = `head_dim`, one index group (`groups` = 1: MLA's latent
//! KV is shared by every head); q is its `q` after RoPE and the Hadamard rotation, k its
//! cached `k`, and w its `weights_proj(x) * n_heads^-0.5 * softmax_scale` (`softmax_scale` =
//! `head_dim^-0.5`). Multiplying every weight by one positive number scales every score of a
//! row alike, so it never changes the selection; callers may leave it out. Its fp8 path
//! (fp8 q and k with per-block scales `q_scale`, `k_scale`) is out of scope: pass q and k
//! dequantised to bf16. `groups` = heads_kv gives one index set per kv head for GQA models.
//!
//! Precision: the device computes in f32 (fmaf, d then h ascending); the host in f64. The
//! two differ by at most about `(head_dim + heads) * 2^-24 * sum_h |w_h| sum_d |q_hd k_d|`
//! per score, so their selections agree exactly wherever the k-th and (k+1)-th scores of a
//! row are further apart than that, and otherwise the kept scores differ by no more.
//! Non-finite inputs follow IEEE arithmetic in both (an infinite dot product is kept by
//! relu when positive; `0 * inf` is NaN; a NaN score ranks lowest), so a NaN or infinity in
//! q, k or w gives a defined index set of in-range keys.

use crate::checked::product;
use crate::error::{Error, Result};
use crate::shape::{check_len, AttnDtype, Varlen, MAX_SEQ};

/// The indexer head dimensions the kernels are built for.
pub const INDEXER_HEAD_DIMS: &[usize] = &[64, 128];

/// The most `heads * head_dim` of one query row (its heads sit in shared memory as f32).
pub const INDEXER_MAX_QROW: usize = crate::params::INDEXER_MAX_QROW;

/// The sizes of an indexer problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexerDims {
    /// Sequences.
    pub batch: usize,
    /// Query rows per sequence (varlen and paged: the longest).
    pub seq_q: usize,
    /// Keys per sequence (varlen and paged: the most any sequence has); the length of a
    /// workspace row.
    pub seq_k: usize,
    /// Index groups: one index set per group (1 for DSA / MLA; heads_kv for one per kv head).
    pub groups: usize,
    /// Indexer heads per group (`index_n_heads`).
    pub heads: usize,
    /// Indexer head dimension (`index_head_dim`), one of [`INDEXER_HEAD_DIMS`].
    pub head_dim: usize,
}

impl IndexerDims {
    /// Checks the sizes and `k`: every dimension in `1..=i32::MAX`, `head_dim` supported,
    /// `heads * head_dim <= INDEXER_MAX_QROW`, `k` in `1..=seq_k`.
    pub fn validate(&self, k: usize) -> Result<()> {
        for (dim, value) in [
            ("batch", self.batch),
            ("seq_q", self.seq_q),
            ("seq_k", self.seq_k),
            ("groups", self.groups),
            ("heads", self.heads),
            ("head_dim", self.head_dim),
            ("k", k),
        ] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
            if value > MAX_SEQ {
                return Err(Error::DimensionTooLarge { dim, value, max: MAX_SEQ });
            }
        }
        if !INDEXER_HEAD_DIMS.contains(&self.head_dim) {
            return Err(Error::UnsupportedHeadDim { head_dim: self.head_dim, supported: INDEXER_HEAD_DIMS });
        }
        if self.heads * self.head_dim > INDEXER_MAX_QROW {
            return Err(Error::InvalidParameter {
                name: "heads",
                reason: format!("{} heads of head_dim {}: heads * head_dim must be at most {INDEXER_MAX_QROW}", self.heads, self.head_dim),
            });
        }
        if k > self.seq_k {
            return Err(Error::InvalidParameter { name: "k", reason: format!("k = {k} exceeds seq_k = {}", self.seq_k) });
        }
        product("workspace row", &[self.groups, self.seq_k])?;
        Ok(())
    }
}

/// The dtype of the head weights: f32, or the dtype of q and k.
pub trait IndexerWeight: Copy + Default + Send + Sync + bytemuck::Pod + 'static {
    /// Whether the kernel reads the weights as f32 (else as q's dtype).
    const IS_F32: bool;
    /// The exact value.
    fn to_f64(self) -> f64;
}

impl IndexerWeight for f32 {
    const IS_F32: bool = true;
    fn to_f64(self) -> f64 {
        self as f64
    }
}
impl IndexerWeight for half::f16 {
    const IS_F32: bool = false;
    fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
}
impl IndexerWeight for half::bf16 {
    const IS_F32: bool = false;
    fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
}

/// Where the host reference finds each row's sequence and keys.
#[derive(Debug, Clone, Copy)]
pub enum HostLayout<'a> {
    /// `batch * seq_q` rows; sequence `b`'s keys are rows `b * seq_k ..` of k.
    Contiguous,
    /// Packed rows and keys (each sequence's lengths at most the dims' seq_q, seq_k).
    Varlen(&'a Varlen),
    /// Packed rows of `varlen_q` (its key half unused); `seqlens_k[b]` keys of sequence `b`,
    /// key `s` being token `s % page_size` of page `block_table[b * max_pages + s /
    /// page_size]` of k `[num_pages, page_size, groups, head_dim]`.
    Paged {
        /// The queries' sequences.
        varlen_q: &'a Varlen,
        /// Keys per sequence.
        seqlens_k: &'a [i32],
        /// `[batch, max_pages]`.
        block_table: &'a [i32],
        /// Tokens per page.
        page_size: usize,
    },
}

/// One query row's place: its sequence, first key row (contiguous / packed), key count and
/// candidates `0..n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPlace {
    /// The sequence.
    pub b: usize,
    /// Its first key row in k (0 when paged).
    pub key0: usize,
    /// Its keys.
    pub len_k: usize,
    /// The row's candidates: keys `0..n`.
    pub n: usize,
}

impl HostLayout<'_> {
    /// Rows of the index tensor.
    pub fn total_q(&self, dims: &IndexerDims) -> usize {
        match self {
            HostLayout::Contiguous => dims.batch * dims.seq_q,
            HostLayout::Varlen(v) => v.total_q(),
            HostLayout::Paged { varlen_q, .. } => varlen_q.total_q(),
        }
    }

    /// Where row `r` (< total_q) belongs.
    pub fn place(&self, dims: &IndexerDims, r: usize, causal: bool) -> RowPlace {
        let (b, i, len_q) = match self {
            HostLayout::Contiguous => (r / dims.seq_q, r % dims.seq_q, dims.seq_q),
            HostLayout::Varlen(v) | HostLayout::Paged { varlen_q: v, .. } => {
                let cu = v.cu_seqlens_q();
                let b = cu.partition_point(|&c| c as usize <= r).saturating_sub(1).min(v.batch() - 1);
                (b, r - cu[b] as usize, (cu[b + 1] - cu[b]) as usize)
            }
        };
        let (key0, len_k) = match self {
            HostLayout::Contiguous => (b * dims.seq_k, dims.seq_k),
            HostLayout::Varlen(v) => (v.cu_seqlens_k()[b] as usize, v.seqlens(b).1),
            HostLayout::Paged { seqlens_k, .. } => (0, seqlens_k[b].max(0) as usize),
        };
        let n = if causal { (i + len_k + 1).saturating_sub(len_q).min(len_k) } else { len_k };
        RowPlace { b, key0, len_k, n }
    }

    /// The row of k holding key `s` of sequence `b` (`place.key0 + s`, or through the page
    /// table); None for a page entry outside `0..num_pages`.
    fn key_row(&self, place: &RowPlace, s: usize, num_pages: usize) -> Option<usize> {
        match self {
            HostLayout::Paged { block_table, page_size, seqlens_k, .. } => {
                let max_pages = block_table.len() / seqlens_k.len().max(1);
                let page = block_table[place.b * max_pages + s / page_size];
                (page >= 0 && (page as usize) < num_pages).then(|| page as usize * page_size + s % page_size)
            }
            _ => Some(place.key0 + s),
        }
    }
}

/// relu with NaN -> 0, as the kernel computes it.
fn relu(x: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

/// The scores in f64: `[total_q, groups, seq_k]`, each row's candidates `0..n` filled and
/// the rest NaN (never selected; the device does not compute them). A key on a page entry
/// outside the cache scores NaN, as on the device. Checks every length and the layout.
pub fn indexer_scores_host<T: AttnDtype, W: IndexerWeight>(
    q: &[T],
    k: &[T],
    w: &[W],
    dims: &IndexerDims,
    layout: HostLayout<'_>,
    causal: bool,
) -> Result<Vec<f64>> {
    dims.validate(1)?;
    let total_q = layout.total_q(dims);
    let (g, h, d) = (dims.groups, dims.heads, dims.head_dim);
    check_len("q", q.len(), &[total_q, g, h, d])?;
    check_len("w", w.len(), &[total_q, g, h])?;
    let key_rows = match layout {
        HostLayout::Contiguous => dims.batch * dims.seq_k,
        HostLayout::Varlen(v) => v.total_k(),
        HostLayout::Paged { page_size, .. } => {
            if page_size == 0 || !k.len().is_multiple_of(g * d * page_size) {
                return Err(Error::InvalidParameter { name: "k", reason: "a paged cache holds whole pages".into() });
            }
            k.len() / (g * d)
        }
    };
    check_len("k", k.len(), &[key_rows, g, d])?;
    let num_pages = match layout {
        HostLayout::Paged { page_size, .. } => key_rows / page_size,
        _ => 0,
    };
    let qf: Vec<f64> = q.iter().map(|x| x.to_f64()).collect();
    let kf: Vec<f64> = k.iter().map(|x| x.to_f64()).collect();
    let mut scores = vec![f64::NAN; total_q * g * dims.seq_k];
    for r in 0..total_q {
        let place = layout.place(dims, r, causal);
        for gi in 0..g {
            let qrow = &qf[(r * g + gi) * h * d..][..h * d];
            let wrow = &w[(r * g + gi) * h..][..h];
            let out = &mut scores[(r * g + gi) * dims.seq_k..][..dims.seq_k];
            for (s, slot) in out.iter_mut().enumerate().take(place.n.min(dims.seq_k)) {
                let Some(row) = layout.key_row(&place, s, num_pages) else { continue };
                let krow = &kf[(row * g + gi) * d..][..d];
                *slot = qrow.chunks_exact(d).zip(wrow).map(|(qh, wh)| wh.to_f64() * relu(qh.iter().zip(krow).map(|(a, b)| a * b).sum::<f64>())).sum();
            }
        }
    }
    Ok(scores)
}

/// The rank of an f64 score in the selection's order: NaN lowest, then by value (`-0.0`
/// below `+0.0`, as [`order_key`](super::topk_select::order_key) orders f32).
pub fn rank_key(score: f64) -> (bool, u64) {
    if score.is_nan() {
        return (false, 0);
    }
    let bits = score.to_bits();
    (true, if bits >> 63 != 0 { !bits } else { bits | 1 << 63 })
}

/// The `k` best keys of one row of f64 scores among candidates `0..n`, ascending, `-1`
/// padded to `k`.
pub fn select_row_f64(scores: &[f64], n: usize, k: usize) -> Vec<i32> {
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by_key(|&j| (std::cmp::Reverse(rank_key(scores[j])), j));
    order.truncate(k);
    order.sort_unstable();
    let mut out: Vec<i32> = order.iter().map(|&j| j as i32).collect();
    out.resize(k, super::topk::NO_KEY);
    out
}

/// The indexer's top-k on the host: `[total_q, groups, k]` from [`indexer_scores_host`]'s
/// f64 scores by the rule in the module documentation.
pub fn indexer_topk_host<T: AttnDtype, W: IndexerWeight>(
    q: &[T],
    k: &[T],
    w: &[W],
    dims: &IndexerDims,
    layout: HostLayout<'_>,
    top_k: usize,
    causal: bool,
) -> Result<Vec<i32>> {
    dims.validate(top_k)?;
    let scores = indexer_scores_host(q, k, w, dims, layout, causal)?;
    let total_q = layout.total_q(dims);
    let mut out = Vec::with_capacity(total_q * dims.groups * top_k);
    for (row, s) in scores.chunks_exact(dims.seq_k).enumerate() {
        let n = layout.place(dims, row / dims.groups, causal).n;
        out.extend(select_row_f64(s, n, top_k));
    }
    Ok(out)
}
