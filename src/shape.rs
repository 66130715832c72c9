//! Problem shapes, BSHD strides, the varlen form, dtypes and attention options.
//!
//! Layout conventions (README.md, docs/architecture.md): q is `[batch, seq_q, heads_q, head_dim]`, k and v
//! are `[batch, seq_k, heads_kv, head_dim]`, strides are counted in elements and the last
//! dimension is contiguous. Causal masks are aligned bottom-right: query `i` sees key `j`
//! iff `j <= i + (seq_k - seq_q)`.

use crate::error::{Error, Result};

/// Largest sequence length: index tensors are i32.
pub const MAX_SEQ: usize = i32::MAX as usize;

/// Sizes of one (batched) attention problem, validated once by [`AttnShape::new`]: a value
/// of this type always has every dimension in `1..=i32::MAX`, `heads_q % heads_kv == 0`,
/// and q / k / v element counts that fit in `isize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AttnShape {
    batch: usize,
    seq_q: usize,
    seq_k: usize,
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
}

impl AttnShape {
    /// Validates and builds a shape. Every dimension must be at least 1, sequence
    /// lengths must fit in i32, and `heads_q` must be a multiple of `heads_kv` (GQA/MQA).
    pub fn new(
        batch: usize,
        seq_q: usize,
        seq_k: usize,
        heads_q: usize,
        heads_kv: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let shape = Self { batch, seq_q, seq_k, heads_q, heads_kv, head_dim };
        shape.validate()?;
        Ok(shape)
    }

    fn validate(&self) -> Result<()> {
        let dims = [
            ("batch", self.batch),
            ("seq_q", self.seq_q),
            ("seq_k", self.seq_k),
            ("heads_q", self.heads_q),
            ("heads_kv", self.heads_kv),
            ("head_dim", self.head_dim),
        ];
        for (dim, value) in dims {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
            if value > MAX_SEQ {
                return Err(Error::DimensionTooLarge { dim, value, max: MAX_SEQ });
            }
        }
        if !self.heads_q.is_multiple_of(self.heads_kv) {
            return Err(Error::HeadsNotDivisible { heads_q: self.heads_q, heads_kv: self.heads_kv });
        }
        // Element counts of q/out and k/v must be addressable (they are computed unchecked later).
        for (dim, seq, heads) in [("q elements", self.seq_q, self.heads_q), ("k/v elements", self.seq_k, self.heads_kv)] {
            let value = [self.batch, seq, heads, self.head_dim].iter().fold(1usize, |acc, &d| acc.saturating_mul(d));
            if value > isize::MAX as usize {
                return Err(Error::DimensionTooLarge { dim, value, max: isize::MAX as usize });
            }
        }
        Ok(())
    }

    /// Batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Query rows per sequence.
    pub fn seq_q(&self) -> usize {
        self.seq_q
    }
    /// Keys per sequence.
    pub fn seq_k(&self) -> usize {
        self.seq_k
    }
    /// Query heads.
    pub fn heads_q(&self) -> usize {
        self.heads_q
    }
    /// Key/value heads (divides `heads_q`).
    pub fn heads_kv(&self) -> usize {
        self.heads_kv
    }
    /// Elements per head vector.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }

    /// Query heads that share one kv head.
    pub fn group_size(&self) -> usize {
        self.heads_q / self.heads_kv
    }

    /// The kv head that query head `head_q` reads.
    pub fn kv_head(&self, head_q: usize) -> usize {
        head_q / self.group_size()
    }

    /// `seq_k - seq_q`: how far the causal diagonal is shifted right (bottom-right alignment).
    pub fn causal_offset(&self) -> i64 {
        self.seq_k as i64 - self.seq_q as i64
    }

    /// Number of keys query row `i` may see: all `seq_k` without causal masking,
    /// otherwise `clamp(i + seq_k - seq_q + 1, 0, seq_k)`.
    pub fn visible_keys(&self, i: usize, causal: bool) -> usize {
        if !causal {
            return self.seq_k;
        }
        (i as i128 + self.seq_k as i128 - self.seq_q as i128 + 1).clamp(0, self.seq_k as i128) as usize
    }

    /// Contiguous BSHD layout of q.
    pub fn q_layout(&self) -> Bshd {
        Bshd::contiguous(self.seq_q, self.heads_q, self.head_dim)
    }

