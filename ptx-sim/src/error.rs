//! Errors: parse errors name the line and token; launch errors name the kernel, block,
//! thread, PTX line and address, so a memcheck report points at the faulty instruction.

/// Where in a launch something happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Kernel name.
    pub kernel: String,
    /// Block index (x, y, z).
    pub block: [u32; 3],
    /// Thread index within the block (x, y, z).
    pub thread: [u32; 3],
    /// 1-based line of the instruction in the PTX text.
    pub line: u32,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [bx, by, bz] = self.block;
        let [tx, ty, tz] = self.thread;
        write!(f, "kernel {} block ({bx},{by},{bz}) thread ({tx},{ty},{tz}) at PTX line {}", self.kernel, self.line)
    }
}

/// Everything the simulator can report.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SimError {
    /// The PTX text could not be parsed or uses something the simulator does not model.
    #[error("PTX line {line}: {message} (at `{token}`)")]
    Parse { line: u32, token: String, message: String },
    /// No `.entry` of that name in the module.
    #[error("no kernel named `{0}` in the module")]
    UnknownKernel(String),
    /// Kernel arguments that do not match the `.param` list.
    #[error("kernel {kernel}: {message}")]
    Arguments { kernel: String, message: String },
    /// A grid, block or shared-memory size the launch cannot use.
    #[error("launch of {kernel}: {message}")]
    Config { kernel: String, message: String },
    /// memcheck: an access outside every allocation or misaligned for its size.
    #[error("{site}: {instr}: {space} access of {size} bytes at {addr:#x}: {reason}")]
    Memory { site: Site, instr: String, space: &'static str, addr: u64, size: u32, reason: String },
    /// A barrier that not every expected thread reached (the launch would hang on a GPU).
    #[error("kernel {kernel} block ({},{},{}): barrier at PTX line {line}: {message}", block[0], block[1], block[2])]
    Barrier { kernel: String, block: [u32; 3], line: u32, message: String },
    /// racecheck: two threads touched a shared-memory byte between the same two barriers,
    /// at least one of them writing.
    #[error("{site}: {instr}: shared-memory {kind} race at shared address {addr:#x} with thread ({},{},{}) (its access at PTX line {other_line})", other_thread[0], other_thread[1], other_thread[2])]
    Race { site: Site, instr: String, kind: &'static str, addr: u64, other_thread: [u32; 3], other_line: u32 },
    /// Any other fault during execution (a collective whose member lanes cannot all arrive,
    /// a warp-level instruction executed by a partial warp, an unsupported operation...).
    #[error("{site}: {instr}: {message}")]
    Execution { site: Site, instr: String, message: String },
    /// A host-side copy or free on a pointer that is not a live allocation, or out of range.
    #[error("device memory: {0}")]
    Host(String),
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, SimError>;
