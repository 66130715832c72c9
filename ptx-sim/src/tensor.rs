//! Warp-wide matrix instructions: `mma.sync` (m16n8k16, m16n8k8) and `ldmatrix`.
//!
//! Fragment layouts follow the PTX ISA sections "Matrix Fragments for mma.m16n8k16 with
//! floating point type" and "Matrix Fragments for mma.m16n8k8" (floating point types). With
//! `groupID = lane >> 2` and `threadID_in_group = lane % 4` (g and t below), each 32-bit
//! register holds two 16-bit elements, the lower-indexed one in the low half:
//! - A (16 x K, row): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..2t+1), and for K = 16
//!   a2 = (g, 2t+8..2t+9), a3 = (g+8, 2t+8..2t+9).
//! - B (K x 8, col): b0 = (rows 2t..2t+1, col g), and for K = 16 b1 = (rows 2t+8..2t+9, col g).
//! - C / D f32: c0, c1 = (g, 2t), (g, 2t+1); c2, c3 = (g+8, 2t), (g+8, 2t+1).
//!   C / D f16: c0 = (g, 2t..2t+1), c1 = (g+8, 2t..2t+1).
//!
//! Products of f16 / bf16 values are exact in f64 and the sum of K of them plus C is
//! accumulated in f64 and rounded once; hardware accumulates with slightly less precision,
//! so results can differ from a GPU in the last bits of f32 (tests use tolerances that say so).

use crate::float::{bf16_bits_to_f32, f16_bits_to_f32, to_f16};
use crate::ir::{MmaElem, Op, Operand, Rnd};

#[inline(always)]
fn elem(t: MmaElem, bits: u16) -> f64 {
    match t {
        MmaElem::F16 => f16_bits_to_f32(bits) as f64,
        MmaElem::Bf16 => bf16_bits_to_f32(bits) as f64,
        MmaElem::F32 => f32::from_bits(bits as u32) as f64,
    }
}

/// Computes an mma for a full warp. `read` gives an operand's value in a lane; the result
/// is (destination registers, how many, value per register per lane).
pub(crate) fn mma(op: &Op, read: impl Fn(Operand, u32) -> u64) -> ([u32; 4], usize, [[u64; 32]; 4]) {
    let Op::Mma { k, ab, cd, acc_c, d, a, b, c } = *op else {
        return ([0; 4], 0, [[0; 32]; 4]);
    };
    let k = k as usize;
    let mut am = [[0f64; 16]; 16];
    let mut bm = [[0f64; 8]; 16];
    let mut cm = [[0f64; 8]; 16];
    for lane in 0..32u32 {
        let (g, t) = ((lane >> 2) as usize, (lane & 3) as usize);
        let half = |v: u64, h: usize| elem(ab, (v >> (16 * h)) as u16);
        // A fragments.
        let a_pos: &[(usize, usize)] = if k == 16 { &[(g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8)] } else { &[(g, 2 * t), (g + 8, 2 * t)] };
        for (i, &(row, col)) in a_pos.iter().enumerate() {
            let v = read(a[i], lane);
            am[row][col] = half(v, 0);
            am[row][col + 1] = half(v, 1);
        }
        // B fragments.
        let b_rows: &[usize] = if k == 16 { &[2 * t, 2 * t + 8] } else { &[2 * t] };
        for (i, &row) in b_rows.iter().enumerate() {
            let v = read(b[i], lane);
            bm[row][g] = half(v, 0);
            bm[row + 1][g] = half(v, 1);
        }
        // C fragments.
        if acc_c == MmaElem::F32 {
            for (i, &ci) in c.iter().enumerate() {
                let (row, col) = (g + 8 * (i / 2), 2 * t + (i % 2));
                cm[row][col] = f32::from_bits(read(ci, lane) as u32) as f64;
            }
        } else {
            for (i, &ci) in c.iter().take(2).enumerate() {
                let v = read(ci, lane);
                cm[g + 8 * i][2 * t] = f16_bits_to_f32(v as u16) as f64;
                cm[g + 8 * i][2 * t + 1] = f16_bits_to_f32((v >> 16) as u16) as f64;
            }
        }
    }
    // Accumulate C + sum over k in order, eight independent columns at a time (the inner
    // loop vectorises; a per-output dot product would be one long dependent chain).
    let mut dm = cm;
    for (m, row) in dm.iter_mut().enumerate() {
        for kk in 0..k {
            let a = am[m][kk];
            for (out, &b) in row.iter_mut().zip(&bm[kk]) {
                *out += a * b;
            }
        }
    }
    let mut vals = [[0u64; 32]; 4];
    let nd = if cd == MmaElem::F32 { 4 } else { 2 };
    for lane in 0..32usize {
        let (g, t) = (lane >> 2, lane & 3);
        if cd == MmaElem::F32 {
            for (i, v) in vals.iter_mut().enumerate() {
                v[lane] = (dm[g + 8 * (i / 2)][2 * t + (i % 2)] as f32).to_bits() as u64;
            }
        } else {
            for (i, v) in vals.iter_mut().take(2).enumerate() {
                let lo = to_f16(dm[g + 8 * i][2 * t], Rnd::Rn) as u64;
                let hi = to_f16(dm[g + 8 * i][2 * t + 1], Rnd::Rn) as u64;
                v[lane] = lo | (hi << 16);
            }
        }
    }
    (d, nd, vals)
}

/// What lane `lane` receives from one 8x8 b16 matrix given its eight 16-byte rows
/// (PTX ISA, "Warp-level matrix load instruction: ldmatrix"): row `lane / 4`, elements `2 * (lane % 4)` and the next;
/// with `.trans`, element `lane / 4` of rows `2 * (lane % 4)` and the next.
pub(crate) fn ldmatrix_lane(rows: &[[u8; 16]], lane: u32, trans: bool) -> u32 {
    let (g, t) = ((lane / 4) as usize, (lane % 4) as usize);
    let e = |r: usize, c: usize| u16::from_le_bytes([rows[r][2 * c], rows[r][2 * c + 1]]) as u32;
    if trans {
        e(2 * t, g) | (e(2 * t + 1, g) << 16)
    } else {
        e(g, 2 * t) | (e(g, 2 * t + 1) << 16)
    }
}
