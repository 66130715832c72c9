//! How many KV splits a decode launch takes: enough CTAs to fill the GPU's waves, chosen
//! from the capacity the caller plans for (so that one plan, and one captured CUDA graph,
//! serves every step), after FlashAttention's `num_splits_heuristic`.

/// The most splits a plan takes (FlashAttention's cap as well): past it, the merge reads
/// more partial states than the split saves.
pub const MAX_SPLITS: usize = 128;

/// Decode CTAs resident per SM that the heuristic assumes: a CTA of 128 threads at up to 233
/// registers a thread (the head_dim 128 kernels' ptxas figure; 65 536 registers per SM) and
/// 64 KiB of shared memory fits twice on an sm_80 / sm_90 SM.
pub const CTAS_PER_SM: usize = 2;

/// The fraction of the last wave's CTA slots that `ctas` CTAs fill, over whole waves of
/// `sm_count * CTAS_PER_SM` slots: 1.0 when the CTAs fill every wave, lower when the last
/// wave is partly idle. 0 when there is nothing to run.
pub fn wave_efficiency(ctas: usize, sm_count: usize) -> f64 {
    let slots = sm_count.max(1) * CTAS_PER_SM;
    if ctas == 0 {
        return 0.0;
    }
    let waves = ctas as f64 / slots as f64;
    waves / waves.ceil()
}

/// The split count for `ctas` CTAs per split (batch x kv heads x row chunks x token groups)
/// over `tiles` key tiles of capacity on `sm_count` SMs: 1 when the CTAs already fill most
/// of a wave; otherwise the smallest count whose wave efficiency is at least 85% of the best
/// count's, among the counts up to [`MAX_SPLITS`] and `tiles` that change how many tiles a
/// split gets (two counts that give every split the same tiles run the same work).
pub fn num_splits(ctas: usize, tiles: usize, sm_count: usize) -> usize {
    let slots = sm_count.max(1) * CTAS_PER_SM;
    let max = MAX_SPLITS.min(tiles).max(1);
    if ctas == 0 || ctas * 10 >= slots * 8 || max == 1 {
        return 1;
    }
    let tiles_per_split = |s: usize| tiles.div_ceil(s);
    let eligible = |s: usize| s == 1 || tiles_per_split(s) != tiles_per_split(s - 1);
    let efficiency = |s: usize| wave_efficiency(ctas * s, sm_count);
    let best = (1..=max).filter(|&s| eligible(s)).map(efficiency).fold(0.0, f64::max);
    (1..=max).filter(|&s| eligible(s)).find(|&s| efficiency(s) >= 0.85 * best).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_grid_takes_one_split() {
        assert_eq!(num_splits(264, 512, 132), 1);
        assert_eq!(num_splits(4, 1, 132), 1, "one tile cannot split");
    }

    #[test]
    fn a_small_grid_is_split_to_fill_its_waves() {
        // Batch 1, 4 kv heads at 32K keys (512 tiles of 64) on 132 SMs.
        let s = num_splits(4, 512, 132);
        assert!(s > 1 && s <= MAX_SPLITS, "{s}");
        assert!(wave_efficiency(4 * s, 132) >= 0.85, "{s}: {}", wave_efficiency(4 * s, 132));
    }

    #[test]
    fn wave_efficiency_counts_the_idle_part_of_the_last_wave() {
        assert_eq!(wave_efficiency(264, 132), 1.0);
        assert_eq!(wave_efficiency(132, 132), 0.5);
        assert_eq!(wave_efficiency(0, 132), 0.0);
    }
}
