//! A timing MODEL (not a measurement): simulator counts mapped to time on a GPU, calibrated
//! by FlashAttention-2 alone, and this crate's kernels stated as ratios to FA2 in the same
//! model.
//!
//! Structure: a launch's counts are linear in its CTAs and in the (CTA, key tile) iterations
//! it runs, `count = ctas * per_cta + tiles * per_tile`, fitted per kernel and mask from two
//! simulated sequence lengths. Its time is the slowest of four resources, each at its peak
//! rate over all SMs, divided by the share of the last wave's CTA slots that are filled:
//! tensor cores (mma.sync m16n8k16 = 4096 FLOP), instruction issue (4 warp-instructions
//! per clock per SM), shared memory (1 wavefront of 128 bytes per clock per SM) and HBM.
//! HBM traffic is the compulsory one (q, k, v, out and LSE once): the simulator's global
//! bytes count every re-read of a K/V tile by another CTA, and those mostly hit L2, whose
//! bandwidth this model does not have a cited figure for. So the simulator's global bytes
//! are reported beside the model but do not enter it.
//! One factor `k` (time = k * modelled time) is fitted to one published FA2 figure; the
//! residuals at the other published shapes say how much of FA2's behaviour the structure
//! explains.
//!
//! GPU constants (NVIDIA A100 and H100 datasheets / architecture whitepapers):
//! - A100 SXM4 80GB: 108 SMs, 1410 MHz boost, 312 TFLOP/s dense FP16/BF16 tensor
//!   (= 108 SMs x 2048 FLOP/clock x 1.41 GHz), 2039 GB/s HBM2e;
//! - H100 SXM5 80GB: 132 SMs, 989.4 TFLOP/s dense FP16/BF16 tensor (= 132 SMs x 4096
//!   FLOP/clock x 1.83 GHz), 3.35 TB/s HBM3. mma.sync, which FA2 and this crate use, does
//!   not reach the wgmma peak on H100; `k` absorbs that;
//! - both: 4 warp schedulers per SM issuing one warp-instruction per clock each, and 32
//!   shared-memory banks of 4 bytes (128 bytes, one wavefront, per clock per SM).
//!
//! Published FA2 forward figures: FlashAttention-3 paper (Shah et al., 2024), Figure
//! "Attention forward speed (H100 80GB SXM5)", FP16, batch x seqlen = 16K, hidden 2048,
//! as shipped in the flash-attention repository at assets/flash3_fp16_fwd.png (commit
//! 0251105a2fb19d2957484b7f023cd8c115286ced). FLOPs as FA's benchmarks count them:
//! 4 * batch * seqlen^2 * heads * head_dim, halved for causal. The repository's A100 figure
//! (assets/flash2_a100_fwd_bwd_benchmark.png) is forward + backward, so the A100 model is
//! not calibrated here.

/// One GPU's peak rates.
pub struct Gpu {
    pub name: &'static str,
    sms: f64,
    clock_hz: f64,
    mma_per_clock_per_sm: f64,
    hbm_bytes_per_s: f64,
}

/// FLOPs of one m16n8k16 mma.
const MMA_FLOP: f64 = 16.0 * 8.0 * 16.0 * 2.0;
const ISSUE_PER_CLOCK_PER_SM: f64 = 4.0;
const WAVEFRONTS_PER_CLOCK_PER_SM: f64 = 1.0;

pub const H100: Gpu = Gpu { name: "H100 SXM5", sms: 132.0, clock_hz: 1.83e9, mma_per_clock_per_sm: 4096.0 / MMA_FLOP, hbm_bytes_per_s: 3.35e12 };
pub const A100: Gpu = Gpu { name: "A100 SXM4", sms: 108.0, clock_hz: 1.41e9, mma_per_clock_per_sm: 2048.0 / MMA_FLOP, hbm_bytes_per_s: 2.039e12 };

/// The four modelled resources' counts: mma, warp-instructions, smem wavefronts, global bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Work(pub [f64; 4]);

/// A launch's geometry: CTAs, and (CTA, key tile) iterations over all CTAs.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub ctas: f64,
    pub tiles: f64,
}