    /// Contiguous BSHD layout of k and v.
    pub fn kv_layout(&self) -> Bshd {
        Bshd::contiguous(self.seq_k, self.heads_kv, self.head_dim)
    }

    /// Elements of a contiguous q (and output) tensor.
    pub fn q_len(&self) -> usize {
        self.batch * self.seq_q * self.heads_q * self.head_dim
    }

    /// Elements of a contiguous k or v tensor.
    pub fn kv_len(&self) -> usize {
        self.batch * self.seq_k * self.heads_kv * self.head_dim
    }

    /// Elements of the LSE tensor `[batch, heads_q, seq_q]`.
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads_q * self.seq_q
    }
}

/// Strides (in elements) of a BSHD tensor; the last (head_dim) dimension is contiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bshd {
    /// Elements from `[b, s, h, d]` to `[b + 1, s, h, d]` (next batch entry).
    pub batch: usize,
    /// Elements from `[b, s, h, d]` to `[b, s + 1, h, d]` (next token).
    pub seq: usize,
    /// Elements from `[b, s, h, d]` to `[b, s, h + 1, d]` (next head).
    pub head: usize,
}

impl Bshd {
    /// Densely packed `[batch, seq, heads, head_dim]`. Saturating, so absurd sizes give
    /// strides that validation rejects instead of an overflow panic.
    pub fn contiguous(seq: usize, heads: usize, head_dim: usize) -> Self {
        let row = heads.saturating_mul(head_dim);
        Self { batch: seq.saturating_mul(row), seq: row, head: head_dim }
    }

    /// Offset of element `[b, s, h, 0]`.
    pub fn offset(&self, b: usize, s: usize, h: usize) -> usize {
        b * self.batch + s * self.seq + h * self.head
    }

    /// Checks that a buffer of `len` elements holds every element of a
    /// `[batch, seq, heads, head_dim]` tensor with these strides, and, for outputs, that no
    /// two elements share an address.
    pub fn validate(
        &self,
        tensor: &'static str,
        dims: [usize; 4],
        len: usize,
        is_output: bool,
    ) -> Result<()> {
        let [batch, seq, heads, head_dim] = dims;
        // Offsets are computed in 64-bit on the device, but keep the host arithmetic exact too.
        let span = |stride: usize, extent: usize| stride.checked_mul(extent.saturating_sub(1));
        let overflow = || Error::InvalidStrides { tensor, reason: "addressed range overflows usize".into() };
        let needed = [span(self.batch, batch), span(self.seq, seq), span(self.head, heads)]
            .into_iter()
            .try_fold(head_dim, |acc, s| s.and_then(|s| acc.checked_add(s)))
            .ok_or_else(overflow)?;
        if needed > len {
            return Err(Error::BufferTooSmall { tensor, needed, len });
        }
        if is_output {
            self.check_no_overlap(tensor, [batch, seq, heads], head_dim)?;
        }
        Ok(())
    }

    /// Sorting the three outer dimensions by stride, each stride must step past everything
    /// the smaller dimensions span; otherwise two output elements would alias.
    fn check_no_overlap(&self, tensor: &'static str, extents: [usize; 3], head_dim: usize) -> Result<()> {
        let mut dims: Vec<(usize, usize, &str)> = [
            (self.batch, extents[0], "batch"),
            (self.seq, extents[1], "seq"),
            (self.head, extents[2], "head"),
        ]
        .into_iter()
        .filter(|&(_, extent, _)| extent > 1)
        .collect();
        dims.sort_by_key(|&(stride, _, _)| stride);
        let mut covered = head_dim;
        for (stride, extent, name) in dims {
            if stride < covered {
                return Err(Error::InvalidStrides {
                    tensor,
                    reason: format!("{name} stride {stride} is smaller than the {covered} elements it must step over, so output elements overlap"),
                });
            }
            covered += stride * (extent - 1);
        }
        Ok(())
    }
}

/// Sizes of one merge of partial attention states (`crate::plan::merge`), validated once
/// by [`MergeShape::new`]: `states` partial states of each of `batch x seq x heads` rows of
/// `head_dim` elements. A varlen batch is batch 1 with `seq = total_q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MergeShape {
    states: usize,
    batch: usize,
    seq: usize,
    heads: usize,
    head_dim: usize,
}

