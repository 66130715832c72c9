//! The sparse kernels at about 10% of dense work: what they execute against the kept share,
//! and what K/V traffic costs against what the kept 64 x 64 tiles need.

use half::bf16;
use sparse_attn::pattern::{BlockSparse, VerticalSlash, BLOCK_M, BLOCK_N};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::{AttnOptions, AttnShape, SparsePattern};

use crate::Result;

/// Bytes of one bf16 element.
const ELEM: usize = 2;

/// A block mask over `shape` keeping one key block in ten per row block (non-causal), at an
/// offset that moves with the row block and head so the kept columns differ between rows.
fn block_mask(shape: &AttnShape) -> (BlockSparse, usize) {
    let (mb, nb, h) = (shape.seq_q().div_ceil(BLOCK_M), shape.seq_k().div_ceil(BLOCK_N), shape.heads_q());
    let mask: Vec<bool> = (0..h * mb * nb).map(|i| (i % nb + 3 * ((i / nb) % mb) + 5 * (i / (mb * nb))) % 10 == 0).collect();
    let kept = mask.iter().filter(|&&x| x).count();
    (BlockSparse::from_block_mask(1, h, mb, nb, &mask).expect("a valid block mask"), kept)
}

/// A MInference-like vertical-slash descriptor (causal): `verticals` key columns spread
/// evenly over the keys, and `slashes` diagonals at distances 0, 1, ... from the diagonal
/// (MInference's slashes crowd near the diagonal; evenly spread ones would each cost a tile).
fn vertical_slash(shape: &AttnShape, verticals: usize, slashes: usize) -> Result<VerticalSlash> {
    let (s, h) = (shape.seq_k(), shape.heads_q());
    let v: Vec<i32> = (0..h).flat_map(|_| (0..verticals).map(move |i| (i * s / verticals) as i32)).collect();
    let sl: Vec<i32> = (0..h).flat_map(|_| (0..slashes).rev().map(|d| d as i32)).collect();
    Ok(VerticalSlash::new(1, h, verticals, slashes, v, sl)?)
}

/// Prints the sparse figures; `dense_mma` is the dense kernel's mma count, non-causal then causal.
pub fn report(sim: &SimBackend, shape: &AttnShape, q: &[bf16], k: &[bf16], v: &[bf16], dense_mma: [u64; 2]) -> Result<()> {
    let tensors = HostTensors { q, k, v, sinks: None };
    let d = shape.head_dim();

    let (blocks, kept) = block_mask(shape);
    let total_tiles = shape.seq_q().div_ceil(BLOCK_M) * shape.seq_k().div_ceil(BLOCK_N) * shape.heads_q();
    let share = kept as f64 / total_tiles as f64;
    let c = sim.attention(shape, &AttnOptions { causal: false, ..Default::default() }, tensors, &blocks.source(shape)?)?.counters;
    let mma_ratio = c.mma as f64 / dense_mma[0] as f64;
    let q_bytes = shape.q_len() * ELEM;
    // Q, K and V arrive by cp.async, 16 bytes a lane, 32 lanes a warp-instruction (every
    // tile of this shape is whole, so no lane is idle); the index entries by plain loads,
    // which the simulator counts once per lane that reads them (every thread of the CTA
    // reads each entry; a GPU serves a warp's same-address read as one transaction).
    let copied = c.cp_async as usize * 32 * 16;
    let kv = copied - q_bytes;
    let index = c.global_load_bytes as usize - copied;
    let kv_bound = kept * BLOCK_N * d * ELEM * 2;
    println!(
        "block-sparse, {:.1}% of tiles kept (non-causal): mma {:.4} of dense = {:.3} x the kept share; K/V bytes {} vs kept tiles' K/V {} ({:.3}); index reads {} bytes, counted per lane",
        100.0 * share,
        mma_ratio,
        mma_ratio / share,
        kv,
        kv_bound,
        kv as f64 / kv_bound as f64,
        index
    );

    // 64 verticals + 40 slashes is about 10% of the causal elements at seq 2048.
    let (nv, ns) = (64, 40);
    let vs = vertical_slash(shape, nv, ns)?;
    let density = vs.element_mask(shape, true)?.density(shape, true);
    let c = sim.attention(shape, &AttnOptions { causal: true, ..Default::default() }, tensors, &vs.source(shape)?)?.counters;
    println!(
        "vertical-slash, {:.1}% of causal elements ({nv} verticals + {ns} slashes): mma {:.4} of dense causal",
        100.0 * density,
        c.mma as f64 / dense_mma[1] as f64
    );
    Ok(())
}
