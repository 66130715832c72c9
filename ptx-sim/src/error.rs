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
    Parse {
        /// 1-based line in the PTX text.
        line: u32,
        /// The token where parsing stopped (the opcode, for an instruction it cannot decode).
        token: String,
        /// What is wrong.
        message: String,
    },
    /// No `.entry` of that name in the module.
    #[error("no kernel named `{0}` in the module")]
    UnknownKernel(String),
    /// Kernel arguments that do not match the `.param` list.
    #[error("kernel {kernel}: {message}")]
    Arguments {
        /// Kernel name.
        kernel: String,
        /// Which argument and why.
        message: String,
    },
    /// A grid, block or shared-memory size the launch cannot use.
    #[error("launch of {kernel}: {message}")]
    Config {
        /// Kernel name.
        kernel: String,
        /// Which limit was broken.
        message: String,
    },
    /// memcheck: an access outside every allocation or misaligned for its size.
    #[error("{0}")]
    Memory(Box<MemoryFault>),
    /// A barrier that not every expected thread reached (the launch would hang on a GPU).
    #[error("kernel {kernel} block ({},{},{}): barrier at PTX line {line}: {message}", block[0], block[1], block[2])]
    Barrier {
        /// Kernel name.
        kernel: String,
        /// Block index (x, y, z).
        block: [u32; 3],
        /// PTX line of the barrier the arrived threads wait at.
        line: u32,
        /// How many threads arrived of how many, and one thread that never will.
        message: String,
    },
    /// racecheck: two threads touched a shared-memory byte between the same two barriers,
    /// at least one of them writing.
    #[error("{0}")]
    Race(Box<RaceFault>),
    /// Any other fault during execution (a collective whose member lanes cannot all arrive,
    /// a warp-level instruction executed by a partial warp, an unsupported operation...).
    #[error("{site}: {instr}: {message}")]
    Execution {
        /// Where it happened.
        site: Site,
        /// The PTX instruction, as written.
        instr: String,
        /// What went wrong.
        message: String,
    },
    /// A host-side copy or free on a pointer that is not a live allocation, or out of range.
    #[error("device memory: {0}")]
    Host(String),
}

/// A memcheck fault (boxed in `SimError` so that results stay small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{site}: {instr}: {space} access of {size} bytes at {addr:#x}: {reason}")]
pub struct MemoryFault {
    /// Where it happened.
    pub site: Site,
    /// The PTX instruction, as written.
    pub instr: String,
    /// State space of the access as the instruction names it (`global`, `shared`, `generic`...).
    pub space: &'static str,
    /// The address accessed (in that space).
    pub addr: u64,
    /// Bytes accessed.
    pub size: u32,
    /// What is wrong: out of bounds (and of what), misaligned, read-only.
    pub reason: String,
}

/// A racecheck report (boxed in `SimError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{site}: {instr}: shared-memory {kind} race at shared address {addr:#x} with thread ({},{},{}) (its access at PTX line {other_line})", other_thread[0], other_thread[1], other_thread[2])]
pub struct RaceFault {
    /// The second access, which completed the race.
    pub site: Site,
    /// Its PTX instruction.
    pub instr: String,
    /// `read-after-write`, `write-after-read` or `write-after-write`.
    pub kind: &'static str,
    /// The shared-memory byte address.
    pub addr: u64,
    /// The thread of the earlier access (`u32::MAX` in every component when several
    /// threads had read the byte).
    pub other_thread: [u32; 3],
    /// PTX line of the earlier access.
    pub other_line: u32,
}

/// Result type of the crate.
pub type Result<T> = std::result::Result<T, SimError>;
