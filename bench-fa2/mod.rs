//! FlashAttention-2's forward kernel (flash-attn 2.8.3, `flash_fwd_kernel`) on ptx-sim: the
//! yardstick this crate's kernels are measured against (simulator work counters, not GPU
//! times). Included as a module by tests/fa2_sim.rs (and by perf reports):
//!
//! ```ignore
//! #[path = "../bench-fa2/mod.rs"]
//! mod fa2;
//! ```
//!
//! The PTX is a checked-in fixture (`bench-fa2/ptx/*.ptx.gz`, made by scripts/fa2-ptx.sh from
//! bench-fa2/fa2_fwd.cu), decompressed with the `gzip` program. The launch mirrors FA2's
//! host code for a contiguous BSHD bf16 problem: `mha_fwd` and `set_params_fprop`
//! (csrc/flash_attn/flash_api.cpp) fill `Flash_fwd_params`, at the field offsets the
//! compiler reported (generated/fa2_layout.rs), and `run_flash_fwd`
//! (flash_fwd_launch_template.h) chooses the instantiation, grid, block and shared memory.
//! See bench-fa2/README.md.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use half::bf16;
use ptx_sim::{Counters, Device, DevicePtr, LaunchConfig, LaunchOptions, Module};
use sparse_attn::sim::HostTensors;
use sparse_attn::AttnShape;

/// Errors are messages: this is a test and benchmark helper.
pub type Result<T> = std::result::Result<T, String>;

/// One `Flash_fwd_params` field: its `offsetof` and `sizeof` as the host compiler laid it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

/// The constants of one `Flash_fwd_kernel_traits` instantiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traits {
    pub head_dim: usize,
    pub block_m: usize,
    pub block_n: usize,
    pub n_warps: usize,
    pub n_threads: usize,
    /// `kSmemSize`: the dynamic shared memory `run_flash_fwd` launches with.
    pub smem_bytes: usize,
}

/// One instantiated `flash_fwd_kernel<Traits, Is_dropout=false, Is_causal, Is_local=false,
/// Has_alibi=false, Is_even_MN, Is_even_K=true, Is_softcap=false, Return_softmax=false>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    pub head_dim: usize,
    pub causal: bool,
    pub even_mn: bool,
    /// Fixture file under bench-fa2/ptx/.
    pub ptx: &'static str,
    /// The mangled `.entry` name.
    pub name: &'static str,
}

mod generated {
    use super::{Field, KernelEntry, Traits};
    include!("generated/fa2_layout.rs");
}
// Each includer (test, perf report) uses a different subset.
#[allow(unused_imports)]
pub use generated::{field, INPUTS_FNV1A64, KERNELS, NVCC_VERSION, PARAMS_ALIGN, PARAMS_SIZE, TRAITS};

/// The files scripts/fa2-ptx.sh builds the fixtures from (relative to the repository root);
/// their hash is recorded in generated/fa2_layout.rs so that a change without regenerating
/// is caught without nvcc. Must agree with the list in the script.
pub const INPUTS: &[&str] = &[
    "bench-fa2/fa2_fwd.cu",
    "bench-fa2/fa2_layout.cu",
    "bench-fa2/fa2_traits.h",
    "bench-fa2/shim/ATen/cuda/CUDAGeneratorImpl.h",
    "bench-fa2/shim/ATen/cuda/detail/UnpackRaw.cuh",
    "bench-fa2/shim/c10/cuda/CUDAException.h",
    "scripts/fa2-ptx.sh",
];

/// The repository root (where bench-fa2/ lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fnv1a64(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// FNV-1a 64 over `INPUTS` (each path and content followed by a NUL), as the script computes it.
pub fn inputs_hash(root: &Path) -> Result<u64> {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for path in INPUTS {
        let data = std::fs::read(root.join(path)).map_err(|e| format!("{path}: {e}"))?;
        h = fnv1a64(h, path.as_bytes());
        h = fnv1a64(h, &[0]);
        h = fnv1a64(h, &data);
        h = fnv1a64(h, &[0]);
    }
    Ok(h)
}

/// The traits FA2 uses on sm80 for `head_dim` (64 or 128).
pub fn traits(head_dim: usize) -> Result<Traits> {
    TRAITS.iter().copied().find(|t| t.head_dim == head_dim).ok_or_else(|| format!("no FA2 kernel for head_dim {head_dim} (64 or 128)"))
}

