#!/usr/bin/env bash
# Checks what an engine's build sees of this crate's build script:
#   1. a build with kernels prints no cargo warning (one without a compiler prints one);
#   2. a second build with nothing changed re-runs nothing (cargo -v says `Fresh`),
# with nvcc taken from PATH (as an engine with a CUDA toolkit builds), with the pinned
# NVRTC (as the tests build), and with no compiler at all. Uses its own target folder.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvcc_dir="$(bash scripts/install-cuda-toolchain.sh nvcc | tail -n 1)"
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh nvrtc | tail -n 1)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/build-fresh-check}"
unset NVCC CUDA_HOME SPARSE_ATTN_NVRTC_DIR

check() {
  local what="$1" expect_warning="${2:-no}"
  local first second
  first="$(cargo build -p sparse-attn --color never 2>&1)" || { echo "$first"; exit 1; }
  if [[ "$expect_warning" == no ]] && grep -q "^warning" <<<"$first"; then
    echo "FAIL ($what): the build printed warnings:"; echo "$first"; exit 1
  fi
  if [[ "$expect_warning" == yes ]] && ! grep -q "carries no CUDA kernels" <<<"$first"; then
    echo "FAIL ($what): a build without a compiler did not say so:"; echo "$first"; exit 1
  fi
  second="$(cargo build -v -p sparse-attn --color never 2>&1)" || { echo "$second"; exit 1; }
  if ! grep -q "Fresh sparse-attn" <<<"$second"; then
    echo "FAIL ($what): the second build was not fresh:"; echo "$second"; exit 1
  fi
  echo "ok ($what): warnings as expected ($expect_warning), and the second build is Fresh"
}

PATH="$nvcc_dir/nvidia/cu13/bin:$PATH" check "nvcc from PATH"
SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir" check "pinned NVRTC"
SPARSE_ATTN_NVRTC_DIR=/nonexistent check "no compiler" yes