impl MergeShape {
    /// head_dim must be a multiple of this: the merge kernels access rows 4 elements at a
    /// time.
    pub const HEAD_DIM_MULTIPLE: usize = 4;

    /// Validates and builds a shape: every size at least 1 and at most `i32::MAX`, head_dim
    /// a multiple of [`MergeShape::HEAD_DIM_MULTIPLE`], and the element count of the
    /// contiguous partial outputs (`states x batch x seq x heads x head_dim`) within `i64`.
    pub fn new(states: usize, batch: usize, seq: usize, heads: usize, head_dim: usize) -> Result<Self> {
        for (dim, value) in [("states", states), ("batch", batch), ("seq", seq), ("heads", heads), ("head_dim", head_dim)] {
            if value == 0 {
                return Err(Error::ZeroDimension { dim });
            }
            crate::checked::to_i32(dim, value)?;
        }
        if !head_dim.is_multiple_of(Self::HEAD_DIM_MULTIPLE) {
            return Err(Error::InvalidParameter {
                name: "head_dim",
                reason: format!("{head_dim} is not a multiple of {} (the merge kernels access rows in chunks of 4 elements)", Self::HEAD_DIM_MULTIPLE),
            });
        }
        let mut acc: u64 = 1;
        for (dim, value) in [("states", states), ("batch", batch), ("seq", seq), ("heads", heads), ("head_dim", head_dim)] {
            let max = i64::MAX as u64 / acc;
            if value as u64 > max {
                return Err(Error::DimensionTooLarge { dim, value, max: max as usize });
            }
            acc *= value as u64;
        }
        Ok(Self { states, batch, seq, heads, head_dim })
    }

    /// Partial states per row.
    pub fn states(&self) -> usize {
        self.states
    }
    /// Batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }
    /// Tokens per batch entry (a varlen batch: batch 1, `seq = total_q`).
    pub fn seq(&self) -> usize {
        self.seq
    }
    /// Heads.
    pub fn heads(&self) -> usize {
        self.heads
    }
    /// Elements per row.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
    /// Output rows: `batch x seq x heads`.
    pub fn rows(&self) -> usize {
        self.batch * self.seq * self.heads
    }
    /// Elements of contiguous partial outputs `[states, batch, seq, heads, head_dim]`.
    pub fn partial_out_len(&self) -> usize {
        self.states * self.out_len()
    }
    /// Elements of contiguous partial LSEs `[states, batch, heads, seq]`.
    pub fn partial_lse_len(&self) -> usize {
        self.states * self.lse_len()
    }
    /// Elements of a contiguous output `[batch, seq, heads, head_dim]`.
    pub fn out_len(&self) -> usize {
        self.rows() * self.head_dim
    }
    /// Elements of a contiguous LSE `[batch, heads, seq]`.
    pub fn lse_len(&self) -> usize {
        self.rows()
    }

    // Sizes as i64, for strides: every product of them fits (checked by `new`).
    pub(crate) fn dims_i64(&self) -> [i64; 5] {
        [self.states, self.batch, self.seq, self.heads, self.head_dim].map(|d| d as i64)
    }
}

/// Variable-length batches packed as `[total, heads, head_dim]` with
/// `cu_seqlens = [0, len_0, len_0 + len_1, ...]` (i32, `batch + 1` entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Varlen {
    cu_seqlens_q: Vec<i32>,
    cu_seqlens_k: Vec<i32>,
}

impl Varlen {
    /// Validates both prefix-sum arrays: same batch, starting at 0, non-decreasing.
    pub fn new(cu_seqlens_q: Vec<i32>, cu_seqlens_k: Vec<i32>) -> Result<Self> {
        check_cu_seqlens("cu_seqlens_q", &cu_seqlens_q)?;
        check_cu_seqlens("cu_seqlens_k", &cu_seqlens_k)?;
        if cu_seqlens_q.len() != cu_seqlens_k.len() {
            return Err(Error::InvalidCuSeqlens {
                tensor: "cu_seqlens_k",
                reason: format!(
                    "has {} entries but cu_seqlens_q has {}; both must be batch + 1",
                    cu_seqlens_k.len(),
                    cu_seqlens_q.len()
                ),
            });
        }
        Ok(Self { cu_seqlens_q, cu_seqlens_k })
    }

