#!/usr/bin/env bash
# The release checks an engine relies on, run by CI after the tests:
#   - clippy and rustdoc with no warnings (missing_docs included);
#   - `cargo publish --workspace --dry-run` (both crates package and build from the package);
#   - the declared MSRV (rust-version) builds the whole workspace, tests and benches included;
#   - the build script stays quiet and fresh (scripts/check-build-fresh.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh | tail -n 1)"
export SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir"
# Compiled kernel modules are shared between this script's builds (profiles, feature sets,
# target dirs) through one cache folder (build/compile.rs, KernelCache).
export SPARSE_ATTN_KERNEL_CACHE="${SPARSE_ATTN_KERNEL_CACHE-$PWD/target/kernel-cache}"

echo "== clippy (default features: every target that needs the simulator must say so)"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== clippy (with the simulator and sparse_attn::candle's CPU side)"
cargo clippy --locked --workspace --all-targets --features sparse-attn/sim,sparse-attn/candle -- -D warnings
echo "== rustdoc"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --features sparse-attn/sim,sparse-attn/candle
echo "== publish dry run"
# Its own target folder: the verify build of the packaged copy would otherwise share unit
# fingerprints with the working tree's build and hide later edits of the build script.
CARGO_TARGET_DIR="$PWD/target/publish" cargo publish --locked --workspace --dry-run --allow-dirty

msrv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
for manifest in ptx-sim/Cargo.toml ptx-sim-driver/Cargo.toml; do
  grep -q "^rust-version = \"$msrv\"" "$manifest" || { echo "error: $manifest does not declare rust-version $msrv"; exit 1; }
done
echo "== MSRV $msrv"
rustup toolchain install "$msrv" --profile minimal --no-self-update >/dev/null 2>&1 || rustup toolchain install "$msrv" --profile minimal
CARGO_TARGET_DIR="$PWD/target/msrv" cargo "+$msrv" check --locked --workspace --all-targets --features sparse-attn/sim

echo "== build script"
bash scripts/check-build-fresh.sh
