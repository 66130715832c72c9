//! The crate's one error type. Every invalid input returns one of these variants and
//! names what is wrong; nothing in the public API panics on caller input.

/// Everything that can go wrong in `sparse-attn`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A dimension that must be at least 1 was 0.
    #[error("dimension `{dim}` must be at least 1, got 0")]
    ZeroDimension { dim: &'static str },

    /// A dimension is larger than the kernels can index (i32 index tensors).
    #[error("dimension `{dim}` = {value} exceeds the supported maximum {max}")]
    DimensionTooLarge { dim: &'static str, value: usize, max: usize },

    /// Grouped-query attention needs `heads_q` to be a multiple of `heads_kv`.
    #[error("heads_q ({heads_q}) must be a multiple of heads_kv ({heads_kv})")]
    HeadsNotDivisible { heads_q: usize, heads_kv: usize },

    /// The head dimension has no kernel instantiation.
    #[error("head_dim {head_dim} is not supported (supported: {supported:?})")]
    UnsupportedHeadDim { head_dim: usize, supported: &'static [usize] },

    /// A tensor's strides are unusable (zero where they must not be, overlapping output rows, ...).
    #[error("tensor `{tensor}` has invalid strides: {reason}")]
    InvalidStrides { tensor: &'static str, reason: String },

    /// A buffer holds fewer elements than its shape and strides address.
    #[error("tensor `{tensor}` needs at least {needed} elements, but its buffer holds {len}")]
    BufferTooSmall { tensor: &'static str, needed: usize, len: usize },

    /// A host tensor does not have exactly the number of elements its shape implies.
    #[error("tensor `{tensor}` must have {expected} elements ({dims}), got {len}")]
    WrongLength { tensor: &'static str, expected: usize, dims: String, len: usize },

    /// `softmax_scale` must be finite and positive; the kernels also need
    /// `softmax_scale * log2(e)` to be a finite f32.
    #[error("softmax_scale must be finite and > 0 (and, for the kernels, below f32::MAX / log2(e)), got {value}")]
    InvalidSoftmaxScale { value: f32 },

    /// `cu_seqlens` of the varlen form is malformed.
    #[error("cu_seqlens `{tensor}` is invalid: {reason}")]
    InvalidCuSeqlens { tensor: &'static str, reason: String },

    /// An index tensor entry is outside the range it must lie in.
    #[error("index tensor `{tensor}` at {at}: value {value} is out of range {range}")]
    IndexOutOfRange { tensor: &'static str, at: String, value: i64, range: String },

    /// An index tensor that must be strictly ascending is not.
    #[error("index tensor `{tensor}` at {at}: value {value} does not follow {prev} in ascending order without repeats")]
    IndexNotAscending { tensor: &'static str, at: String, prev: i64, value: i64 },

    /// A count tensor entry is negative or exceeds the capacity of its index row.
    #[error("count tensor `{tensor}` at {at}: count {value} is outside 0..={max}")]
    CountOutOfRange { tensor: &'static str, at: String, value: i64, max: usize },

    /// A scalar parameter of a pattern or builder is invalid.
    #[error("parameter `{name}` is invalid: {reason}")]
    InvalidParameter { name: &'static str, reason: String },

    /// The descriptor was built for a different problem shape than it is used with.
    #[error("descriptor does not match the problem: {reason}")]
    DescriptorMismatch { reason: String },

    /// The crate was built without a CUDA compiler, so it carries no kernels.
    #[error("CUDA kernels are unavailable: {reason}")]
    KernelsUnavailable { reason: String },

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

    /// A CUDA driver call failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] cudarc::driver::DriverError),

    /// A non-negative index appears twice in a row whose entries must be distinct (a key
    /// attended twice would be counted twice in the softmax).
    #[error("index tensor `{tensor}` at {at}: value {value} repeats the entry at slot {first_slot} of the same row")]
    DuplicateIndex { tensor: &'static str, at: String, value: i64, first_slot: usize },

    /// An index tensor that must be strictly descending is not (vertical-slash slash
    /// indexes, which MInference orders farthest diagonal first).
    #[error("index tensor `{tensor}` at {at}: value {value} does not follow {prev} in descending order without repeats")]
    IndexNotDescending { tensor: &'static str, at: String, prev: i64, value: i64 },

    /// The PTX simulator refused or faulted a launch (memcheck, barrier, racecheck, an
    /// unsupported instruction...); the message is the simulator's.
    #[error("PTX simulator: {0}")]
    Simulator(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a multi-dimensional position as `[a, b, c]` for error messages.
pub(crate) fn at(position: &[usize]) -> String {
    let parts: Vec<String> = position.iter().map(|p| p.to_string()).collect();
    format!("[{}]", parts.join(", "))
}