/// The instantiation `run_flash_fwd` launches.
pub fn kernel(head_dim: usize, causal: bool, even_mn: bool) -> Result<KernelEntry> {
    KERNELS
        .iter()
        .copied()
        .find(|k| k.head_dim == head_dim && k.causal == causal && k.even_mn == even_mn)
        .ok_or_else(|| format!("no FA2 kernel for head_dim {head_dim} causal={causal} even_mn={even_mn}"))
}

/// Decompresses a fixture with the `gzip` program (no compression crate in the dependency tree).
pub fn read_gz(path: &Path) -> Result<String> {
    if !path.is_file() {
        return Err(format!("{} is missing (run scripts/fa2-ptx.sh)", path.display()));
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run gzip to decompress {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!("gzip -dc {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| format!("{}: not UTF-8: {e}", path.display()))
}

/// The PTX module of `head_dim`'s kernels, ready for `Device::load_ptx`.
pub fn ptx(head_dim: usize) -> Result<String> {
    let file = KERNELS.iter().find(|k| k.head_dim == head_dim).ok_or_else(|| format!("no FA2 kernel for head_dim {head_dim}"))?.ptx;
    let text = read_gz(&root().join("bench-fa2/ptx").join(file))?;
    Ok(text)
}

/// Device addresses of one launch: q `[b, seq_q, heads_q, d]`, k and v `[b, seq_k, heads_kv,
/// d]`, out like q (all bf16, contiguous), lse `[b, heads_q, seq_q]` f32, and the two u64
/// of `rng_state` that `mha_fwd` always allocates.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    pub q: DevicePtr,
    pub k: DevicePtr,
    pub v: DevicePtr,
    pub out: DevicePtr,
    pub lse: DevicePtr,
    pub rng_state: DevicePtr,
}

/// Everything `run_flash_fwd` passes to `cudaLaunchKernel`.
#[derive(Debug, Clone)]
pub struct Launch {
    pub kernel: KernelEntry,
    pub config: LaunchConfig,
    /// The `Flash_fwd_params` bytes (`PARAMS_SIZE`).
    pub params: Vec<u8>,
}

/// `Flash_fwd_params` under construction: zeroed (`params = {}` in set_params_fprop), then
/// written field by field at the compiler's offsets.
struct Params(Vec<u8>);

impl Params {
    fn set(&mut self, f: Field, bytes: &[u8]) {
        assert_eq!(bytes.len(), f.size, "Flash_fwd_params::{} is {} bytes", f.name, f.size);
        self.0[f.offset..f.offset + f.size].copy_from_slice(bytes);
    }
    fn ptr(&mut self, f: Field, p: DevicePtr) {
        self.set(f, &p.0.to_le_bytes());
    }
    fn i64(&mut self, f: Field, v: usize) {
        self.set(f, &(v as i64).to_le_bytes());
    }
    fn i32(&mut self, f: Field, v: i64) {
        self.set(f, &i32::try_from(v).expect("fits FA2's int fields").to_le_bytes());
    }
    fn f32(&mut self, f: Field, v: f32) {
        self.set(f, &v.to_le_bytes());
    }
    fn bool(&mut self, f: Field, v: bool) {
        self.set(f, &[v as u8]);
    }
}

fn round_multiple(x: usize, m: usize) -> usize {
    x.div_ceil(m) * m
}

/// The launch FA2's `mha_fwd` makes for `shape` (bf16, contiguous BSHD, no dropout, no
/// window, ALiBi or softcap, `softmax_scale`), with two deliberate differences: it always
/// runs `flash_fwd_kernel` (what `mha_fwd` runs when its split-KV heuristic picks one split,
/// i.e. when batch x heads x ceil(seq_q / 64) fills 80% of twice the SM count), and it keeps
/// q in its own layout when `seq_q == 1` (mha_fwd then swaps query heads into the sequence
/// for GQA, a host-side reshape).
pub fn plan(shape: &AttnShape, causal: bool, softmax_scale: f32, bufs: &Buffers) -> Result<Launch> {
    let (b, sq, sk, h, hk, d) = (shape.batch(), shape.seq_q(), shape.seq_k(), shape.heads_q(), shape.heads_kv(), shape.head_dim());
    let t = traits(d)?;
    if sk == 0 {
        return Err("seq_k == 0: mha_fwd writes zeros and launches nothing".into());
    }
    // mha_fwd: "causal=true is the same as causal=false in this case".
    let causal = causal && sq != 1;
    // mha_fwd: window_size_left = window_size_right = -1 (flash_attn_func's default (-1, -1)),
    // then `if (is_causal) window_size_right = 0`; set_params_fprop then turns a negative left
    // window with a non-negative right one into seqlen_k.
    let (window_left, window_right): (i64, i64) = if causal { (sk as i64, 0) } else { (-1, -1) };

    let mut p = Params(vec![0; PARAMS_SIZE]);
    // set_params_fprop.
    p.bool(field::IS_BF16, true);
    p.ptr(field::Q_PTR, bufs.q);
    p.ptr(field::K_PTR, bufs.k);
    p.ptr(field::V_PTR, bufs.v);
    // Strides in elements: stride(-3) is the row (sequence) stride, stride(-2) the head's.
    p.i64(field::Q_ROW_STRIDE, h * d);
    p.i64(field::K_ROW_STRIDE, hk * d);
    p.i64(field::V_ROW_STRIDE, hk * d);
    p.i64(field::Q_HEAD_STRIDE, d);
    p.i64(field::K_HEAD_STRIDE, d);
    p.i64(field::V_HEAD_STRIDE, d);
    p.ptr(field::O_PTR, bufs.out);
    p.i64(field::O_ROW_STRIDE, h * d);
    p.i64(field::O_HEAD_STRIDE, d);
    p.i64(field::Q_BATCH_STRIDE, sq * h * d);
    p.i64(field::K_BATCH_STRIDE, sk * hk * d);
    p.i64(field::V_BATCH_STRIDE, sk * hk * d);
    p.i64(field::O_BATCH_STRIDE, sq * h * d);
    // cu_seqlens_q / cu_seqlens_k / seqused_k / p_ptr stay null.
    p.ptr(field::SOFTMAX_LSE_PTR, bufs.lse);
    p.i32(field::B, b as i64);
    p.i32(field::H, h as i64);
    p.i32(field::H_K, hk as i64);
    p.i32(field::H_H_K_RATIO, (h / hk) as i64);
    p.i32(field::SEQLEN_Q, sq as i64);
    p.i32(field::SEQLEN_K, sk as i64);
    p.i32(field::SEQLEN_Q_ROUNDED, round_multiple(sq, 128) as i64);
    p.i32(field::SEQLEN_K_ROUNDED, round_multiple(sk, 128) as i64);
    p.i32(field::D, d as i64);
    p.i32(field::D_ROUNDED, round_multiple(d, if d <= 128 { 32 } else { 64 }) as i64);
    // softcap <= 0: scale_softmax_log2 = softmax_scale * M_LOG2E (float * double in C++).
    p.f32(field::SOFTCAP, 0.0);
    p.f32(field::SCALE_SOFTMAX, softmax_scale);
    p.f32(field::SCALE_SOFTMAX_LOG2, (softmax_scale as f64 * std::f64::consts::LOG2_E) as f32);
    // p_dropout = 0: the probability of keeping is 1.
    let keep = 1.0f32;
    p.f32(field::P_DROPOUT, keep);
    p.set(field::P_DROPOUT_IN_UINT8_T, &[(keep as f64 * 255.0).floor() as u8]);
    p.f32(field::RP_DROPOUT, 1.0 / keep);
    p.f32(field::SCALE_SOFTMAX_RP_DROPOUT, (1.0 / keep) * softmax_scale);
    p.bool(field::IS_CAUSAL, causal);
    p.i32(field::WINDOW_SIZE_LEFT, window_left);
    p.i32(field::WINDOW_SIZE_RIGHT, window_right);
    p.bool(field::IS_SEQLENS_K_CUMULATIVE, true);
    p.bool(field::UNPADDED_LSE, false);
    p.bool(field::SEQLENQ_NGROUPS_SWAPPED, false);
    // set_params_splitkv: one split (see above); mha_fwd: rng_state. philox_args stays zero
    // (no dropout), as do alibi_slopes_ptr and every other field.
    p.i32(field::NUM_SPLITS, 1);
    p.ptr(field::RNG_STATE, bufs.rng_state);

    // run_flash_fwd.
    let even_mn = sk % t.block_n == 0 && sq % t.block_m == 0;
    let even_k = d == t.head_dim;
    let local = (window_left >= 0 || window_right >= 0) && !causal;
    assert!(even_k && !local, "only the Is_even_K, non-local instantiations exist");
    let kernel = kernel(d, causal, even_mn)?;
    let m_blocks = sq.div_ceil(t.block_m);
    let dim = |v: usize, what: &str| u32::try_from(v).map_err(|_| format!("{what} {v} does not fit a grid dimension"));
    let config = LaunchConfig {
        grid: [dim(m_blocks, "m blocks")?, dim(b, "batch")?, dim(h, "heads")?],
        block: [t.n_threads as u32, 1, 1],
        dynamic_shared_bytes: t.smem_bytes as u32,
    };
    Ok(Launch { kernel, config, params: p.0 })
}

/// What one simulated FA2 forward produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[b, seq_q, heads_q, d]`.
    pub out: Vec<bf16>,
    /// `[b, heads_q, seq_q]`, natural log.
    pub lse: Vec<f32>,
    pub counters: Counters,
    pub kernel: KernelEntry,
}

/// A simulated device with FA2's modules loaded on demand (parsing one takes about a second).
#[derive(Default)]
pub struct Fa2Sim {
    pub device: Device,
    modules: Mutex<HashMap<usize, Module>>,
}

impl Fa2Sim {
    pub fn new() -> Self {
        Self::default()
    }

    /// The module holding `head_dim`'s kernels.
    pub fn module(&self, head_dim: usize) -> Result<Module> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(&head_dim) {
            return Ok(m.clone());
        }
        let m = self.device.load_ptx(&ptx(head_dim)?).map_err(|e| format!("ptx-sim refused FA2's hdim{head_dim} PTX: {e}"))?;
        modules.insert(head_dim, m.clone());
        Ok(m)
    }

    /// Runs FA2's forward on host tensors (contiguous BSHD bf16; q `[b, seq_q, heads_q, d]`, k
    /// and v `[b, seq_k, heads_kv, d]`) with memcheck (and `opts`), and downloads
    /// output and LSE. Output and LSE start as NaN, so anything the kernel fails to write shows.
    pub fn run(&self, shape: &AttnShape, causal: bool, softmax_scale: f32, tensors: HostTensors<'_, bf16>, opts: &LaunchOptions) -> Result<Output> {
        let sim = |e: ptx_sim::SimError| e.to_string();
        let HostTensors { q, k, v, .. } = tensors;
        let (q_len, kv_len, lse_len) = (shape.q_len(), shape.kv_len(), shape.lse_len());
        if q.len() != q_len || k.len() != kv_len || v.len() != kv_len {
            return Err(format!("tensor lengths q {} k {} v {} do not fit {shape:?}", q.len(), k.len(), v.len()));
        }
        let module = self.module(shape.head_dim())?;
        let dev = &self.device;
        let bufs = Buffers {
            q: dev.upload(q).map_err(sim)?,
            k: dev.upload(k).map_err(sim)?,
            v: dev.upload(v).map_err(sim)?,
            out: dev.upload(&vec![bf16::NAN; q_len]).map_err(sim)?,
            lse: dev.upload(&vec![f32::NAN; lse_len]).map_err(sim)?,
            rng_state: dev.upload(&[0u64; 2]).map_err(sim)?,
        };
        let launch = plan(shape, causal, softmax_scale, &bufs)?;
        let result = dev.launch(&module, launch.kernel.name, &launch.config, &[&launch.params], opts).map_err(sim);
        let downloaded = result.and_then(|counters| {
            Ok(Output { out: dev.download(bufs.out, q_len).map_err(sim)?, lse: dev.download(bufs.lse, lse_len).map_err(sim)?, counters, kernel: launch.kernel })
        });
        for p in [bufs.q, bufs.k, bufs.v, bufs.out, bufs.lse, bufs.rng_state] {
            dev.free(p).map_err(sim)?;
        }
        downloaded
    }
}

/// SplitMix64-driven unit normals rounded to bf16 (the inputs of [`counters`]).
pub fn random_bf16(seed: u64, n: usize) -> Vec<bf16> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-300), next());
            bf16::from_f64((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos())
        })
        .collect()
}

/// FA2's work counters at `shape` (bf16, head_dim 64 or 128, scale 1/sqrt(d)) on random
/// inputs: the yardstick a perf report compares this crate's kernels with.
pub fn counters(sim: &Fa2Sim, shape: &AttnShape, causal: bool) -> Result<Counters> {
    let q = random_bf16(1, shape.q_len());
    let k = random_bf16(2, shape.kv_len());
    let v = random_bf16(3, shape.kv_len());
    let scale = 1.0 / (shape.head_dim() as f32).sqrt();
    Ok(sim.run(shape, causal, scale, HostTensors { q: &q, k: &k, v: &v, sinks: None }, &LaunchOptions::default())?.counters)
}
