//! The public cudarc path (`sparse_attn::cuda`) on the simulated CUDA driver
//! (`ptx-sim-driver`): cudarc's own context, stream, event, allocation and copy calls, the
//! crate's kernels against the host references, the adversarial order of unsynchronised
//! streams, and a planted out-of-bounds launch that must end in a sticky
//! CUDA_ERROR_ILLEGAL_ADDRESS with a fault report naming the kernel.
//!
//! Every test here selects the simulated driver first (`ptx_sim_driver::install`), so this
//! binary never binds a real GPU; the other test binaries never bind the simulator.

mod attention_cases;
mod common;

use std::sync::Arc;

use cudarc::driver::sys::{self, CUresult};
use cudarc::driver::{result, CudaContext, DriverError};
use half::f16;
use sparse_attn::cuda::{attention_dense, attention_raw, topk_select, AttnTensors};
use sparse_attn::pattern::topk_select::{select_topk_host, SelectDims};
use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::reference::{dense_attention, RefInputs};
use sparse_attn::{AttnOptions, AttnShape, DType, Source};

/// Set in the child process of the fault test.
const CHILD: &str = "SPARSE_ATTN_SIM_DRIVER_CHILD";

/// Selects the simulated driver for this process (before any cudarc call) and returns the
/// primary context.
fn simulated() -> Arc<CudaContext> {
    ptx_sim_driver::install().expect("the simulated driver library");
    CudaContext::new(0).expect("a context on the simulated device")
}

/// The crate's kernels are embedded only when the build found a CUDA compiler; without
/// them the kernel tests skip (a failure under SPARSE_ATTN_REQUIRE_KERNELS=1, as elsewhere).
fn kernels_or_skip() -> bool {
    if !sparse_attn::ptx::modules().is_empty() {
        return true;
    }
    assert!(std::env::var_os("SPARSE_ATTN_REQUIRE_KERNELS").is_none(), "kernels required but not built");
    println!("skipped: the crate was built without kernels");
    false
}

#[test]
fn the_driver_abi_matches_cudarc() {
    use ptx_sim_driver::abi::status;
    for (ours, theirs) in [
        (status::INVALID_VALUE, CUresult::CUDA_ERROR_INVALID_VALUE),
        (status::NOT_INITIALIZED, CUresult::CUDA_ERROR_NOT_INITIALIZED),
        (status::INVALID_CONTEXT, CUresult::CUDA_ERROR_INVALID_CONTEXT),
        (status::NO_BINARY_FOR_GPU, CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU),
        (status::INVALID_PTX, CUresult::CUDA_ERROR_INVALID_PTX),
        (status::INVALID_HANDLE, CUresult::CUDA_ERROR_INVALID_HANDLE),
        (status::NOT_FOUND, CUresult::CUDA_ERROR_NOT_FOUND),
        (status::ILLEGAL_ADDRESS, CUresult::CUDA_ERROR_ILLEGAL_ADDRESS),
        (status::CONTEXT_IS_DESTROYED, CUresult::CUDA_ERROR_CONTEXT_IS_DESTROYED),
        (status::MISALIGNED_ADDRESS, CUresult::CUDA_ERROR_MISALIGNED_ADDRESS),
        (status::LAUNCH_FAILED, CUresult::CUDA_ERROR_LAUNCH_FAILED),
        (status::NOT_SUPPORTED, CUresult::CUDA_ERROR_NOT_SUPPORTED),
    ] {
        assert_eq!(ours, theirs as u32, "{theirs:?}");
    }
    assert_eq!(ptx_sim_driver::abi::func_attr::MAX_DYNAMIC_SHARED_SIZE_BYTES, sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as i32);
}