    /// Number of sequences (`cu_seqlens_q.len() - 1`, at least 1).
    pub fn batch(&self) -> usize {
        self.cu_seqlens_q.len() - 1
    }
    /// Row offsets of each sequence in the packed q: sequence `b` occupies rows
    /// `cu_seqlens_q[b]..cu_seqlens_q[b + 1]`.
    pub fn cu_seqlens_q(&self) -> &[i32] {
        &self.cu_seqlens_q
    }
    /// Row offsets of each sequence in the packed k and v, as for
    /// [`Varlen::cu_seqlens_q`].
    pub fn cu_seqlens_k(&self) -> &[i32] {
        &self.cu_seqlens_k
    }
    /// Packed rows of q (and the output).
    pub fn total_q(&self) -> usize {
        *self.cu_seqlens_q.last().unwrap_or(&0) as usize
    }
    /// Packed rows of k and v.
    pub fn total_k(&self) -> usize {
        *self.cu_seqlens_k.last().unwrap_or(&0) as usize
    }
    /// `(seq_q, seq_k)` of sequence `b`; `(0, 0)` for `b >= batch` (no such sequence, so
    /// no rows).
    pub fn seqlens(&self, b: usize) -> (usize, usize) {
        let len = |cu: &[i32]| match (cu.get(b), b.checked_add(1).and_then(|n| cu.get(n))) {
            // Non-decreasing, checked by `new`.
            (Some(&start), Some(&end)) => (end - start) as usize,
            _ => 0,
        };
        (len(&self.cu_seqlens_q), len(&self.cu_seqlens_k))
    }
    /// Longest query and key sequence: what grids are sized for.
    pub fn max_seqlens(&self) -> (usize, usize) {
        (0..self.batch()).map(|b| self.seqlens(b)).fold((0, 0), |(mq, mk), (q, k)| (mq.max(q), mk.max(k)))
    }
}

fn check_cu_seqlens(tensor: &'static str, cu: &[i32]) -> Result<()> {
    let bad = |reason: String| Err(Error::InvalidCuSeqlens { tensor, reason });
    if cu.len() < 2 {
        return bad(format!("needs batch + 1 >= 2 entries, got {}", cu.len()));
    }
    if cu[0] != 0 {
        return bad(format!("must start at 0, starts at {}", cu[0]));
    }
    for (b, pair) in cu.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return bad(format!("entry {} ({}) is below entry {} ({})", b + 1, pair[1], b, pair[0]));
        }
    }
    Ok(())
}

/// Element types the kernels read and write; accumulation is always f32 (f64 in the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 half precision ([`half::f16`]).
    F16,
    /// bfloat16: f32's exponent range with an 8-bit significand ([`half::bf16`]).
    BF16,
}

impl DType {
    /// The lowercase name kernel instantiations carry in their symbol, `"f16"` or
    /// `"bf16"` (e.g. `attn_fwd_block_sparse_bf16_hd128`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

/// A storage type of q, k, v and the output.
///
/// Implemented for [`half::f16`] and [`half::bf16`]; the launch functions pick the kernel
/// instantiation through [`AttnDtype::DTYPE`].
pub trait AttnDtype: Copy + Send + Sync + bytemuck::Pod + Default + 'static {
    /// The runtime tag of this type, which selects the kernel instantiation.
    const DTYPE: DType;
    /// Widens exactly (every f16 and bf16 value is an f32).
    fn to_f32(self) -> f32;
    /// Rounds to the nearest representable value (ties to even); out-of-range values
    /// become infinite.
    fn from_f32(x: f32) -> Self;
    /// Widens exactly, through f32.
    fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
}

impl AttnDtype for half::f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::f16::from_f32(x)
    }
}

impl AttnDtype for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        half::bf16::to_f32(self)
    }
    fn from_f32(x: f32) -> Self {
        half::bf16::from_f32(x)
    }
}

