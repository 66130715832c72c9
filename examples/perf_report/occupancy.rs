//! Theoretical occupancy from a kernel's resources, as NVIDIA's occupancy calculator
//! computes it: the fewest blocks per SM that threads, registers or shared memory allow.
//!
//! Per-SM limits are from the CUDA C++ Programming Guide, "Technical Specifications per
//! Compute Capability" (compute capability 8.0 and 9.0): 64 K 32-bit registers, 2048
//! resident threads (64 warps), 32 resident blocks; shared memory 164 KB per SM on 8.0 and
//! 228 KB on 9.0, with 1 KB per block reserved by the system. Registers are allocated per
//! warp in units of 256 (the calculator's "register allocation unit size").

/// One GPU generation's per-SM limits.
pub struct SmLimits {
    pub name: &'static str,
    pub registers: u32,
    pub max_warps: u32,
    pub max_blocks: u32,
    pub shared_bytes: u32,
}

pub const SM80: SmLimits = SmLimits { name: "sm_80", registers: 65536, max_warps: 64, max_blocks: 32, shared_bytes: 164 * 1024 };
pub const SM90: SmLimits = SmLimits { name: "sm_90", registers: 65536, max_warps: 64, max_blocks: 32, shared_bytes: 228 * 1024 };

/// Bytes the system reserves per resident block (CUDA 11 and later).
const RESERVED_SHARED_PER_BLOCK: u32 = 1024;
/// Registers are handed to a warp in chunks of this many.
const REGISTER_UNIT: u32 = 256;

/// (blocks per SM, fraction of the SM's warp slots filled).
pub fn occupancy(sm: &SmLimits, threads: u32, registers: u32, shared_bytes: u32) -> (u32, f64) {
    let warps = threads.div_ceil(32);
    let regs_per_warp = (registers * 32).div_ceil(REGISTER_UNIT) * REGISTER_UNIT;
    let by_warps = sm.max_warps / warps;
    let by_regs = if regs_per_warp == 0 { u32::MAX } else { sm.registers / (regs_per_warp * warps) };
    let by_smem = sm.shared_bytes / (shared_bytes + RESERVED_SHARED_PER_BLOCK);
    let blocks = by_warps.min(by_regs).min(by_smem).min(sm.max_blocks);
    (blocks, f64::from(blocks * warps) / f64::from(sm.max_warps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_calculator_on_known_cases() {
        // 128 threads at 255 registers: 4 warps x 8192 registers = 32 K, so 2 blocks.
        assert_eq!(occupancy(&SM80, 128, 255, 0).0, 2);
        // 64 KiB of shared memory per block: 164 KB / 65 KB = 2 blocks on sm_80, 3 on sm_90.
        assert_eq!(occupancy(&SM80, 128, 128, 64 * 1024).0, 2);
        assert_eq!(occupancy(&SM90, 128, 128, 64 * 1024).0, 3);
    }
}
