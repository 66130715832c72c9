#!/usr/bin/env bash
# One command for the first GPU: build, GPU tests, attention benches, one summary table.
#
#   bash scripts/gpu-bench.sh                 on a GPU machine: everything below
#   bash scripts/gpu-bench.sh --host-only     any machine: the build, then the benches'
#                                             host-only mode (no GPU used), then the table
#                                             (its model column for a nominal H100, or the
#                                             GPU SPARSE_ATTN_BENCH_MODEL_GPU names)
#   bash scripts/gpu-bench.sh --require-gpu   as the first, but no GPU is an error (exit 1)
#   bash scripts/gpu-bench.sh --sim           any machine: the build, then the attention bench
#                                             on the simulated CUDA driver (SPARSE_ATTN_DEVICE=
#                                             sim): every case launched once at seq 1024, 4 q /
#                                             2 kv heads, budgets scaled 1/8, printing SIMULATOR
#                                             COUNTS (warp-instructions, mma), never times. No
#                                             GPU tests (scripts/test.sh runs them on the
#                                             simulator), no model, no decode bench. About 5 s
#                                             once the bench is built (after --host-only; the
#                                             bench build alone: ~2 minutes cold on 2 cores).
#
# 1. Installs the pinned NVRTC 12.4 (scripts/install-cuda-toolchain.sh, as scripts/test.sh
#    does) and builds the GPU tests (tests/gpu_*.rs) and benches/attention.rs with it and
#    SPARSE_ATTN_REQUIRE_KERNELS=1, so a build without kernels fails here.
# 2. Asks the bench binary whether there is a GPU (`SPARSE_ATTN_BENCH_PROBE=1`, the crate's
#    own `cuda::gpu_context`). Without one it prints the reason and stops, exit 0 (1 with
#    --require-gpu).
# 3. Runs the GPU tests: every kernel against the CPU reference. A failure stops the script
#    before any timing.
# 4. Runs the criterion benches (benches/attention.rs): batch 1, 32 query / 8 kv heads,
#    head_dim 128, bf16, causal, at 8K, 32K and 128K tokens (SPARSE_ATTN_BENCH_SEQ, one
#    length or a comma-separated list, changes that): dense; A-shape (1 sink + 16 local
#    blocks); block-sparse keeping 30%, 10% and 3% of the causally live tiles; vertical-
#    slash (1000 verticals + 1024 slashes per head); top-k (2048 keys); and the
#    vertical_slash_convert kernel. The bench writes its measurements to
#    $TARGET/gpu-bench/attention.tsv ($TARGET: $CARGO_TARGET_DIR, or target): criterion's
#    samples reduced to mean / median / min / max per launch (criterion's own report is in
#    $TARGET/criterion/).
# 5. Prints one table from that TSV: per length and pattern the kept share, criterion's mean
#    time per launch, TFLOP/s of the kept work (4 x head_dim FLOPs per kept query-key pair
#    and query head) and the speedup over dense at the same length, and a "model" column.
#    The model column is a MODEL, not a measurement (benches/common/model.rs): the
#    perf_report's timing model (examples/perf_report/model.rs), calibrated on
#    FlashAttention-2's published H100 figure, fed with this crate's dense kernel's
#    simulator counts. Before the benches, the script runs perf_report on the simulator
#    (about 10 s) with SPARSE_ATTN_PERF_MODEL_OUT=$TARGET/gpu-bench/model.tsv, and the bench
#    reads it (SPARSE_ATTN_MODEL_TSV). It predicts dense, block-sparse, A-shape and
#    vertical-slash on A100 (uncalibrated) and H100; "n/a (...)" says why elsewhere.
# Everything printed is also written to $TARGET/gpu-bench/gpu-bench.log.
#
# Memory (the bench prints "GPU MiB" per case, from the tensors it uploads): at 128K, q and
# out are 1 GiB each and k and v 256 MiB each (2.5 GiB); the index tensors add up to
# 8 GiB (top-k: 128K rows x 8 kv heads x 2048 keys x 4 B), 1.0 GiB (vertical-slash: the
# converted index twice, for the attention launch and the conversion bench) or 170 MiB
# (block-sparse 30%). Peak: 10.5 GiB of GPU memory, one case at a time, so any GPU with
# 16 GB or more (an 80 GB A100 / H100 easily) fits. Host: about 9 GB (the 8 GiB top-k
# index), and about 35 s of single-threaded host work at 128K before its launches.
#
# Time (no GPU time has been measured yet; these are estimates): the build from cold takes
# a few minutes on few cores; the GPU tests (small problems against the f64 CPU reference)
# likely a minute or less; the benches about 3 s per case,
# 24 cases, plus 19 launches of dense at 128K (~140 TFLOP each) and about a minute of host
# work: some 3 to 5 minutes on an A100 / H100. --host-only: 2 s once built (nothing is
# rebuilt after scripts/test.sh), about 3 minutes from a cold target folder on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