/// Geometry of a kernel with `block_m`-row CTAs and `block_n`-key tiles, on `batch * heads`
/// independent problems of `seq` x `seq` (bottom-right causal when `causal`).
pub fn geometry(batch: usize, heads: usize, seq: usize, block_m: usize, block_n: usize, causal: bool) -> Geometry {
    let row_blocks = seq.div_ceil(block_m);
    let tiles_per_problem: usize = (0..row_blocks)
        .map(|m| if causal { (((m + 1) * block_m).min(seq)).div_ceil(block_n) } else { seq.div_ceil(block_n) })
        .sum();
    let problems = (batch * heads) as f64;
    Geometry { ctas: problems * row_blocks as f64, tiles: problems * tiles_per_problem as f64 }
}

/// `count = ctas * per_cta + tiles * per_tile`, per resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    per_cta: [f64; 4],
    per_tile: [f64; 4],
}

impl Linear {
    /// Solves the two equations given by two simulated launches of different geometry.
    pub fn fit(a: (Geometry, Work), b: (Geometry, Work)) -> Self {
        let (ga, wa) = a;
        let (gb, wb) = b;
        let det = ga.ctas * gb.tiles - gb.ctas * ga.tiles;
        let mut per_cta = [0.0; 4];
        let mut per_tile = [0.0; 4];
        for r in 0..4 {
            per_cta[r] = (wa.0[r] * gb.tiles - wb.0[r] * ga.tiles) / det;
            per_tile[r] = (ga.ctas * wb.0[r] - gb.ctas * wa.0[r]) / det;
        }
        Linear { per_cta, per_tile }
    }

    pub fn predict(&self, g: Geometry) -> Work {
        let mut w = [0.0; 4];
        for (r, slot) in w.iter_mut().enumerate() {
            *slot = g.ctas * self.per_cta[r] + g.tiles * self.per_tile[r];
        }
        Work(w)
    }
}

/// Modelled seconds (before the calibration factor) for `work` in `ctas` CTAs, with
/// `blocks_per_sm` resident at a time, and the resource that bounds it.
pub fn seconds(gpu: &Gpu, work: Work, hbm_bytes: f64, ctas: f64, blocks_per_sm: u32) -> (f64, &'static str) {
    let [mma, instr, wavefronts, _l2_bytes] = work.0;
    let per_s = gpu.sms * gpu.clock_hz;
    let resources = [
        (mma / (per_s * gpu.mma_per_clock_per_sm), "mma"),
        (instr / (per_s * ISSUE_PER_CLOCK_PER_SM), "issue"),
        (wavefronts / (per_s * WAVEFRONTS_PER_CLOCK_PER_SM), "smem"),
        (hbm_bytes / gpu.hbm_bytes_per_s, "hbm"),
    ];
    let (busiest, bound) = resources.into_iter().fold((0.0, "mma"), |a, b| if b.0 > a.0 { b } else { a });
    let slots = gpu.sms * f64::from(blocks_per_sm.max(1));
    let waves = (ctas / slots).ceil();
    (busiest / (ctas / (waves * slots)), bound)
}

/// FA2's published forward figures on H100 (TFLOP/s, FP16) at seqlen 512 .. 16K, from the
/// FlashAttention-3 paper's forward-speed figure: (head_dim, causal, [6 values]).
pub const FA2_H100_FORWARD: &[(usize, bool, [f64; 6])] = &[
    (64, false, [282.0, 306.0, 318.0, 321.0, 322.0, 324.0]),
    (64, true, [180.0, 229.0, 262.0, 284.0, 295.0, 299.0]),
    (128, false, [309.0, 350.0, 362.0, 366.0, 370.0, 370.0]),
    (128, true, [191.0, 260.0, 298.0, 319.0, 333.0, 335.0]),
];
/// The sequence lengths of [`FA2_H100_FORWARD`]; batch = 16384 / seqlen, heads = 2048 / head_dim.
pub const PUBLISHED_SEQS: [usize; 6] = [512, 1024, 2048, 4096, 8192, 16384];

/// Compulsory HBM bytes of a bf16/f16 forward pass: q, k, v and out once, LSE in f32.
pub fn compulsory_bytes(batch: usize, heads: usize, seq: usize, head_dim: usize) -> f64 {
    let rows = (batch * heads * seq) as f64;
    rows * (4.0 * head_dim as f64 * 2.0 + 4.0)
}

/// FLOPs of one forward pass as FA's benchmarks count them.
pub fn flops(batch: usize, heads: usize, seq: usize, head_dim: usize, causal: bool) -> f64 {
    let f = 4.0 * batch as f64 * (seq as f64).powi(2) * heads as f64 * head_dim as f64;
    if causal {
        f / 2.0
    } else {
        f
    }
}