/// Options shared by every attention call.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttnOptions {
    /// Bottom-right aligned causal mask.
    pub causal: bool,
    /// Multiplies q·k before the softmax; `None` means `1 / sqrt(head_dim)`.
    pub softmax_scale: Option<f32>,
    /// Also produce the natural-log LSE, f32 `[batch, heads_q, seq_q]`.
    pub return_lse: bool,
    /// Logit softcap (Gemma 2): each scaled score `x` becomes `cap * tanh(x / cap)` before
    /// the softmax. `None` = off; `Some(cap)` needs a finite `cap > 0`.
    pub softcap: Option<f32>,
    /// Sliding window at token granularity: a row sees no key more than `window_left`
    /// positions below its bottom-right diagonal (row `i` of `seq_q` rows over `seq_k` keys:
    /// keys `>= i + seq_k - seq_q - window_left`), intersected with the pattern and the
    /// causal mask. `Some(0)` keeps only the diagonal key; `None` = no window. At most
    /// `i32::MAX`.
    pub window_left: Option<usize>,
}

impl AttnOptions {
    /// Causal attention with the default scale and no LSE: shorthand for
    /// `AttnOptions { causal: true, ..Default::default() }`.
    pub fn causal() -> Self {
        Self { causal: true, ..Self::default() }
    }

    /// The scale to use for `head_dim`, validated: an explicit scale must be finite and
    /// positive, and the default needs `head_dim >= 1` (1/sqrt(0) is infinite). This is the
    /// rule of the f64 CPU reference; the kernels need the narrower
    /// [`AttnOptions::kernel_scale`].
    pub fn scale(&self, head_dim: usize) -> Result<f32> {
        match self.softmax_scale {
            None if head_dim == 0 => Err(Error::ZeroDimension { dim: "head_dim" }),
            None => Ok(1.0 / (head_dim as f32).sqrt()),
            Some(value) if value.is_finite() && value > 0.0 => Ok(value),
            Some(value) => Err(Error::InvalidSoftmaxScale { value, reason: "it must be finite and > 0".into() }),
        }
    }

    /// Whether any option that only the `_opt` kernel variants implement is on (softcap or
    /// window; sinks, a tensor, are the buffers' part).
    pub fn has_score_options(&self) -> bool {
        self.softcap.is_some() || self.window_left.is_some()
    }

    /// The validated softcap, `None` when off: a cap must be finite and > 0.
    pub fn checked_softcap(&self) -> Result<Option<f32>> {
        match self.softcap {
            Some(cap) if !(cap.is_finite() && cap > 0.0) => Err(Error::InvalidParameter {
                name: "softcap",
                reason: format!("{cap} is not a finite value > 0 (use None for no softcap)"),
            }),
            cap => Ok(cap),
        }
    }

    /// The validated window as the kernels take it: -1 for none, else `window_left`, which
    /// must fit an i32.
    pub fn checked_window_left(&self) -> Result<i32> {
        match self.window_left {
            None => Ok(-1),
            Some(w) => i32::try_from(w).map_err(|_| Error::InvalidParameter {
                name: "window_left",
                reason: format!("{w} is larger than {} (use None for no window)", i32::MAX),
            }),
        }
    }

    /// The scale the kernels run with for `dtype` inputs of `head_dim`: [`AttnOptions::scale`],
    /// and inside [`kernel_scale_range`], outside which the scale itself turns scores into
    /// NaN or rows of zeros. Every launch checks it; the error names the bound and why.
    pub fn kernel_scale(&self, head_dim: usize, dtype: DType) -> Result<f32> {
        let scale = self.scale(head_dim)?;
        let (min, max) = kernel_scale_range(dtype, head_dim);
        if scale < min {
            return Err(Error::InvalidSoftmaxScale {
                value: scale,
                reason: format!(
                    "it must be at least {min:e}: below, scale * log2(e) is an f32 subnormal, which the kernels (built with \
                     fast math) flush to 0, and a masked score times 0 is NaN"
                ),
            });
        }
        if scale > max {
            return Err(Error::InvalidSoftmaxScale {
                value: scale,
                reason: format!(
                    "at head_dim {head_dim} it must be at most {max:e}: above, a score of {} inputs up to {} in magnitude \
                     times scale * log2(e) overflows f32, which gives NaN or a row of zeros",
                    dtype.name(),
                    kernel_input_bound(dtype)
                ),
            });
        }
        Ok(scale)
    }
}

