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
    /// Shared store instructions: st.shared, and each warp-level cp.async (counted when it
    /// is issued; the wait that lands its data counts nothing).
    pub shared_stores: u64,
    /// Bytes those stores wrote (a cp.async's full copy size, zero-filled bytes included).
    pub shared_store_bytes: u64,
    /// Shared atomic instructions.
    pub shared_atomics: u64,
    /// Shared-memory wavefronts: one per conflict-free 128-byte access, more when lanes hit
    /// different words in the same bank. Loads, stores, ldmatrix and cp.async writes count;
    /// the rule is at `shared_wavefronts` below.
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
///
/// Who calls it with what:
/// - `ld.shared` / `st.shared`: the active lanes' addresses, at the access size.
/// - `ldmatrix`: each 8x8 matrix alone (8 lanes' 16-byte rows, one 128-byte phase).
/// - `cp.async`: once per warp-level instruction, when it is issued, with the active lanes'
///   shared destinations at the copy size (4, 8 or 16 bytes), as a store of that width:
///   the warp's writes are one access pattern whatever the copies' commit groups. A full
///   warp of 16-byte copies moves 512 bytes, so it takes at least 4 wavefronts (8 lanes per
///   phase), more when lanes of a phase hit different words of one bank. Zero-filled and
///   ignore-src copies write their whole size and count the same. The data lands at the
///   wait, which counts nothing. Measured hardware can spend more: the writes of an LDGSTS
///   may also be split along how its global reads coalesce, which is not modelled, so the
///   count is the destination pattern's cost, a lower bound.
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

    #[test]
    fn sixteen_byte_copies_of_a_warp() {
        // What a warp's cp.async ..., 16 is counted as: 512 bytes, 4 phases of 8 lanes.
        let rows = |stride: u64| (0..32u32).map(|l| (l, l as u64 * stride)).collect::<Vec<_>>();
        assert_eq!(shared_wavefronts(&rows(16), 16), (4, 0));
        // 128-byte rows without a swizzle: the 8 lanes of a phase all hit banks 0-3, 8 ways.
        assert_eq!(shared_wavefronts(&rows(128), 16), (32, 28));
        // The same rows with the 16-byte chunk XOR-swizzled by the row: conflict free again.
        let swizzled: Vec<_> = (0..32u32).map(|l| (l, l as u64 * 128 + ((l as u64 % 8) * 16))).collect();
        assert_eq!(shared_wavefronts(&swizzled, 16), (4, 0));
        // Two lanes of a phase 256 bytes apart share banks: 2 ways in every phase.
        assert_eq!(shared_wavefronts(&rows(32), 16), (8, 4));
        // A partial warp: only the phases with active lanes cost anything.
        assert_eq!(shared_wavefronts(&rows(16)[..8], 16), (1, 0));
    }
}
