//! Simulator work counts, per mma and against FA2: the rows the report prints.

use ptx_sim::Counters;

/// A launch's totals, and the same per executed mma.
pub struct Work {
    pub counters: Counters,
}

impl Work {
    fn per_mma(&self, x: u64) -> f64 {
        x as f64 / self.counters.mma.max(1) as f64
    }

    /// Warp-instructions that are neither ALU, SFU, mma, control nor barriers: loads, stores,
    /// cp.async, ldmatrix, shuffles' memory side and parameter reads.
    fn memory_and_other(&self) -> u64 {
        let c = &self.counters;
        c.warp_instructions.saturating_sub(c.alu + c.sfu + c.mma + c.control + c.barriers)
    }

    /// One table row (see [`HEADER`]).
    pub fn row(&self, name: &str, dense_mma: u64) -> String {
        let c = &self.counters;
        format!(
            "{name:<34} {:>9} {:>6.2} {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>5.2} {:>7.3} {:>7.3} {:>9.1} {:>6.3}",
            c.mma,
            self.per_mma(c.warp_instructions),
            self.per_mma(c.alu),
            self.per_mma(c.sfu),
            self.per_mma(self.memory_and_other()),
            self.per_mma(c.control),
            self.per_mma(c.barriers),
            self.per_mma(c.shared_wavefronts),
            self.per_mma(c.shared_bank_conflicts),
            self.per_mma(c.global_load_bytes + c.global_store_bytes),
            c.mma as f64 / dense_mma.max(1) as f64,
        )
    }
}

/// Column names of [`Work::row`].
pub const HEADER: &str = "kernel                                   mma  instr/mma:  alu   sfu   mem  ctrl   bar  wavefr  confl   glob B   work\n\
                          (per mma: warp-instructions by class, smem wavefronts, bank conflicts, global bytes; work = mma / dense mma)";

/// `ours / theirs` for the three totals the issue compares, in its fixed form.
pub fn ratio_line(label: &str, ours: &Counters, fa2: &Counters) -> String {
    let r = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    format!(
        "vs FA2 {label}: instr {:.2}, smem wavefronts {:.2}, global bytes {:.2}",
        r(ours.warp_instructions, fa2.warp_instructions),
        r(ours.shared_wavefronts, fa2.shared_wavefronts),
        r(ours.global_load_bytes + ours.global_store_bytes, fa2.global_load_bytes + fa2.global_store_bytes),
    )
}
