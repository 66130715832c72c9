#!/usr/bin/env bash
# Installs NVIDIA's CUDA compiler (nvcc, cicc, ptxas and the headers they need) from
# PyPI wheels into .cuda-toolchain/ (ignored by git). No GPU and no system CUDA needed.
#
# The five wheels are pinned together: pip would otherwise pull the newest companions,
# and nvcc 13.0 emits PTX ISA 9.0, which CUDA 13.0 drivers (R580) still load.
# Idempotent: when the pinned set is already installed it returns in well under a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SPARSE_ATTN_TOOLCHAIN_DIR:-$here/.cuda-toolchain}"
pins=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
)
stamp="$dest/.installed"
want="${pins[*]}"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$dest/nvidia/cu13/bin/nvcc" ]]; then
  echo "cuda toolchain: already installed at $dest/nvidia/cu13/bin/nvcc"
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found (needed to install the wheels)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "error: nvcc needs a host gcc, and none is on PATH" >&2; exit 1; }

rm -rf "$dest"
mkdir -p "$dest"
echo "cuda toolchain: installing ${pins[*]} into $dest"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dest" "${pins[@]}"
nvcc="$dest/nvidia/cu13/bin/nvcc"
[[ -x "$nvcc" ]] || { echo "error: the wheels did not provide $nvcc" >&2; exit 1; }
echo "$want" > "$stamp"
"$nvcc" --version | tail -n 2
echo "cuda toolchain: nvcc at $nvcc"
