#!/usr/bin/env bash
# Runs the demo (examples/demo/): installs the CUDA compiler wheels if needed, builds the
# kernels with the pinned NVRTC, and runs each sparsity pattern on a 4K-token problem (on a
# GPU when there is one, on the PTX simulator otherwise).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh | tail -n 1)"
export SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir"
cargo run --release --features sim --example demo -- "$@"
