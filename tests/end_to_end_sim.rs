//! The end-to-end entry points on the PTX simulator (memcheck always on): one call goes
//! from Q, K, V to sparse attention, building its index on the device, with every scratch
//! tensor in one workspace that starts full of garbage (`SimBackend::minference_attention`
//! and friends run exactly the launches `sparse_attn::cuda::minference_attention` enqueues).
//!
//! Each run is held to the host path: host estimator -> host conversion -> CPU sparse
//! reference. The device's index must equal the host's exactly; inputs whose estimate has a
//! near-tie at its boundary may legitimately differ in one pick (the estimators' own tests
//! bound that case), so a case retries new inputs, a few times at most.
//!
//! Skips with the reason when the crate was built without a CUDA compiler.

mod attention_cases;
mod common;

use attention_cases::compare_varlen;
use common::Rng;
use sparse_attn::pattern::vs_convert::{convert, convert_varlen};
use sparse_attn::pattern::{estimate_vertical_slash, estimate_vertical_slash_varlen, VsEstimateConfig};
use sparse_attn::plan::minference::{plan, workspace_len, MinferenceBuffers};
use sparse_attn::plan::{AttnBuffers, AttnLayouts, DeviceBuffer};
use sparse_attn::reference::{vertical_slash_attention, RefInputs, VarlenInputs, VarlenOutput};
use sparse_attn::sim::{HostTensors, SimBackend};
use sparse_attn::{AttnDtype, AttnOptions, AttnShape, DType, Error, Source, Varlen};

/// Inputs that retry before a case gives up on finding one without near-ties.
const ATTEMPTS: usize = 6;

fn backend() -> Option<SimBackend> {
    attention_cases::sim_backend_or_skip()
}

fn tensor<T: AttnDtype>(rng: &mut Rng, n: usize, gain: f64) -> Vec<T> {
    (0..n).map(|_| T::from_f32((gain * rng.normal()) as f32)).collect()
}

fn widen<T: AttnDtype>(x: &[T]) -> Vec<f32> {
    x.iter().map(|v| v.to_f64() as f32).collect()
}

/// MInference on a padded batch: equal to the host estimate -> conversion -> CPU reference.
fn minference_padded<T: AttnDtype + ptx_sim::Element>(sim: &SimBackend, seed: u64, shape: AttnShape, config: VsEstimateConfig) {
    let opts = AttnOptions::causal();
    let scale = 1.0 / (shape.head_dim() as f64).sqrt();
    let mut rng = Rng::new(seed);
    for attempt in 0..ATTEMPTS {
        let (q, k, v) = (tensor::<T>(&mut rng, shape.q_len(), 1.5), tensor::<T>(&mut rng, shape.kv_len(), 1.5), tensor::<T>(&mut rng, shape.kv_len(), 1.0));
        let got = sim.minference_attention(&shape, &opts, &config, HostTensors { q: &q, k: &k, v: &v }).unwrap();
        let inputs = RefInputs::new(shape, &q, &k, &v).unwrap();
        let host_vs = estimate_vertical_slash(&inputs, &config, scale).unwrap();
        let host_index = convert(&host_vs, &shape).unwrap();
        if got.source != Source::VerticalSlash(host_index) {
            println!("{shape:?} attempt {attempt}: the device picked differently (a near-tie); new inputs");
            continue;
        }
        let want = vertical_slash_attention(&inputs, &opts, &host_vs).unwrap();
        let at = format!("minference {:?} {shape:?} {config:?}", T::DTYPE);
        compare_varlen(&at, T::DTYPE, &VarlenOutput { out: want.out, lse: want.lse }, &widen(&got.out), &got.lse);
        assert!(got.index_warp_instructions() > 0 && got.steps.len() == 6, "{at}: six launches, the last the attention");
        return;
    }
    panic!("{shape:?}: no inputs without a near-tie in {ATTEMPTS} attempts");
}

#[test]
fn minference_equals_host_estimate_and_cpu_reference() {
    let Some(sim) = backend() else { return };
    let config = |per_kv_group| VsEstimateConfig { last_q: 64, vertical_size: 30, slash_size: 20, forced_first_columns: 4, forced_last_diagonals: 6, per_kv_group };
    // GQA 4:1 per query head and per kv group, 1:1, seq_q != seq_k, seq not a multiple of 64.
    minference_padded::<half::bf16>(&sim, 1, AttnShape::new(2, 150, 190, 8, 2, 64).unwrap(), config(false));
    minference_padded::<half::bf16>(&sim, 2, AttnShape::new(1, 130, 130, 4, 1, 128).unwrap(), config(true));
    minference_padded::<half::f16>(&sim, 3, AttnShape::new(2, 100, 140, 2, 2, 64).unwrap(), config(false));
}