#[test]
fn cudarc_sees_an_sm90_device_and_moves_memory() {
    let ctx = simulated();
    assert!(ptx_sim_driver::is_installed());
    assert_eq!(ctx.name().unwrap(), "ptx-sim (simulated)");
    assert_eq!(ctx.compute_capability().unwrap(), (9, 0));
    assert_eq!(ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).unwrap(), 132);
    assert_eq!(ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN).unwrap(), 227 * 1024);
    assert_eq!(ctx.attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_WARP_SIZE).unwrap(), 32);
    assert_eq!(CudaContext::device_count().unwrap(), 1);
    assert!(ctx.has_async_alloc(), "stream-ordered allocation is modelled");

    let stream = ctx.default_stream();
    let host: Vec<u32> = (0..1000).collect();
    let dev = stream.clone_htod(&host).unwrap();
    let copy = stream.clone_dtod(&dev).unwrap();
    assert_eq!(stream.clone_dtoh(&copy).unwrap(), host);
    let zeros = stream.alloc_zeros::<u16>(77).unwrap();
    assert_eq!(stream.clone_dtoh(&zeros).unwrap(), vec![0u16; 77]);
    // memset D16 / D32 through the raw calls cudarc wraps.
    let mut words = stream.alloc_zeros::<u32>(8).unwrap();
    {
        use cudarc::driver::DevicePtrMut;
        let (p, _guard) = words.device_ptr_mut(&stream);
        // SAFETY: 8 u32 of a live allocation of this context.
        unsafe {
            sys::cuMemsetD32Async(p, 0xdead_beef, 8, stream.cu_stream()).result().unwrap();
            sys::cuMemsetD16Async(p, 0x1234, 2, stream.cu_stream()).result().unwrap();
            assert_eq!(sys::cuMemsetD32Async(p + 2, 0, 1, stream.cu_stream()), CUresult::CUDA_ERROR_INVALID_VALUE, "misaligned D32");
            assert_eq!(sys::cuMemsetD8Async(p, 0, 33, stream.cu_stream()), CUresult::CUDA_ERROR_INVALID_VALUE, "past the end");
        }
    }
    let got = stream.clone_dtoh(&words).unwrap();
    assert_eq!(got[0], 0x1234_1234);
    assert_eq!(got[1..], [0xdead_beef; 7]);

    // No GPU time from a simulator.
    let start = stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    let end = stream.record_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT)).unwrap();
    assert_eq!(start.elapsed_ms(&end).unwrap_err(), DriverError(CUresult::CUDA_ERROR_NOT_SUPPORTED));
    // A cubin is refused so that a loader falls back to PTX; a bad handle is named as such.
    let elf = b"\x7fELF\x02\x01\x01\0";
    // SAFETY: the image is readable; the context is current (CudaContext::new).
    let refused = unsafe { result::module::load_data(elf.as_ptr() as *const _) };
    assert_eq!(refused.unwrap_err(), DriverError(CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU));
    // SAFETY: a made-up handle, which the driver must reject rather than follow.
    assert_eq!(unsafe { sys::cuStreamSynchronize(0x1234_5678 as sys::CUstream) }, CUresult::CUDA_ERROR_INVALID_HANDLE);
    // SAFETY: null out-pointer, rejected.
    assert_eq!(unsafe { sys::cuDeviceGetCount(std::ptr::null_mut()) }, CUresult::CUDA_ERROR_INVALID_VALUE);
    stream.synchronize().unwrap();
}

#[test]
fn topk_select_through_cudarc_equals_the_host_rule() {
    if !kernels_or_skip() {
        return;
    }
    let ctx = simulated();
    let stream = ctx.new_stream().unwrap();
    let dims = SelectDims { batch: 2, seq_q: 5, heads: 2, seq_k: 100 };
    let mut rng = common::Rng::new(13);
    // Each row a permutation of 0..seq_k: no two scores tie.
    let mut scores = Vec::new();
    for _ in 0..dims.batch * dims.seq_q * dims.heads {
        let mut row: Vec<f32> = (0..dims.seq_k).map(|i| i as f32).collect();
        for i in (1..row.len()).rev() {
            row.swap(i, rng.below(i + 1));
        }
        scores.extend(row);
    }
    for causal in [false, true] {
        let k = 8;
        let want = select_topk_host(&scores, &dims, k, causal).unwrap();
        let dev = stream.clone_htod(&scores).unwrap();
        let mut out = stream.alloc_zeros::<i32>(want.len()).unwrap();
        topk_select(&stream, &dims, k, causal, &dev, &mut out).unwrap();
        assert_eq!(stream.clone_dtoh(&out).unwrap(), want, "causal {causal}");
    }
}