/// The input magnitude for which [`kernel_scale_range`] guarantees finite scaled scores:
/// f16's largest finite value for f16. bf16 takes the same 65504 rather than its own
/// largest value (about 3.4e38, f32's range): with that, head_dim * max^2 exceeds f32::MAX
/// at any head_dim, so q.k itself can overflow in the f32 accumulator before any scale is
/// applied (an infinite score; README, "Non-finite inputs and the softmax scale"), and the
/// bound it gives (below 1e-40) would refuse every useful scale.
fn kernel_input_bound(dtype: DType) -> f64 {
    match dtype {
        DType::F16 | DType::BF16 => 65504.0,
    }
}

/// The softmax scales the kernels accept for `dtype` inputs of `head_dim`, `(min, max)`,
/// both inclusive; at head_dim 64 about (8.1e-39, 4.3e26), at 128 about (8.1e-39, 2.1e26).
///
/// The kernels keep raw f32 scores s = q.k and fold the scale into exp2: with
/// `scale_log2 = scale * log2(e)` (an f32 product) and m the row's running maximum, each
/// probability is `exp2(s * scale_log2 - m * scale_log2)` (one FMA), and the LSE comes from
/// `m * scale_log2`. They are built with fast math, so f32 subnormals are flushed to 0.
///
/// - min: `scale_log2` must be a normal f32. A subnormal one is flushed to 0, and a masked
///   score (-inf) times 0 is NaN, in every row.
/// - max: `m * scale_log2` and `s * scale_log2` must stay finite. Past f32::MAX, a row's
///   base `m * scale_log2` is +inf: every probability becomes exp2(-inf) = 0 (the row reads
///   as one that saw no key: output 0, LSE -inf), and the rescale of a row whose maximum
///   grew computes inf - inf = NaN. A score of finite inputs of magnitude at most M
///   (`kernel_input_bound`) is at most head_dim * M^2 in magnitude (head_dim products of at
///   most M^2 each); the f32 accumulation and the rounding of `scale_log2` add a relative
///   error below head_dim * 2^-23, which a factor 2 covers. So
///   `scale_log2 * 2 * head_dim * M^2 <= f32::MAX`.
///
/// Both ends are far from any useful scale (1/sqrt(head_dim) and 1 are deep inside), so a
/// scale outside is an error rather than clamped. Inside, the scale cannot overflow; the
/// logits themselves still have a range: the FMA form rounds `m * scale_log2` to f32, and
/// every probability of the row carries that rounding error as a factor exp2(err), up to
/// 2^(ulp / 2). Past |m * scale_log2| of about 2^28 (f16) or 2^31 (bf16), P overflows or
/// underflows (NaN or zeros), as in FlashAttention-2 (README, "Non-finite inputs and the
/// softmax scale").
///
/// The scale must also be positive ([`AttnOptions::scale`]): the running maximum is of raw
/// scores, which orders them as the softmax does only for a positive scale; a negative
/// scale would also turn masked -inf scores into +inf, and 0 would turn them into NaN.
/// Negate q instead.
pub fn kernel_scale_range(dtype: DType, head_dim: usize) -> (f32, f32) {
    let log2e = std::f64::consts::LOG2_E;
    // The smallest f32 whose f32 product with log2(e) is normal, found from the f64 quotient
    // and stepped to the exact f32 boundary (the kernels' scale_log2 is that f32 product).
    let mut min = (f32::MIN_POSITIVE as f64 / log2e) as f32;
    while min * std::f32::consts::LOG2_E < f32::MIN_POSITIVE {
        min = f32::from_bits(min.to_bits() + 1);
    }
    while f32::from_bits(min.to_bits() - 1) * std::f32::consts::LOG2_E >= f32::MIN_POSITIVE {
        min = f32::from_bits(min.to_bits() - 1);
    }
    let m = kernel_input_bound(dtype);
    let max = f32::MAX as f64 / (log2e * 2.0 * head_dim.max(1) as f64 * m * m);
    // Rounded down so that the f32 bound itself satisfies the f64 inequality.
    let mut max_f32 = max as f32;
    if max_f32 as f64 > max {
        max_f32 = f32::from_bits(max_f32.to_bits() - 1);
    }
    (min, max_f32)
}

/// Checks that a host tensor has exactly `dims.product()` elements.
pub(crate) fn check_len(tensor: &'static str, len: usize, dims: &[usize]) -> Result<()> {
    let expected = crate::checked::product(tensor, dims)?;
    if len != expected {
        let dims = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ");
        return Err(Error::WrongLength { tensor, expected, dims, len });
    }
    Ok(())
}
