#!/usr/bin/env bash
# Runs the demo (examples/demo/): installs the CUDA compiler wheels if needed, builds the
# kernels with the pinned NVRTC, and runs each sparsity pattern through the public cudarc
# API: on a GPU when there is one (a 4K-token problem, timed), on the simulated CUDA driver
# otherwise (a 2K-token problem, with the simulator's work counts). SPARSE_ATTN_DEVICE =
# cuda | sim | auto (the default) picks the device; `--seq N` the problem's length.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh | tail -n 1)"
export SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir"
cargo run --release --example demo -- "$@"
