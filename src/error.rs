//! The crate's one error type. Every invalid input returns one of these variants and
//! names what is wrong; nothing in the public API panics on caller input.
//!
//! [`Error`] is `#[non_exhaustive]`: later 0.x releases may add variants, so a `match` on it
//! outside this crate needs a wildcard arm. A failed CUDA driver call keeps the driver's raw
//! `CUresult` ([`Error::cuda_result`]).

/// Everything that can go wrong in `sparse-attn`.
///
/// Non-exhaustive: new variants may appear in any 0.x release, so match with a wildcard arm.
/// Fields named `tensor` or `dim` hold the parameter name as the API spells it (`"q"`,
/// `"seq_k"`, `"vertical_indexes"`, ...); fields named `at` hold a position inside that
/// tensor formatted as `[i0, i1, ...]`, one index per dimension in the tensor's own order.
///
/// Errors from the CUDA driver arrive as [`Error::Driver`]; [`Error::cuda_result`] returns
/// their raw `CUresult` for callers that branch on a specific driver status (out of memory,
/// launch failure, ...).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A dimension that must be at least 1 was 0.
    #[error("dimension `{dim}` must be at least 1, got 0")]
    ZeroDimension {
        /// Name of the zero dimension, e.g. `"batch"`, `"head_dim"`, `"row_blocks"`.
        dim: &'static str,
    },

    /// A dimension is larger than the kernels can index (i32 index tensors), or an element
    /// count computed from several dimensions overflows `usize`.
    #[error("dimension `{dim}` = {value} exceeds the supported maximum {max}")]
    DimensionTooLarge {
        /// The dimension, or the tensor (or product of dimensions) whose element count
        /// overflowed.
        dim: &'static str,
        /// The offending size (for an overflowing product, the factor that overflowed).
        value: usize,
        /// The largest size that would have been accepted in its place.
        max: usize,
    },

    /// Grouped-query attention needs `heads_q` to be a multiple of `heads_kv`.
    #[error("heads_q ({heads_q}) must be a multiple of heads_kv ({heads_kv})")]
    HeadsNotDivisible {
        /// Number of query heads given.
        heads_q: usize,
        /// Number of key/value heads given; must divide `heads_q`.
        heads_kv: usize,
    },

    /// The head dimension has no kernel instantiation.
    #[error("head_dim {head_dim} is not supported (supported: {supported:?})")]
    UnsupportedHeadDim {
        /// The requested head dimension (elements per head).
        head_dim: usize,
        /// Every head dimension the embedded kernels are compiled for.
        supported: &'static [usize],
    },

    /// A tensor's strides are unusable (zero where they must not be, overlapping output rows, ...).
    #[error("tensor `{tensor}` has invalid strides: {reason}")]
    InvalidStrides {
        /// The tensor whose strides were rejected.
        tensor: &'static str,
        /// Which stride is wrong and why, in words.
        reason: String,
    },

    /// A buffer holds fewer elements than its shape and strides address.
    #[error("tensor `{tensor}` needs at least {needed} elements, but its buffer holds {len}")]
    BufferTooSmall {
        /// The tensor whose buffer is too short.
        tensor: &'static str,
        /// Elements the shape and strides address (highest offset + 1).
        needed: usize,
        /// Elements the buffer actually holds.
        len: usize,
    },

    /// A host tensor does not have exactly the number of elements its shape implies.
    #[error("tensor `{tensor}` must have {expected} elements ({dims}), got {len}")]
    WrongLength {
        /// The host tensor with the wrong length.
        tensor: &'static str,
        /// Elements the shape implies (the product of `dims`).
        expected: usize,
        /// The dimensions that product came from, formatted as `a x b x c`.
        dims: String,
        /// Elements the tensor actually holds.
        len: usize,
    },

    /// The softmax scale is unusable: not finite, not positive, or (for the kernels)
    /// outside `kernel_scale_range` for the dtype and head_dim, where scores would turn into
    /// NaN or a row of zeros.
    #[error("softmax_scale {value:e} is invalid: {reason}")]
    InvalidSoftmaxScale {
        /// The rejected scale (may be NaN or infinite).
        value: f32,
        /// Which bound it breaks and what it would do to the scores, in words.
        reason: String,
    },

    /// `cu_seqlens` of the varlen form is malformed.
    #[error("cu_seqlens `{tensor}` is invalid: {reason}")]
    InvalidCuSeqlens {
        /// `"cu_seqlens_q"` or `"cu_seqlens_k"`.
        tensor: &'static str,
        /// What is wrong with the prefix sums (length, first entry, a decreasing step).
        reason: String,
    },

    /// An index tensor entry is outside the range it must lie in.
    #[error("index tensor `{tensor}` at {at}: value {value} is out of range {range}")]
    IndexOutOfRange {
        /// The index tensor holding the bad entry.
        tensor: &'static str,
        /// Position of the entry in that tensor, `[i0, i1, ...]`.
        at: String,
        /// The out-of-range entry.
        value: i64,
        /// The values it may take, in words (e.g. `0..32 (key blocks of seq_k = 4096)`).
        range: String,
    },

    /// An index tensor that must be strictly ascending is not.
    #[error("index tensor `{tensor}` at {at}: value {value} does not follow {prev} in ascending order without repeats")]
    IndexNotAscending {
        /// The index tensor that is out of order.
        tensor: &'static str,
        /// Position of the offending entry in that tensor, `[i0, i1, ...]`.
        at: String,
        /// The entry just before it in the same row.
        prev: i64,
        /// The offending entry, which is not greater than `prev`.
        value: i64,
    },

    /// A count tensor entry is negative or exceeds the capacity of its index row.
    #[error("count tensor `{tensor}` at {at}: count {value} is outside 0..={max}")]
    CountOutOfRange {
        /// The count tensor holding the bad entry.
        tensor: &'static str,
        /// Position of the entry in that tensor, `[i0, i1, ...]`.
        at: String,
        /// The rejected count.
        value: i64,
        /// Capacity of the index row the count describes (the largest valid count).
        max: usize,
    },

    /// A scalar parameter of a pattern or builder is invalid.
    #[error("parameter `{name}` is invalid: {reason}")]
    InvalidParameter {
        /// The parameter, as the constructor or option spells it.
        name: &'static str,
        /// What values it may take, or why this one cannot be used.
        reason: String,
    },

    /// The descriptor was built for a different problem shape than it is used with.
    #[error("descriptor does not match the problem: {reason}")]
    DescriptorMismatch {
        /// Which dimension or tensor disagrees, with both values.
        reason: String,
    },

    /// The crate was built without a CUDA compiler, so it carries no kernels.
    #[error("CUDA kernels are unavailable: {reason}")]
    KernelsUnavailable {
        /// Why no kernel can be loaded (no CUDA compiler at build time, no PTX for the device's
        /// compute capability, an unknown module).
        reason: String,
    },

    /// The driver refused an embedded kernel module, most often because its PTX ISA is
    /// newer than the driver (`needs` names the driver it takes).
    #[error("the CUDA driver could not load the `{module}` kernels (PTX ISA {isa}, from {compiler}): {source}; {needs}")]
    ModuleLoad {
        /// The module, e.g. `prefill`.
        module: &'static str,
        /// The compiler that produced its PTX, e.g. `NVRTC 12.4`.
        compiler: &'static str,
        /// The module's PTX ISA version, e.g. `8.4`.
        isa: String,
        /// The oldest driver that loads this ISA, and the installed driver's version.
        needs: String,
        /// The driver's error.
        source: cudarc::driver::DriverError,
    },

    /// A CUDA driver call failed. The wrapped cudarc error holds the driver's raw
    /// `CUresult` (its public field `.0`); [`Error::cuda_result`] returns it without a
    /// `match`.
    ///
    /// Formatting this variant (`Display` or `Debug`) asks the driver library for the
    /// status's description, so do it only where libcuda can be loaded, which is always
    /// the case when a driver call produced the error.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] cudarc::driver::DriverError),

    /// A non-negative index appears twice in a row whose entries must be distinct (a key
    /// attended twice would be counted twice in the softmax).
    #[error("index tensor `{tensor}` at {at}: value {value} repeats the entry at slot {first_slot} of the same row")]
    DuplicateIndex {
        /// The index tensor holding the repeat.
        tensor: &'static str,
        /// Position of the second occurrence in that tensor, `[i0, i1, ...]`.
        at: String,
        /// The repeated entry.
        value: i64,
        /// Slot (position along the row's last dimension) of the first occurrence.
        first_slot: usize,
    },

    /// An index tensor that must be strictly descending is not (vertical-slash slash
    /// indexes, which MInference orders farthest diagonal first).
    #[error("index tensor `{tensor}` at {at}: value {value} does not follow {prev} in descending order without repeats")]
    IndexNotDescending {
        /// The index tensor that is out of order.
        tensor: &'static str,
        /// Position of the offending entry in that tensor, `[i0, i1, ...]`.
        at: String,
        /// The entry just before it in the same row.
        prev: i64,
        /// The offending entry, which is not less than `prev`.
        value: i64,
    },

    /// The PTX simulator refused or faulted a launch (memcheck, barrier, racecheck, an
    /// unsupported instruction...); the message is the simulator's.
    #[error("PTX simulator: {0}")]
    Simulator(String),
}