/// What a GPU bench's model needs from one perf_report run
/// (`SPARSE_ATTN_PERF_MODEL_OUT=<path>` writes it; `benches/common/model.rs` reads it): the
/// calibration factor `k` and this crate's dense kernel fitted per (head_dim, causal), with
/// its resident blocks per SM on sm_80 and sm_90.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub k: f64,
    pub fits: Vec<FitRecord>,
}

/// One fitted kernel of a [`Calibration`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitRecord {
    pub head_dim: usize,
    pub causal: bool,
    /// Resident blocks per SM: [sm_80, sm_90].
    pub blocks: [u32; 2],
    pub ours: Linear,
}

impl Calibration {
    /// Tab-separated lines: `k <k>`, then `fit <head_dim> <causal 0|1> <blocks sm_80>
    /// <blocks sm_90> <per_cta x 4> <per_tile x 4>` (resources as in [`Work`]).
    pub fn to_tsv(&self) -> String {
        let mut out = format!("k\t{:e}\n", self.k);
        for f in &self.fits {
            let nums: Vec<String> = f.ours.per_cta.iter().chain(&f.ours.per_tile).map(|x| format!("{x:e}")).collect();
            out += &format!("fit\t{}\t{}\t{}\t{}\t{}\n", f.head_dim, u8::from(f.causal), f.blocks[0], f.blocks[1], nums.join("\t"));
        }
        out
    }

    /// Reads what [`Calibration::to_tsv`] wrote (the bench's side: benches/common/model.rs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn from_tsv(text: &str) -> Result<Self, String> {
        let mut k = None;
        let mut fits = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let cells: Vec<&str> = line.split('\t').collect();
            let num = |i: usize| -> Result<f64, String> {
                cells.get(i).ok_or(format!("`{line}`: too few cells"))?.parse::<f64>().map_err(|e| format!("`{line}`: {e}"))
            };
            match cells[0] {
                "k" => k = Some(num(1)?),
                "fit" if cells.len() == 13 => {
                    let mut per_cta = [0.0; 4];
                    let mut per_tile = [0.0; 4];
                    for r in 0..4 {
                        per_cta[r] = num(5 + r)?;
                        per_tile[r] = num(9 + r)?;
                    }
                    fits.push(FitRecord {
                        head_dim: num(1)? as usize,
                        causal: num(2)? != 0.0,
                        blocks: [num(3)? as u32, num(4)? as u32],
                        ours: Linear { per_cta, per_tile },
                    });
                }
                _ => return Err(format!("`{line}`: not a k or fit line of 13 cells")),
            }
        }
        Ok(Calibration { k: k.ok_or("no k line")?, fits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_fit_reproduces_its_inputs() {
        let (ga, gb) = (Geometry { ctas: 10.0, tiles: 100.0 }, Geometry { ctas: 20.0, tiles: 400.0 });
        let fit = Linear::fit((ga, Work([1030.0; 4])), (gb, Work([4060.0; 4])));
        // per_cta 3, per_tile 10.
        assert!((fit.predict(Geometry { ctas: 1.0, tiles: 0.0 }).0[0] - 3.0).abs() < 1e-9);
        assert!((fit.predict(Geometry { ctas: 0.0, tiles: 1.0 }).0[2] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_calibration_reads_back_what_it_wrote() {
        let fit = Linear::fit((Geometry { ctas: 10.0, tiles: 100.0 }, Work([1030.0, 7.5, 3.0, 1e9])), (Geometry { ctas: 20.0, tiles: 400.0 }, Work([4060.0, 9.25, 8.0, 3e9])));
        let cal = Calibration { k: 1.73, fits: vec![FitRecord { head_dim: 128, causal: true, blocks: [2, 2], ours: fit }] };
        assert_eq!(Calibration::from_tsv(&cal.to_tsv()).unwrap(), cal);
        assert!(Calibration::from_tsv("fit\t1\t2").is_err());
        assert!(Calibration::from_tsv("").is_err(), "no k");
    }

    #[test]
    fn causal_geometry_counts_the_triangle() {
        // 4 row blocks of 64 over 256 keys in 64-key tiles: 1 + 2 + 3 + 4 tiles.
        assert_eq!(geometry(1, 1, 256, 64, 64, true).tiles, 10.0);
        assert_eq!(geometry(1, 1, 256, 64, 64, false).tiles, 16.0);
        // 128-row CTAs over 64-key tiles: 2 + 4.
        assert_eq!(geometry(1, 1, 256, 128, 64, true).tiles, 6.0);
    }
}
