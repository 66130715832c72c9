#!/usr/bin/env bash
# Installs a CUDA compiler from NVIDIA's PyPI wheels into .cuda-toolchain/<set>/ (ignored
# by git). No GPU and no system CUDA needed. Two pinned sets:
#
#   nvrtc (default)  NVRTC 12.4 with the CUDA 12.4 runtime headers and ptxas 12.4, about
#                    125 MB. build.rs compiles the kernels with it: NVRTC 12.4 emits PTX
#                    ISA 8.4, which R550 (CUDA 12.4) drivers and every newer one load.
#   nvcc             nvcc 13.0 with cicc, ptxas and headers, about 270 MB, for builds that
#                    need the nvcc program itself (candle's kernels in
#                    scripts/check-candle-compat.sh). It emits ISA 9.0 (R580 drivers).
#
# The wheels of a set are pinned together: pip would otherwise pull the newest companions.
# Idempotent: when the pinned set is already installed it returns in well under a second.
# Prints the folder it installed into on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
set_name="${1:-nvrtc}"
case "$set_name" in
  nvrtc)
    pins=(nvidia-cuda-nvrtc-cu12==12.4.127 nvidia-cuda-runtime-cu12==12.4.127 nvidia-cuda-nvcc-cu12==12.4.131)
    check="nvidia/cuda_nvrtc/lib/libnvrtc.so.12"
    ;;
  nvcc)
    # Without the cccl wheel, cuda_fp16.h fails on `#include <nv/target>`.
    pins=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85)
    check="nvidia/cu13/bin/nvcc"
    ;;
  *)
    echo "usage: $0 [nvrtc|nvcc]" >&2
    exit 2
    ;;
esac
dest="$here/.cuda-toolchain/$set_name"
stamp="$dest/.installed"
want="${pins[*]}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -e "$dest/$check" ]]; then
  echo "cuda toolchain ($set_name): already installed"
  echo "$dest"
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found (needed to install the wheels)" >&2; exit 1; }
if [[ "$set_name" == nvcc ]]; then
  command -v gcc >/dev/null || { echo "error: nvcc needs a host gcc, and none is on PATH" >&2; exit 1; }
fi

rm -rf "$dest"
mkdir -p "$dest"
echo "cuda toolchain ($set_name): installing ${pins[*]}" >&2
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dest" "${pins[@]}"
[[ -e "$dest/$check" ]] || { echo "error: the wheels did not provide $dest/$check" >&2; exit 1; }
echo "$want" > "$stamp"
echo "$dest"