mode=gpu
require_gpu=0
for arg in "$@"; do
  case "$arg" in
    --host-only) mode=host-only ;;
    --require-gpu) require_gpu=1 ;;
    --sim) mode=sim ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--host-only | --sim] [--require-gpu]" >&2; exit 2 ;;
  esac
done

target_dir="${CARGO_TARGET_DIR:-target}"
out_dir="$target_dir/gpu-bench"
tsv="$out_dir/attention.tsv"
mkdir -p "$out_dir"
exec > >(tee "$out_dir/gpu-bench.log") 2>&1
rm -f "$tsv"
start=$SECONDS
phase() { echo; echo "== [$((SECONDS - start)) s] $*"; }

phase "toolchain"
nvrtc_dir="$(bash scripts/install-cuda-toolchain.sh | tail -n 1)"
export SPARSE_ATTN_NVRTC_DIR="$nvrtc_dir"
# Compiled kernel modules are shared between builds through one cache folder
# (build/compile.rs, KernelCache).
export SPARSE_ATTN_KERNEL_CACHE="${SPARSE_ATTN_KERNEL_CACHE-$PWD/target/kernel-cache}"
# With the toolchain installed, a crate without kernels is a failure, not a skip.
export SPARSE_ATTN_REQUIRE_KERNELS=1
echo "NVRTC: $nvrtc_dir; $(cargo --version)"

if [[ "$mode" == sim ]]; then
  # The simulator has no clock and scripts/test.sh already runs the GPU tests on it: only
  # the bench, in its count-only mode.
  phase "build: benches/attention.rs"
  cargo bench -p sparse-attn --bench attention --no-run
  phase "benches on the simulated driver (SPARSE_ATTN_DEVICE=sim): one launch per case, counts only"
  sim_out="$(SPARSE_ATTN_DEVICE=sim cargo bench -p sparse-attn --bench attention 2>&1)" || {
    echo "$sim_out"
    echo "error: the attention bench failed on the simulated driver"
    exit 1
  }
  echo "$sim_out"
  echo
  echo "== summary: SIMULATOR COUNTS on the simulated CUDA driver (ptx-sim), NOT times or GPU measurements"
  grep -E '^(simulator run|sim: )' <<<"$sim_out" | sed 's/^sim: //' || true
  grep -q '^done: simulator counts' <<<"$sim_out" || { echo "error: the bench did not finish its simulator run"; exit 1; }
  phase "done (sim)"
  exit 0
fi

gpu_tests=()
for f in tests/gpu_*.rs; do
  gpu_tests+=(--test "$(basename "$f" .rs)")
done

phase "build: GPU tests (${gpu_tests[*]}) and benches/attention.rs"
# The GPU tests do not need the simulator, but with `sim` they are the very binaries
# scripts/test.sh builds (`--workspace --features sparse-attn/sim`): after it, nothing here
# is rebuilt.
cargo test -p sparse-attn --features sim "${gpu_tests[@]}" --no-run
cargo bench -p sparse-attn --bench attention --no-run

phase "model: perf_report on the simulator writes the calibration ($out_dir/model.tsv)"
# The nvcc 13.0 set gives perf_report its ptxas figures (occupancy), which the model needs.
bash scripts/install-cuda-toolchain.sh nvcc >/dev/null
rm -f "$out_dir/model.tsv"
SPARSE_ATTN_PERF_MODEL_OUT="$out_dir/model.tsv" cargo run --profile test --features sim --example perf_report | grep -E '^(MODEL|model|source|vs FA2)' || true
if [[ -s "$out_dir/model.tsv" ]]; then
  export SPARSE_ATTN_MODEL_TSV="$out_dir/model.tsv"
else
  echo "no calibration written: the model column will say so"
fi

