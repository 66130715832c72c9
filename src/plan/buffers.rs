//! What a launch is given, as plain numbers: device addresses and element counts of every
//! buffer and their layouts (the index tensors come as a `Source<DeviceBuffer>`). Both
//! backends describe their buffers this way, so validation and the params struct are
//! computed once.

use crate::error::{Error, Result};
use crate::shape::{AttnShape, Bshd};

/// One device buffer: its address and how many elements it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceBuffer {
    /// Device address of element 0.
    pub addr: u64,
    /// Capacity in elements of the buffer's type.
    pub len: usize,
}

/// BSHD strides of the four attention tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnLayouts {
    /// Layout of q.
    pub q: Bshd,
    /// Layout of k.
    pub k: Bshd,
    /// Layout of v.
    pub v: Bshd,
    /// Layout of the output.
    pub out: Bshd,
}

impl AttnLayouts {
    /// Densely packed BSHD for every tensor of `shape`.
    pub fn contiguous(shape: &AttnShape) -> Self {
        let (q, kv) = (shape.q_layout(), shape.kv_layout());
        Self { q, k: kv, v: kv, out: q }
    }
}

/// The dense tensors of one launch (element type = the kernel's dtype; LSE is f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnBuffers {
    /// Queries.
    pub q: DeviceBuffer,
    /// Keys.
    pub k: DeviceBuffer,
    /// Values.
    pub v: DeviceBuffer,
    /// Output, written by the kernel.
    pub out: DeviceBuffer,
    /// f32 LSE `[batch, heads_q, seq_q]`; must be present exactly when the options ask for it.
    pub lse: Option<DeviceBuffer>,
    /// f32 attention sinks `[heads_q]`: one learned logit per query head that joins every
    /// row's softmax denominator (gpt-oss); `None` = no sinks.
    pub sinks: Option<DeviceBuffer>,
    /// Strides of q, k, v and the output.
    pub layouts: AttnLayouts,
}

impl DeviceBuffer {
    /// The address of an i32 index tensor that must hold at least `needed` entries: checks
    /// the length, and a non-null 4-byte-aligned address whenever anything is read from it.
    pub(crate) fn index_addr(self, tensor: &'static str, needed: usize) -> Result<u64> {
        if self.len < needed {
            return Err(Error::BufferTooSmall { tensor, needed, len: self.len });
        }
        if needed > 0 && (self.addr == 0 || !self.addr.is_multiple_of(4)) {
            return Err(Error::InvalidParameter {
                name: tensor,
                reason: format!("device address {:#x} is null or not 4-byte aligned", self.addr),
            });
        }
        Ok(self.addr)
    }
}