/// Dense f16 attention through `cuda::attention_dense` against the f64 reference.
fn dense_case(shape: AttnShape, seed: u64) {
    let ctx = simulated();
    let stream = ctx.default_stream();
    let mut rng = common::Rng::new(seed);
    let (q, k, v): (Vec<f16>, Vec<f16>, Vec<f16>) = (rng.tensor(shape.q_len()), rng.tensor(shape.kv_len()), rng.tensor(shape.kv_len()));
    let opts = AttnOptions { causal: true, softmax_scale: None, return_lse: true, ..AttnOptions::default() };
    let want = dense_attention(&RefInputs::new(shape, &q, &k, &v).unwrap(), &opts).unwrap();
    let (qd, kd, vd) = (stream.clone_htod(&q).unwrap(), stream.clone_htod(&k).unwrap(), stream.clone_htod(&v).unwrap());
    // Not zeroed: the driver fills fresh memory with NaN bits, so a row the kernel forgot
    // to write fails the comparison.
    // SAFETY: every element is written by the kernel before it is read back.
    let mut out = unsafe { stream.alloc::<f16>(shape.q_len()) }.unwrap();
    let mut lse = unsafe { stream.alloc::<f32>(shape.lse_len()) }.unwrap();
    let tensors = AttnTensors::contiguous(&shape, &qd, &kd, &vd, &mut out, Some(&mut lse));
    attention_dense(&stream, &shape, &opts, tensors).unwrap();
    let got: Vec<f16> = stream.clone_dtoh(&out).unwrap();
    let got_lse = stream.clone_dtoh(&lse).unwrap();
    for (i, (o, &e)) in got.iter().zip(&want.out).enumerate() {
        let o = o.to_f64();
        assert!((o - e).abs() <= attention_cases::out_tolerance_at(DType::F16, e), "{shape:?}: out[{i}] = {o}, want {e}");
    }
    for (i, (&l, &e)) in got_lse.iter().zip(&want.lse).enumerate() {
        assert!((l as f64 - e).abs() <= attention_cases::LSE_TOLERANCE, "{shape:?}: lse[{i}] = {l}, want {e}");
    }
    // The simulator's work counters come through the driver (no GPU time exists here).
    let work = ptx_sim_driver::counters(false).expect("the simulated driver is loaded");
    assert!(work.mma > 0 && work.global_store_bytes > 0, "{work:?}");
}

#[test]
fn dense_attention_through_cudarc_matches_the_reference() {
    if !kernels_or_skip() {
        return;
    }
    // head_dim 64 (48 KiB of shared memory) with GQA and rows past a tile; head_dim 128,
    // whose 64 KiB need the opt-in through cuFuncSetAttribute.
    dense_case(AttnShape::new(1, 70, 90, 2, 1, 64).unwrap(), 5);
    dense_case(AttnShape::new(1, 64, 64, 1, 1, 128).unwrap(), 6);
}

#[test]
fn streams_without_an_event_run_in_the_order_that_breaks_them() {
    let _primary = simulated();
    // Its own context: event tracking is switched off here only.
    let ctx = CudaContext::new_non_primary(0, 0).unwrap();
    // SAFETY: the slices below are ordered by hand (or, on purpose, not at all).
    unsafe { ctx.disable_event_tracking() };
    let (a, b) = (ctx.new_stream().unwrap(), ctx.new_stream().unwrap());
    let src = a.clone_htod(&[7u32; 64]).unwrap();
    let mut dst = b.alloc_zeros::<u32>(64).unwrap();
    // Forgotten: b.join(&a). b was enqueued last, so it runs first and reads the memory
    // before a's copy, as a GPU may.
    b.memcpy_dtod(&src, &mut dst).unwrap();
    ctx.synchronize().unwrap();
    assert_eq!(b.clone_dtoh(&dst).unwrap(), vec![u32::MAX; 64], "stale data (fresh memory is all ones)");
    // With the event the copy sees a's data.
    let src = a.clone_htod(&[9u32; 64]).unwrap();
    b.join(&a).unwrap();
    b.memcpy_dtod(&src, &mut dst).unwrap();
    ctx.synchronize().unwrap();
    assert_eq!(b.clone_dtoh(&dst).unwrap(), vec![9u32; 64]);
}

