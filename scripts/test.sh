#!/usr/bin/env bash
# Runs the whole test suite: installs the CUDA compiler wheels if needed, then builds the
# kernels with the pinned NVRTC and runs every test (CPU reference, descriptors, ptxas report, the PTX
# simulator, and the GPU tests, which skip with a printed reason when there is no GPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# NVRTC 12.4 compiles the kernels (PTX ISA 8.4); nvcc 13.0 re-checks ptx-sim's fixtures.
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh | tail -n 1)"
export SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir"
# Compiled kernel modules are shared between this script's builds (profiles, feature sets,
# target dirs) through one cache folder (build/compile.rs, KernelCache).
export SPARSE_ATTN_KERNEL_CACHE="${SPARSE_ATTN_KERNEL_CACHE-$PWD/target/kernel-cache}"
bash scripts/install-cuda-toolchain.sh nvcc >/dev/null
# With the toolchain installed, a crate without kernels is a failure, not a skip.
export SPARSE_ATTN_REQUIRE_KERNELS=1
cargo test --workspace --features sparse-attn/sim "$@" -- --show-output
# The GPU tests again, through cudarc on the simulated CUDA driver (ptx-sim-driver): the
# same binaries, so no rebuild; tests/gpu_attention.rs thins its matrix there (~25 s).
SPARSE_ATTN_DEVICE=sim cargo test --features sparse-attn/sim --test 'gpu_*' "$@" -- --show-output
cargo bench --workspace --no-run
# The perf report against FlashAttention-2 on the simulator (seq 2048, head_dim 128), with
# the test profile's build (optimised, already compiled by the tests above).
cargo run --profile test --features sim --example perf_report
# Split-KV decode's work counters (batch 1, 32K keys, 32/4 heads); fails when it misses
# 1/16 of the prefill kernel's mma or 85% wave efficiency.
cargo run --profile test --features sim --example decode_report
# Vertical-slash estimation + conversion against the dense kernel at seq 32K (simulator
# counts; the dense side a fitted model, checked at a third size); fails above 5% (~30 s).
cargo run --profile test --features sim --example estimate_report
# The demo through the public cudarc API on the simulated CUDA driver: every attention
# kernel, the index conversion and split-KV decode at 2K tokens against the CPU reference,
# with the simulator's work counts (~10 s).
SPARSE_ATTN_DEVICE=sim cargo run --profile test --features sim --example demo
# MInference, SeerAttention and DSA end to end through the public cudarc API, on the
# simulated CUDA driver: index built on the device, then the sparse attention; fails when an
# output leaves bf16's tolerance against the host path (a few seconds).
SPARSE_ATTN_DEVICE=sim cargo run --profile test --example sparse_methods
# sparse_attn::candle's CPU forward (feature `candle`) against the reference: every pattern,
# varlen, decode over paged and contiguous caches, strided views, bad arguments (under a
# second once built). Its feature set is its own, so this builds candle-core and its ~120
# dependencies (cold: 631 CPU-seconds, 345 s on 2 cores, with the test profile's dependency
# settings in Cargo.toml) and the crate once more (kernels from the cache).
cargo test --profile test --features candle --test candle_cpu "$@" -- --show-output
# One GQA attention layer as an engine drives it, on the simulated CUDA driver: MInference
# prefill into a paged KV cache, then 4 top-k decode steps over the cache, each output
# against the CPU reference; with `candle` (the build above) each phase is also run through
# sparse_attn::candle on candle tensors and compared with the device (a few seconds).
SPARSE_ATTN_DEVICE=sim cargo run --profile test --features candle --example engine_layer
