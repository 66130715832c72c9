//! Host checks of a decode source's index tensors, for callers that hold a host copy (the
//! simulator backend always does; an engine that builds its block lists or top-k rows on the
//! host can call [`check_host_source`] before uploading them). The device never needs them
//! for safety: the kernel skips an entry that is out of range. They catch what the device
//! would silently skip, and what it cannot detect: a repeated block id or key, whose keys
//! would be counted twice.

use super::decode::DecodeSource;
use crate::error::{at, Error, Result};
use crate::shape::{AttnShape, Varlen};

/// Checks `source` against the sequences' key counts `seqlens_k` (already checked against
/// the shape): a block-sparse row lists at most `max_blocks` ids, strictly ascending, each
/// below its sequence's blocks (`ceil(seqlens_k / block_size)`); a top-k row holds -1 or keys
/// below its sequence's count, none twice. Top-k rows belong to sequence `row / q_len`, or
/// with `packed` to the sequence whose packed rows hold them. Tensor lengths are checked
/// too.
pub fn check_host_source<D: AsRef<[i32]>>(shape: &AttnShape, seqlens_k: &[i32], packed: Option<&Varlen>, source: &DecodeSource<D>) -> Result<()> {
    let (batch, heads_kv) = (shape.batch(), shape.heads_kv());
    let keys_of = |b: usize| seqlens_k.get(b).map_or(0, |&k| k.max(0) as usize);
    match source {
        DecodeSource::Dense => Ok(()),
        DecodeSource::BlockSparse { block_size, max_blocks, block_count, block_index } => {
            let (counts, index) = (block_count.as_ref(), block_index.as_ref());
            check_len("block_count", counts.len(), batch * heads_kv)?;
            check_len("block_index", index.len(), batch * heads_kv * max_blocks)?;
            for b in 0..batch {
                let blocks = keys_of(b).div_ceil((*block_size).max(1));
                for h in 0..heads_kv {
                    let row = b * heads_kv + h;
                    let count = counts[row];
                    if count < 0 || count as usize > *max_blocks {
                        let range = format!("0..={max_blocks} (max_blocks)");
                        return Err(Error::IndexOutOfRange { tensor: "block_count", at: at(&[b, h]), value: count.into(), range });
                    }
                    let ids = &index[row * max_blocks..][..count as usize];
                    for (slot, &id) in ids.iter().enumerate() {
                        if id < 0 || id as usize >= blocks {
                            let range = format!("0..{blocks} (blocks of the sequence's {} keys)", keys_of(b));
                            return Err(Error::IndexOutOfRange { tensor: "block_index", at: at(&[b, h, slot]), value: id.into(), range });
                        }
                        if slot > 0 && id <= ids[slot - 1] {
                            return Err(Error::IndexNotAscending { tensor: "block_index", at: at(&[b, h, slot]), prev: ids[slot - 1].into(), value: id.into() });
                        }
                    }
                }
            }
            Ok(())
        }
        DecodeSource::TopK { topk, indices } => {
            let indices = indices.as_ref();
            let rows = packed.map_or(batch * shape.seq_q(), Varlen::total_q);
            check_len("indices", indices.len(), rows * heads_kv * topk)?;
            let sequence_of = |row: usize| match packed {
                Some(v) => v.cu_seqlens_q().partition_point(|&start| start as usize <= row).saturating_sub(1),
                None => row / shape.seq_q().max(1),
            };
            let mut sorted: Vec<(i32, usize)> = Vec::with_capacity(*topk);
            for (r, row_keys) in indices[..rows * heads_kv * topk].chunks_exact((*topk).max(1)).enumerate() {
                let (row, h) = (r / heads_kv, r % heads_kv);
                let keys = keys_of(sequence_of(row));
                for (slot, &key) in row_keys.iter().enumerate() {
                    if key != -1 && (key < 0 || key as usize >= keys) {
                        return Err(Error::IndexOutOfRange { tensor: "indices", at: at(&[row, h, slot]), value: key.into(), range: format!("-1 or 0..{keys}") });
                    }
                }
                // Repeats, by sorting (key, slot): a repeat's two slots are then neighbours.
                sorted.clear();
                sorted.extend(row_keys.iter().enumerate().filter(|(_, &k)| k >= 0).map(|(slot, &k)| (k, slot)));
                sorted.sort_unstable();
                if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Err(Error::DuplicateIndex { tensor: "indices", at: at(&[row, h, w[1].1]), value: w[1].0.into(), first_slot: w[0].1 });
                }
            }
            Ok(())
        }
    }
}

fn check_len(tensor: &'static str, len: usize, expected: usize) -> Result<()> {
    if len < expected {
        return Err(Error::BufferTooSmall { tensor, needed: expected, len });
    }
    Ok(())
}
