//! Host attention inputs widened to f64: what the CPU reference and the host estimators
//! read. Its own module so that the estimators (`pattern/`) and the reference
//! (`reference/`) both depend on it without depending on each other.

use crate::error::Result;
use crate::shape::{check_len, AttnDtype, AttnShape};

/// Contiguous BSHD q, k, v widened to f64.
#[derive(Debug, Clone)]
pub struct RefInputs {
    /// The problem the tensors belong to; their lengths must match it (the constructors
    /// check, [`crate::reference`] checks again since the fields are public).
    pub shape: AttnShape,
    /// Queries, contiguous `[batch, seq_q, heads_q, head_dim]`.
    pub q: Vec<f64>,
    /// Keys, contiguous `[batch, seq_k, heads_kv, head_dim]`.
    pub k: Vec<f64>,
    /// Values, contiguous `[batch, seq_k, heads_kv, head_dim]`.
    pub v: Vec<f64>,
    /// Attention sinks, one logit per query head (`[heads_q]`); `None` = none.
    pub sinks: Option<Vec<f64>>,
}

impl RefInputs {
    /// Widens contiguous BSHD tensors of the kernels' storage type.
    pub fn new<T: AttnDtype>(shape: AttnShape, q: &[T], k: &[T], v: &[T]) -> Result<Self> {
        let widen = |x: &[T]| x.iter().map(|e| e.to_f64()).collect::<Vec<_>>();
        Self::from_f64(shape, widen(q), widen(k), widen(v))
    }

    /// Takes contiguous BSHD tensors that are already f64.
    pub fn from_f64(shape: AttnShape, q: Vec<f64>, k: Vec<f64>, v: Vec<f64>) -> Result<Self> {
        check_len("q", q.len(), &[shape.batch(), shape.seq_q(), shape.heads_q(), shape.head_dim()])?;
        check_len("k", k.len(), &[shape.batch(), shape.seq_k(), shape.heads_kv(), shape.head_dim()])?;
        check_len("v", v.len(), &[shape.batch(), shape.seq_k(), shape.heads_kv(), shape.head_dim()])?;
        Ok(Self { shape, q, k, v, sinks: None })
    }

    /// The same inputs with per-head attention sinks (`[heads_q]` logits).
    pub fn with_sinks(self, sinks: &[f32]) -> Self {
        Self { sinks: Some(sinks.iter().map(|&s| f64::from(s)).collect()), ..self }
    }

    pub(crate) fn q_row(&self, b: usize, i: usize, h: usize) -> &[f64] {
        let off = self.shape.q_layout().offset(b, i, h);
        &self.q[off..off + self.shape.head_dim()]
    }

    pub(crate) fn kv_offset(&self, b: usize, j: usize, h_kv: usize) -> usize {
        self.shape.kv_layout().offset(b, j, h_kv)
    }
}
