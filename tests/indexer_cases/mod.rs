//! Shared by tests/indexer_sim.rs and tests/gpu_indexer.rs: random indexer inputs, and the
//! comparison of a device's index rows with the f64 host reference.
#![allow(dead_code)]

use crate::common::Rng;
use sparse_attn::pattern::indexer::{rank_key, HostLayout, IndexerDims, IndexerWeight};
use sparse_attn::AttnDtype;

/// One problem's host tensors.
pub struct Inputs<T, W> {
    pub q: Vec<T>,
    pub k: Vec<T>,
    pub w: Vec<W>,
}

pub fn inputs<T: AttnDtype, W: IndexerWeight>(rng: &mut Rng, dims: &IndexerDims, rows: usize, key_rows: usize, w_of: impl Fn(f32) -> W) -> Inputs<T, W> {
    let (g, h, d) = (dims.groups, dims.heads, dims.head_dim);
    let q = rng.tensor::<T>(rows * g * h * d);
    let k = rng.tensor::<T>(key_rows * g * d);
    let w = (0..rows * g * h).map(|_| w_of(rng.normal() as f32)).collect();
    Inputs { q, k, w }
}

/// Compares the device's rows with the host's: exactly where the host's k-th and (k+1)-th
/// scores are clearly apart, and by the kept score everywhere. Returns the exact rows.
#[allow(clippy::too_many_arguments)]
pub fn compare(label: &str, got: &[i32], scores: &[f64], dims: &IndexerDims, layout: HostLayout<'_>, top_k: usize, causal: bool, want: &[i32]) -> usize {
    assert_eq!(got.len(), want.len(), "{label}: length");
    let mut exact = 0;
    for (row, (g_row, w_row)) in got.chunks_exact(top_k).zip(want.chunks_exact(top_k)).enumerate() {
        let n = layout.place(dims, row / dims.groups, causal).n;
        let s = &scores[row * dims.seq_k..][..dims.seq_k];
        // In range, ascending, -1 only at the end, as many as the candidates allow.
        let kept: Vec<usize> = g_row.iter().take_while(|&&j| j >= 0).map(|&j| j as usize).collect();
        assert_eq!(kept.len(), n.min(top_k), "{label}: row {row} count");
        assert!(g_row[kept.len()..].iter().all(|&j| j == -1), "{label}: row {row} padding");
        assert!(kept.windows(2).all(|p| p[0] < p[1]) && kept.iter().all(|&j| j < n), "{label}: row {row} order / range");
        let mut sorted: Vec<f64> = s[..n].to_vec();
        sorted.sort_by_key(|&x| std::cmp::Reverse(rank_key(x)));
        let clear = n <= top_k || {
            let (a, b) = (sorted[top_k - 1], sorted[top_k]);
            // Equal non-finite scores are computed alike on both sides (IEEE rules, no
            // rounding), so their ties break the same way.
            if rank_key(a) == rank_key(b) {
                !a.is_finite()
            } else {
                !a.is_finite() || !b.is_finite() || (a - b).abs() > 1e-3 * a.abs().max(b.abs())
            }
        };
        if clear {
            assert_eq!(g_row, w_row, "{label}: row {row} differs from the host on a clear gap");
            exact += 1;
        }
        let sum = |idx: &mut dyn Iterator<Item = usize>| idx.map(|j| s[j]).filter(|x| x.is_finite()).sum::<f64>();
        let (got_sum, opt) = (sum(&mut kept.iter().copied()), sum(&mut w_row.iter().take_while(|&&j| j >= 0).map(|&j| j as usize)));
        let scale: f64 = w_row.iter().take_while(|&&j| j >= 0).map(|&j| s[j as usize]).filter(|x| x.is_finite()).map(f64::abs).sum();
        assert!((got_sum - opt).abs() <= 1e-4 * scale + 1e-12, "{label}: row {row} kept {got_sum} vs optimum {opt}");
    }
    exact
}