#[test]
fn minference_varlen_estimates_each_sequence_on_its_own_lengths() {
    let Some(sim) = backend() else { return };
    let config = VsEstimateConfig { last_q: 32, vertical_size: 24, slash_size: 16, forced_first_columns: 2, forced_last_diagonals: 4, per_kv_group: false };
    let opts = AttnOptions::causal();
    let varlen = Varlen::new(vec![0, 90, 90, 220], vec![0, 120, 125, 260]).unwrap();
    let shape = AttnShape::new(3, 130, 135, 4, 2, 64).unwrap();
    let mut rng = Rng::new(4);
    for attempt in 0..ATTEMPTS {
        let q = tensor::<half::bf16>(&mut rng, varlen.total_q() * 4 * 64, 1.5);
        let k = tensor::<half::bf16>(&mut rng, varlen.total_k() * 2 * 64, 1.5);
        let v = tensor::<half::bf16>(&mut rng, varlen.total_k() * 2 * 64, 1.0);
        let got = sim.minference_attention_varlen(&shape, &varlen, &opts, &config, HostTensors { q: &q, k: &k, v: &v }).unwrap();
        let inputs = VarlenInputs::new(shape, varlen.clone(), &q, &k, &v).unwrap();
        let host_vs = estimate_vertical_slash_varlen(&inputs, &config, 0.125).unwrap();
        let host_index = convert_varlen(&host_vs, &shape, &varlen).unwrap();
        if got.source != Source::VerticalSlash(host_index.clone()) {
            println!("attempt {attempt}: a near-tie; new inputs");
            continue;
        }
        let want = sparse_attn::reference::varlen_vertical_slash_attention(&inputs, &opts, &host_index).unwrap();
        compare_varlen("minference varlen", DType::BF16, &want, &widen(&got.out), &got.lse);
        return;
    }
    panic!("no inputs without a near-tie in {ATTEMPTS} attempts");
}

#[test]
fn minference_refuses_bad_arguments_by_name() {
    let shape = AttnShape::new(1, 100, 100, 2, 1, 64).unwrap();
    let config = VsEstimateConfig { last_q: 64, vertical_size: 10, slash_size: 10, forced_first_columns: 1, forced_last_diagonals: 1, per_kv_group: false };
    let buf = |addr: u64, len: usize| DeviceBuffer { addr, len };
    let attn = AttnBuffers {
        q: buf(1 << 20, shape.q_len()),
        k: buf(2 << 20, shape.kv_len()),
        v: buf(3 << 20, shape.kv_len()),
        out: buf(4 << 20, shape.q_len()),
        lse: None,
        layouts: AttnLayouts::contiguous(&shape),
    };
    let words = workspace_len(&shape, &config).unwrap();
    let run = |opts: AttnOptions, config: &VsEstimateConfig, workspace: DeviceBuffer| plan(&shape, DType::BF16, &opts, config, &MinferenceBuffers { attn, varlen: None, workspace });
    let ws = buf(8 << 20, words);
    assert!(run(AttnOptions::causal(), &config, ws).is_ok());
    assert!(matches!(run(AttnOptions::default(), &config, ws), Err(Error::InvalidParameter { name: "causal", .. })));
    assert!(matches!(run(AttnOptions::causal(), &config, buf(8 << 20, words - 1)), Err(Error::BufferTooSmall { tensor: "workspace", .. })));
    assert!(matches!(run(AttnOptions::causal(), &config, buf((8 << 20) + 4, words)), Err(Error::InvalidParameter { name: "workspace", .. })));
    for (name, bad) in [("last_q", VsEstimateConfig { last_q: 0, ..config }), ("vertical_size", VsEstimateConfig { vertical_size: 0, ..config }), ("slash_size", VsEstimateConfig { slash_size: 0, ..config })] {
        assert!(matches!(run(AttnOptions::causal(), &bad, ws), Err(Error::InvalidParameter { name: n, .. }) if n == name), "{name}");
        assert!(matches!(workspace_len(&shape, &bad), Err(Error::InvalidParameter { name: n, .. }) if n == name), "{name}");
    }
}