#[test]
fn an_out_of_bounds_launch_is_a_sticky_illegal_address_in_its_own_process() {
    if std::env::var_os(CHILD).is_some() || !kernels_or_skip() {
        return;
    }
    // The child selects the driver the way a process that links libcuda would: a
    // directory of libcuda links on LD_LIBRARY_PATH.
    let lib = ptx_sim_driver::library_path().unwrap();
    let dir = std::env::temp_dir().join(format!("sparse-attn-sim-driver-{}", std::process::id()));
    ptx_sim_driver::library_dir(&lib, &dir).unwrap();
    let path = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(p) => format!("{}:{}", dir.display(), p.to_string_lossy()),
        None => dir.display().to_string(),
    };
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "planted_out_of_bounds_launch", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("LD_LIBRARY_PATH", path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran its test:\n{stdout}");
    assert!(stderr.contains("CUDA_ERROR_ILLEGAL_ADDRESS") && stderr.contains("attn_fwd_dense_f16_hd64"), "report on stderr:\n{stderr}");
}

/// The child of the test above: launches dense attention with an output buffer of 16
/// elements that `attention_raw` is told holds the whole output.
#[test]
fn planted_out_of_bounds_launch() {
    if std::env::var_os(CHILD).is_none() {
        println!("runs only as the child process of an_out_of_bounds_launch_is_a_sticky_illegal_address_in_its_own_process");
        return;
    }
    assert!(!ptx_sim_driver::is_installed(), "nothing loaded libcuda yet");
    let ctx = CudaContext::new(0).unwrap();
    assert!(ptx_sim_driver::is_installed(), "LD_LIBRARY_PATH selected the simulated driver");
    let stream = ctx.default_stream();
    let shape = AttnShape::new(1, 64, 64, 1, 1, 64).unwrap();
    let qkv = stream.alloc_zeros::<f16>(shape.q_len()).unwrap();
    let small = stream.alloc_zeros::<f16>(16).unwrap();
    let addr = |s: &cudarc::driver::CudaSlice<f16>| {
        use cudarc::driver::DevicePtr;
        s.device_ptr(&stream).0
    };
    let full = |a| DeviceBuffer { addr: a, len: shape.q_len() };
    let bufs = AttnBuffers { q: full(addr(&qkv)), k: full(addr(&qkv)), v: full(addr(&qkv)), out: full(addr(&small)), lse: None, sinks: None, layouts: AttnLayouts::contiguous(&shape) };
    let opts = AttnOptions { causal: false, softmax_scale: None, return_lse: false, ..AttnOptions::default() };
    // SAFETY: deliberately false: `out` holds 16 elements, not the whole output. The
    // simulated driver checks every access, so the kernel faults instead of corrupting.
    unsafe { attention_raw(stream.cu_stream(), &shape, DType::F16, &opts, &bufs, &Source::Dense) }.expect("the launch is enqueued");
    let err = stream.synchronize().unwrap_err();
    assert_eq!(err, DriverError(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS));
    // Sticky: later calls on the context report it too.
    assert_eq!(ctx.synchronize().unwrap_err(), err);
    assert_eq!(stream.alloc_zeros::<u8>(4).unwrap_err(), err);
    let report = ptx_sim_driver::fault_report().expect("a fault report");
    assert!(report.contains("attn_fwd_dense_f16_hd64") && report.contains("block (") && report.contains("PTX line"), "{report}");
    println!("fault report: {report}");
}
