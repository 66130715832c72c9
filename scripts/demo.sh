#!/usr/bin/env bash
# Runs the demo (examples/demo.rs): installs the CUDA compiler wheels if needed, builds the
# kernels, and runs each sparsity pattern on a 4K-token problem.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-cuda-toolchain.sh
cargo run --release --example demo -- "$@"