impl Error {
    /// The raw driver status of an error that came from a CUDA driver call
    /// ([`Error::Driver`], [`Error::ModuleLoad`]); `None` for every other variant, none of
    /// which involves the driver.
    ///
    /// ```
    /// use cudarc::driver::{sys::CUresult, DriverError};
    /// let err = sparse_attn::Error::from(DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
    /// assert_eq!(err.cuda_result(), Some(CUresult::CUDA_ERROR_OUT_OF_MEMORY));
    /// ```
    pub fn cuda_result(&self) -> Option<cudarc::driver::sys::CUresult> {
        match self {
            Error::Driver(e) | Error::ModuleLoad { source: e, .. } => Some(e.0),
            _ => None,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a multi-dimensional position as `[a, b, c]` for error messages.
pub(crate) fn at(position: &[usize]) -> String {
    let parts: Vec<String> = position.iter().map(|p| p.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudarc::driver::{sys::CUresult, DriverError};

    // No formatting here: Display/Debug of a DriverError calls into libcuda, which the
    // machine running the unit tests may not have.
    #[test]
    fn cuda_result_round_trips_the_driver_status() {
        for status in [CUresult::CUDA_ERROR_OUT_OF_MEMORY, CUresult::CUDA_ERROR_LAUNCH_FAILED, CUresult::CUDA_ERROR_INVALID_PTX] {
            let err: Error = DriverError(status).into();
            assert!(matches!(err, Error::Driver(DriverError(s)) if s == status));
            assert_eq!(err.cuda_result(), Some(status));
        }
        assert_eq!(Error::Simulator("fault".into()).cuda_result(), None);
        assert_eq!(Error::ZeroDimension { dim: "batch" }.cuda_result(), None);
    }
}
