//! One caller workspace split into the scratch tensors of a multi-launch pipeline (an
//! estimator's scratch, the index tensors it writes, their converted form), so an
//! end-to-end entry point asks the caller for a single buffer whose size one query
//! function gives.
//!
//! Sizes are in 4-byte words (every part is f32 or i32). Each part starts a whole number of
//! [`PART_ALIGN_WORDS`] after the workspace's start: with the workspace itself 16-byte
//! aligned (every allocation is), each part is too, which the vectorised scratch reads of
//! the estimators need.

use super::buffers::DeviceBuffer;
use crate::error::{Error, Result};

/// Parts start on multiples of 64 words (256 bytes) from the workspace's start.
pub const PART_ALIGN_WORDS: usize = 64;

/// The workspace alignment the parts' alignment relies on.
pub const WORKSPACE_ALIGN_BYTES: u64 = 16;

/// Where each part of a workspace lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceLayout {
    parts: Vec<(&'static str, usize, usize)>,
    total: usize,
}

impl WorkspaceLayout {
    /// Lays out `parts` (name, words) in order, each aligned to [`PART_ALIGN_WORDS`].
    /// Errors when the total does not fit `usize`.
    pub fn new(parts: &[(&'static str, usize)]) -> Result<Self> {
        let mut total = 0usize;
        let mut laid = Vec::with_capacity(parts.len());
        for &(name, words) in parts {
            let start = total.checked_next_multiple_of(PART_ALIGN_WORDS);
            let end = start.and_then(|s| s.checked_add(words));
            let (Some(start), Some(end)) = (start, end) else {
                return Err(Error::InvalidParameter { name: "workspace", reason: format!("the part {name} overflows the address space") });
            };
            laid.push((name, start, words));
            total = end;
        }
        Ok(Self { parts: laid, total })
    }

    /// Words the whole workspace needs.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Splits `workspace` (4-byte elements) into the parts, in the order they were given.
    /// Errors when it is shorter than [`Self::total`] or its address is null or not
    /// [`WORKSPACE_ALIGN_BYTES`]-aligned.
    pub fn carve(&self, workspace: DeviceBuffer) -> Result<Vec<DeviceBuffer>> {
        if workspace.len < self.total {
            return Err(Error::BufferTooSmall { tensor: "workspace", needed: self.total, len: workspace.len });
        }
        if workspace.addr == 0 || !workspace.addr.is_multiple_of(WORKSPACE_ALIGN_BYTES) {
            return Err(Error::InvalidParameter {
                name: "workspace",
                reason: format!("device address {:#x} is null or not {WORKSPACE_ALIGN_BYTES}-byte aligned", workspace.addr),
            });
        }
        // start <= total <= len words, so the byte offset fits the address space of the buffer.
        Ok(self.parts.iter().map(|&(_, start, words)| DeviceBuffer { addr: workspace.addr + 4 * start as u64, len: words }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_aligned_disjoint_and_in_bounds() {
        let layout = WorkspaceLayout::new(&[("a", 5), ("b", 0), ("c", 64), ("d", 1)]).unwrap();
        assert_eq!(layout.total(), 64 + 64 + 1);
        let parts = layout.carve(DeviceBuffer { addr: 256, len: layout.total() }).unwrap();
        let starts: Vec<u64> = parts.iter().map(|p| (p.addr - 256) / 4).collect();
        assert_eq!(starts, [0, 64, 64, 128]);
        assert_eq!(parts.iter().map(|p| p.len).collect::<Vec<_>>(), [5, 0, 64, 1]);
    }

    #[test]
    fn short_or_misaligned_workspaces_are_refused() {
        let layout = WorkspaceLayout::new(&[("a", 10)]).unwrap();
        assert!(matches!(layout.carve(DeviceBuffer { addr: 256, len: 9 }), Err(Error::BufferTooSmall { tensor: "workspace", .. })));
        assert!(matches!(layout.carve(DeviceBuffer { addr: 260, len: 10 }), Err(Error::InvalidParameter { name: "workspace", .. })));
        assert!(matches!(layout.carve(DeviceBuffer { addr: 0, len: 10 }), Err(Error::InvalidParameter { name: "workspace", .. })));
        assert!(WorkspaceLayout::new(&[("a", usize::MAX - 3), ("b", 1)]).is_err());
    }
}