# Prints the summary table of the bench's TSV ($1: what the time columns hold).
print_summary() {
  local note="$1"
  echo
  echo "== summary: prefill attention, batch 1, 32 q / 8 kv heads, head_dim 128, bf16, causal ($note)"
  echo "   kept: block-sparse's target share of the causally live 64x64 tiles; tiles / elements: the"
  echo "   share of the dense causal tiles / elements the pattern keeps; time: criterion's mean per"
  echo "   launch; TFLOP/s: FLOPs of the kept elements / time; vs dense: dense time / time, same length;"
  echo "   model: a MODEL, not a measurement (benches/common/model.rs; calibrated on FA2's H100 figure)"
  if [[ ! -s "$tsv" ]]; then
    echo "(no rows: the bench did not write $tsv)"
    return 0
  fi
  awk -F'\t' '
    function pct(x) { return x == "-" ? "-" : sprintf("%.1f%%", 100 * x) }
    function secs(x) {
      if (x == "-" || x !~ /^[0-9.eE+-]+$/) return x
      if (x + 0 < 1e-3) return sprintf("%.1f us", x * 1e6)
      if (x + 0 < 1) return sprintf("%.3f ms", x * 1e3)
      return sprintf("%.3f s", x)
    }
    function ratio(x) { return x == "-" ? "-" : sprintf("%.2fx", x) }
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    {
      if (!header++) {
        printf "%-7s %-40s %5s %7s %8s %11s %8s %8s  %s\n", "seq", "pattern", "kept", "tiles", "elements", "time", "TFLOP/s", "vs dense", "model"
      }
      printf "%-7s %-40s %5s %7s %8s %11s %8s %8s  %s\n", $c["seq"], $c["case"], pct($c["target_tiles"]), pct($c["kept_tiles"]),
        pct($c["kept_elements"]), secs($c["mean_s"]), $c["tflops"], ratio($c["speedup"]), secs($c["model_s"])
    }
    END { if (!header) print "(no rows)" }
  ' "$tsv"
  echo "(rows: $tsv)"
}

if [[ "$mode" == host-only ]]; then
  phase "benches, host-only (SPARSE_ATTN_BENCH_HOST_ONLY=1): every descriptor built and validated, nothing timed"
  # The model column for a nominal H100 (SPARSE_ATTN_BENCH_MODEL_GPU), to check it end to end.
  SPARSE_ATTN_BENCH_HOST_ONLY=1 SPARSE_ATTN_BENCH_SEQ="${SPARSE_ATTN_BENCH_SEQ:-1024,4096}" SPARSE_ATTN_BENCH_TSV="$tsv" \
    SPARSE_ATTN_BENCH_MODEL_GPU="${SPARSE_ATTN_BENCH_MODEL_GPU:-H100}" cargo bench -p sparse-attn --bench attention
  print_summary "host-only: nothing timed; model for a nominal ${SPARSE_ATTN_BENCH_MODEL_GPU:-H100}"
  phase "done (host-only)"
  exit 0
fi

phase "GPU probe"
probe_out="$(SPARSE_ATTN_BENCH_PROBE=1 cargo bench -p sparse-attn --bench attention 2>&1)" || {
  echo "$probe_out"
  echo "error: the GPU probe (SPARSE_ATTN_BENCH_PROBE=1 cargo bench --bench attention) failed"
  exit 1
}
probe="$(grep -E '^(gpu|no GPU): ' <<<"$probe_out" | tail -n 1 || true)"
case "$probe" in
  gpu:*)
    echo "$probe"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    ;;
  *)
    echo "${probe:-no GPU: the probe printed nothing}"
    echo "stopping after the build: the GPU tests and benches need a GPU."
    echo "(bash scripts/gpu-bench.sh --host-only checks the benches' descriptors without one.)"
    exit "$require_gpu"
    ;;
esac

phase "GPU tests (${gpu_tests[*]})"
cargo test -p sparse-attn --features sim "${gpu_tests[@]}" -- --show-output

phase "benches (benches/attention.rs, seq ${SPARSE_ATTN_BENCH_SEQ:-8192,32768,131072})"
bench_rc=0
SPARSE_ATTN_BENCH_TSV="$tsv" cargo bench -p sparse-attn --bench attention || bench_rc=$?

if [[ "$bench_rc" != 0 ]]; then
  # The TSV is written row by row: what was measured before the failure still prints.
  print_summary "measured on the GPU above; THE BENCH FAILED (exit $bench_rc), rows may be missing"
  phase "failed: the bench exited with $bench_rc"
  exit "$bench_rc"
fi
print_summary "measured on the GPU above"

phase "decode bench (benches/decode.rs: split-KV decode against the prefill kernel on the same problem)"
cargo bench -p sparse-attn --bench decode
phase "done"
