#!/usr/bin/env bash
# Proves that an engine-shaped crate builds: ci/candle-compat depends on candle-core 0.11
# with its `cuda` feature (as mistral.rs does) and on sparse-attn with default features
# off, and passes candle's cudarc values (stream, slices, errors) to sparse-attn. That
# type-checks only if both resolve to one cudarc crate with one linking mode and one CUDA
# version, which is what `default-features = false` exists for.
#
# candle's CUDA build compiles its kernels with nvcc, so this installs the project's
# pinned nvcc set (`scripts/install-cuda-toolchain.sh nvcc`) and points the build scripts
# at it:
# - cudarc (`cuda-version-from-build-system`) runs `nvcc --version` from PATH and binds
#   that CUDA version's API (13.0 here); CUDA_HOME/CUDA_PATH/CUDA_ROOT are its link-search
#   roots (used only when linking, which `cargo check` does not do).
# - candle-kernels' cudaforge takes nvcc from $NVCC, then PATH, then $CUDA_HOME/bin, its
#   headers from <nvcc>/../include, and the target architecture from CUDA_COMPUTE_CAP
#   (else nvidia-smi, which a GPU-less machine lacks), and its parallelism from
#   CUDAFORGE_THREADS.
# - sparse-attn's build script takes $NVCC (before $CUDA_HOME/bin, PATH and the pinned
#   NVRTC), as an engine's build would.
# No GPU and no libcuda needed. Costs ~3 minutes on 2 idle cores from a cold target dir
# (candle-kernels' nvcc builds dominate); CARGO_TARGET_DIR is honoured.
#
# ci/candle-compat/Cargo.lock is committed and used with --locked, so candle and cudarc
# versions change only on purpose. When sparse-attn's own dependencies change, refresh it
# with `cargo update -p sparse-attn` in ci/candle-compat (or `cargo update` to move on).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Compiled kernel modules are shared between this script's builds (profiles, feature sets,
# target dirs) through one cache folder (build/compile.rs, KernelCache).
export SPARSE_ATTN_KERNEL_CACHE="${SPARSE_ATTN_KERNEL_CACHE-$PWD/target/kernel-cache}"
nvcc_set="$(bash scripts/install-cuda-toolchain.sh nvcc | tail -n 1)"

cuda="$nvcc_set/nvidia/cu13"
export PATH="$cuda/bin:$PATH"
export NVCC="$cuda/bin/nvcc"
export CUDA_HOME="$cuda" CUDA_PATH="$cuda" CUDA_ROOT="$cuda"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
# cudaforge runs nvcc on half the cores by default (one job on a 2-core CI machine).
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
# sparse-attn's own PTX: one architecture is enough to prove the build.
export SPARSE_ATTN_CUDA_ARCHS="${SPARSE_ATTN_CUDA_ARCHS:-80}"
export SPARSE_ATTN_REQUIRE_KERNELS=1

cd ci/candle-compat
start=$SECONDS
cargo check --locked
echo "== cudarc as resolved next to candle:"
cargo tree --locked -e features -i cudarc
echo "== candle-compat: cargo check passed in $((SECONDS - start)) s"
