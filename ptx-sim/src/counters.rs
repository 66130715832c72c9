//! Work counters of one launch. A warp-instruction is one instruction issued for a warp
//! (whatever its active lanes); thread-instructions count the lanes that executed it.

/// Per-launch work counters, summed over all blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Warp-instructions issued, all classes.
    pub warp_instructions: u64,
    /// Sum over issued warp-instructions of the lanes that executed them.
    pub thread_instructions: u64,
    /// Integer, logic, float add/mul/fma, compare, convert and move instructions.
    pub alu: u64,
    /// Special-function instructions: rcp, sqrt, rsqrt, ex2, lg2, sin, cos, tanh, div.approx.
    pub sfu: u64,
    /// `mma.sync` instructions.
    pub mma: u64,
    /// `bar.sync` / `barrier.sync` / `bar.warp.sync` instructions.
    pub barriers: u64,
    /// Branches, returns and no-ops.
    pub control: u64,
    /// Global (and const) load instructions; `ld.param` reads the constant bank and is not
    /// counted as memory traffic.
    pub global_loads: u64,
    /// Bytes those loads read, over all lanes.
    pub global_load_bytes: u64,
    /// Global store instructions.
    pub global_stores: u64,
    /// Bytes those stores wrote, over all lanes.
    pub global_store_bytes: u64,
    /// Global atomic / reduction instructions.
    pub global_atomics: u64,
    /// Shared load instructions (ld.shared and ldmatrix).
    pub shared_loads: u64,
    /// Bytes those loads read.
    pub shared_load_bytes: u64,
    /// Shared store instructions (st.shared, and cp.async groups completed by a wait).
    pub shared_stores: u64,
    /// Bytes those stores wrote.
    pub shared_store_bytes: u64,
    /// Shared atomic instructions.
    pub shared_atomics: u64,
    /// Shared-memory wavefronts: one per conflict-free 128-byte access, more when lanes hit
    /// different words in the same bank.
    pub shared_wavefronts: u64,
    /// Wavefronts beyond the conflict-free minimum (the cost of bank conflicts).
    pub shared_bank_conflicts: u64,
    /// Local-memory load and store instructions.
    pub local_accesses: u64,
    /// `cp.async` instructions (each also counts as a global load).
    pub cp_async: u64,
}

impl Counters {
    /// Adds another block's (or launch's) counts.
    pub fn add(&mut self, o: &Counters) {
        self.warp_instructions += o.warp_instructions;
        self.thread_instructions += o.thread_instructions;
        self.alu += o.alu;
        self.sfu += o.sfu;
        self.mma += o.mma;
        self.barriers += o.barriers;
        self.control += o.control;
        self.global_loads += o.global_loads;
        self.global_load_bytes += o.global_load_bytes;
        self.global_stores += o.global_stores;
        self.global_store_bytes += o.global_store_bytes;
        self.global_atomics += o.global_atomics;
        self.shared_loads += o.shared_loads;
        self.shared_load_bytes += o.shared_load_bytes;
        self.shared_stores += o.shared_stores;
        self.shared_store_bytes += o.shared_store_bytes;
        self.shared_atomics += o.shared_atomics;
        self.shared_wavefronts += o.shared_wavefronts;
        self.shared_bank_conflicts += o.shared_bank_conflicts;
        self.local_accesses += o.local_accesses;
        self.cp_async += o.cp_async;
    }
}

/// Wavefronts a shared access needs: lanes are split into phases that each move at most
/// 128 bytes (32 lanes for 4-byte accesses, 16 for 8, 8 for 16); within a phase the cost is
/// the largest number of distinct 4-byte words that fall in one of the 32 banks. Lanes that
/// read the same word are served together (broadcast).
pub(crate) fn shared_wavefronts(addrs: &[(u32, u64)], size: u32) -> (u64, u64) {
    let lanes_per_phase = (128 / size.max(4)).max(1);
    let mut total = 0u64;
    let mut ideal = 0u64;
    let mut phase: u32 = u32::MAX;
    let mut words: Vec<u64> = Vec::with_capacity(32);
    let flush = |words: &mut Vec<u64>, total: &mut u64, ideal: &mut u64| {
        if words.is_empty() {
            return;
        }
        words.sort_unstable();
        words.dedup();
        let mut per_bank = [0u32; 32];
        for w in words.iter() {
            per_bank[(*w % 32) as usize] += 1;
        }
        *total += per_bank.iter().copied().max().unwrap_or(0) as u64;
        *ideal += 1;
        words.clear();
    };
    for &(lane, addr) in addrs {
        let p = lane / lanes_per_phase;
        if p != phase {
            flush(&mut words, &mut total, &mut ideal);
            phase = p;
        }
        for k in 0..size.div_ceil(4) as u64 {
            words.push(addr / 4 + k);
        }
    }
    flush(&mut words, &mut total, &mut ideal);
    (total, total - ideal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_conflict_ways() {
        let lanes = |stride: u64| (0..32u32).map(|l| (l, l as u64 * 4 * stride)).collect::<Vec<_>>();
        assert_eq!(shared_wavefronts(&lanes(1), 4), (1, 0));
        // Stride 2 words: lanes l and l+16 share a bank: 2-way.
        assert_eq!(shared_wavefronts(&lanes(2), 4), (2, 1));
        // Stride 32 words: every lane in bank 0: 32-way.
        assert_eq!(shared_wavefronts(&lanes(32), 4), (32, 31));
        // Stride 33: conflict free.
        assert_eq!(shared_wavefronts(&lanes(33), 4), (1, 0));
        // Broadcast: all lanes read one word.
        let same: Vec<_> = (0..32u32).map(|l| (l, 64)).collect();
        assert_eq!(shared_wavefronts(&same, 4), (1, 0));
        // 16-byte accesses, contiguous: 4 phases of 8 lanes, each conflict free.
        let v4: Vec<_> = (0..32u32).map(|l| (l, l as u64 * 16)).collect();
        assert_eq!(shared_wavefronts(&v4, 16), (4, 0));
    }
}
