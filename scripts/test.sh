#!/usr/bin/env bash
# Runs the whole test suite: installs the CUDA compiler wheels if needed, then builds the
# kernels with nvcc and runs every test (CPU reference, descriptors, ptxas report, the PTX
# simulator, and the GPU tests, which skip with a printed reason when there is no GPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-cuda-toolchain.sh
# With the toolchain installed, a crate without kernels is a failure, not a skip.
export SPARSE_ATTN_REQUIRE_KERNELS=1
cargo test --workspace "$@" -- --show-output
cargo bench --workspace --no-run
