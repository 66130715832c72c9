#!/usr/bin/env bash
# Builds the FlashAttention-2 yardstick that ptx-sim runs (tests/fa2_sim.rs, bench-fa2/):
#
#   1. installs nvcc 13.0 (scripts/install-cuda-toolchain.sh nvcc);
#   2. downloads the flash-attn 2.8.3 sdist from PyPI (sha256 pinned) into
#      .cuda-toolchain/flash-attn/ and unpacks only csrc/flash_attn/src, csrc/cutlass/include,
#      LICENSE and AUTHORS;
#   3. compiles bench-fa2/fa2_fwd.cu to PTX once per head_dim (128, 64; in parallel) with
#      -arch=compute_80 and the flags of FA2's setup.py, bench-fa2/shim standing in for the
#      PyTorch headers, and prints how long that took;
#   4. compiles and runs bench-fa2/fa2_layout.cu (host) for the Flash_fwd_params field offsets
#      and the kernel-traits constants, demangles the PTX's kernel names (c++filt), and writes
#      bench-fa2/generated/fa2_layout.rs;
#   5. writes the PTX gzipped (gzip -n: no name or time stamp) to bench-fa2/ptx/, with the
#      FlashAttention and CUTLASS license notices.
#
# Usage: scripts/fa2-ptx.sh [OUT_DIR]   (default: bench-fa2; OUT_DIR gets ptx/ and generated/)
# tests/fa2_sim.rs (fa2_fixtures_fresh) runs it into a temporary folder when FA2_REGENERATE=1 and
# compares. Needs python3 with pip, gcc/g++ (nvcc's host compiler), c++filt, gzip, and network
# access to PyPI the first time.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/bench-fa2}"
mkdir -p "$out/ptx" "$out/generated"
out="$(cd "$out" && pwd)"

version=2.8.3
sdist_url="https://files.pythonhosted.org/packages/3b/b2/8d76c41ad7974ee264754709c22963447f7f8134613fd9ce80984ed0dab7/flash_attn-$version.tar.gz"
sdist_sha256=1e71dd64a9e0280e0447b8a0c2541bad4bf6ac65bdeaa2f90e51a9e57de0370d

for tool in python3 g++ c++filt gzip; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

nvcc_dir="$(bash "$root/scripts/install-cuda-toolchain.sh" nvcc | tail -n 1)"
nvcc="$nvcc_dir/nvidia/cu13/bin/nvcc"

# The sdist. `pip download --no-binary :all: flash-attn==2.8.3` runs the sdist's setup.py, which
# imports torch, so the archive is fetched directly (same file PyPI serves pip) and checked.
src_root="$root/.cuda-toolchain/flash-attn"
src="$src_root/flash_attn-$version"
parts=(LICENSE AUTHORS csrc/flash_attn/src csrc/cutlass/include)
if [[ ! -f "$src/.unpacked" || "$(cat "$src/.unpacked")" != "${parts[*]}" ]]; then
  mkdir -p "$src_root"
  tarball="$src_root/flash_attn-$version.tar.gz"
  if [[ ! -f "$tarball" ]] || ! echo "$sdist_sha256  $tarball" | sha256sum -c --status; then
    echo "fa2-ptx: downloading flash-attn $version sdist" >&2
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$sdist_url" "$tarball.part"
    mv "$tarball.part" "$tarball"
  fi
  echo "$sdist_sha256  $tarball" | sha256sum -c --status || { echo "error: $tarball: sha256 mismatch" >&2; exit 1; }
  rm -rf "$src"
  tar -xzf "$tarball" -C "$src_root" "${parts[@]/#/flash_attn-$version/}"
  echo "${parts[*]}" > "$src/.unpacked"
fi

bench="$root/bench-fa2"
includes=(-I"$src/csrc/flash_attn" -I"$src/csrc/flash_attn/src" -I"$src/csrc/cutlass/include" -I"$bench/shim" -I"$bench")
# FA2's setup.py nvcc flags (minus --threads and the -gencode list), with -arch=compute_80.
flags=(-O3 -std=c++17
  -U__CUDA_NO_HALF_OPERATORS__ -U__CUDA_NO_HALF_CONVERSIONS__ -U__CUDA_NO_HALF2_OPERATORS__
  -U__CUDA_NO_BFLOAT16_CONVERSIONS__ --expt-relaxed-constexpr --expt-extended-lambda --use_fast_math)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fa2-ptx: compiling bench-fa2/fa2_fwd.cu for head_dim 128 and 64 ($(nproc) cores)" >&2
secs() { local ns=$(( $(date +%s%N) - $1 )); printf '%d.%d' $((ns / 1000000000)) $((ns / 100000000 % 10)); }
start=$(date +%s%N)
pids=()
for d in 128 64; do
  ( s=$(date +%s%N)
    "$nvcc" -ptx -arch=compute_80 "${flags[@]}" -DFA2_HDIM=$d "${includes[@]}" \
      -o "$tmp/fa2_fwd_hdim$d.ptx" "$bench/fa2_fwd.cu" 2> "$tmp/nvcc_hdim$d.log" \
      || { cat "$tmp/nvcc_hdim$d.log" >&2; exit 1; }
    echo "fa2-ptx: head_dim $d: $(secs "$s") s" >&2 ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "fa2-ptx: PTX compile wall time $(secs "$start") s" >&2

"$nvcc" -O2 -std=c++17 "${includes[@]}" -Xcompiler -Wno-invalid-offsetof,-Wno-deprecated-declarations \
  -L"$nvcc_dir/nvidia/cu13/lib" -o "$tmp/fa2_layout" "$bench/fa2_layout.cu" 2> "$tmp/layout.log" \
  || { cat "$tmp/layout.log" >&2; exit 1; }
"$tmp/fa2_layout" > "$tmp/layout.txt"
for d in 128 64; do
  grep -oE '^\.visible \.entry [A-Za-z0-9_]+' "$tmp/fa2_fwd_hdim$d.ptx" | awk '{print $3}' \
    | while read -r name; do printf '%s %s %s\n' "fa2_fwd_hdim$d.ptx" "$name" "$(c++filt "$name")"; done
done > "$tmp/entries.txt"

python3 - "$tmp/layout.txt" "$tmp/entries.txt" "$out/generated/fa2_layout.rs" "$("$nvcc" --version | tail -n 2 | head -n 1)" "$root" <<'PY'
import re, sys
layout, entries, dest, nvcc_version, root = sys.argv[1:6]

def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h

# Must agree with bench-fa2/mod.rs (INPUTS).
inputs = ["bench-fa2/fa2_fwd.cu", "bench-fa2/fa2_layout.cu", "bench-fa2/fa2_traits.h",
          "bench-fa2/shim/ATen/cuda/CUDAGeneratorImpl.h", "bench-fa2/shim/ATen/cuda/detail/UnpackRaw.cuh",
          "bench-fa2/shim/c10/cuda/CUDAException.h", "scripts/fa2-ptx.sh"]
h = 0xcbf29ce484222325
for path in inputs:
    h = fnv1a64(path.encode() + b"\0", h)
    h = fnv1a64(open(f"{root}/{path}", "rb").read() + b"\0", h)

fields, traits, struct = [], [], None
for line in open(layout):
    w = line.split()
    if w[0] == "field":
        fields.append((w[1], int(w[2]), int(w[3])))
    elif w[0] == "struct":
        struct = (int(w[1]), int(w[2]))
    elif w[0] == "traits":
        traits.append(tuple(int(x) for x in w[1:]))

kernels = []
pat = re.compile(r"^void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<(\d+), (\d+), (\d+), (\d+), false, false, cutlass::bfloat16_t, "
                 r"Flash_kernel_traits<\1, \2, \3, \4, cutlass::bfloat16_t>\s*>, false, (true|false), false, false, (true|false), true, false, false>"
                 r"\(flash::Flash_fwd_params\)$")
for line in open(entries):
    ptx, name, demangled = line.rstrip("\n").split(" ", 2)
    m = pat.match(demangled)
    if not m:
        sys.exit(f"unexpected kernel in {ptx}: {demangled}")
    kernels.append((int(m[1]), m[5] == "true", m[6] == "true", ptx, name, demangled))
kernels.sort(key=lambda k: (-k[0], k[1], not k[2]))
if len(kernels) != 8:
    sys.exit(f"expected 8 kernels, found {len(kernels)}")

o = []
o.append("// @generated by scripts/fa2-ptx.sh: do not edit. Offsets and traits come from")
o.append("// bench-fa2/fa2_layout.cu compiled by nvcc 13.0 (host compiler g++, x86-64) against")
o.append("// flash-attn 2.8.3's flash.h; kernel names from the PTX, demangled by c++filt.")
o.append("")
o.append(f"/// The nvcc that compiled the PTX fixtures: `{nvcc_version}`.")
o.append(f"pub const NVCC_VERSION: &str = {nvcc_version!r};".replace("'", '"'))
o.append("/// FNV-1a 64 of the generator's inputs (bench-fa2/mod.rs `INPUTS`) when this file was written.")
o.append(f"pub const INPUTS_FNV1A64: u64 = {h:#018x};")
o.append("")
o.append("/// `sizeof(Flash_fwd_params)`: the byte size of the kernel's one `.param`.")
o.append(f"pub const PARAMS_SIZE: usize = {struct[0]};")
o.append("/// `alignof(Flash_fwd_params)`.")
o.append(f"pub const PARAMS_ALIGN: usize = {struct[1]};")
o.append("")
o.append("/// `offsetof` / `sizeof` of the Flash_fwd_params fields, in declaration order.")
o.append("pub mod field {")
o.append("    use super::Field;")
for name, off, size in fields:
    o.append(f"    /// `{name}`")
    o.append(f"    pub const {name.upper()}: Field = Field {{ name: \"{name}\", offset: {off}, size: {size} }};")
o.append("    /// Every field above.")
o.append("    pub const ALL: &[Field] = &[" + ", ".join(n.upper() for n, _, _ in fields) + "];")
o.append("}")
o.append("")
o.append("/// `Flash_fwd_kernel_traits` constants of the instantiated kernels (bench-fa2/fa2_traits.h).")
o.append("pub const TRAITS: &[Traits] = &[")
for d, m, n, w, t, smem in traits:
    o.append(f"    Traits {{ head_dim: {d}, block_m: {m}, block_n: {n}, n_warps: {w}, n_threads: {t}, smem_bytes: {smem} }},")
o.append("];")
o.append("")
o.append("/// The `flash_fwd_kernel` instantiations in the PTX fixtures.")
o.append("pub const KERNELS: &[KernelEntry] = &[")
for d, causal, even, ptx, name, demangled in kernels:
    o.append(f"    // {demangled}")
    o.append(f"    KernelEntry {{ head_dim: {d}, causal: {str(causal).lower()}, even_mn: {str(even).lower()}, ptx: \"{ptx}.gz\", name: \"{name}\" }},")
o.append("];")
open(dest, "w").write("\n".join(o) + "\n")
PY

for d in 128 64; do
  gzip -n -9 -c "$tmp/fa2_fwd_hdim$d.ptx" > "$out/ptx/fa2_fwd_hdim$d.ptx.gz"
  printf 'fa2-ptx: %s: %s bytes PTX, %s gzipped\n' "fa2_fwd_hdim$d.ptx" "$(wc -c < "$tmp/fa2_fwd_hdim$d.ptx")" "$(wc -c < "$out/ptx/fa2_fwd_hdim$d.ptx.gz")" >&2
done
# The PTX is compiled from FlashAttention and CUTLASS code (both BSD-3-Clause): their notices.
cat "$src/LICENSE" > "$out/ptx/LICENSE-flash-attention"
printf '\nAUTHORS (from the flash-attn %s sdist):\n\n' "$version" >> "$out/ptx/LICENSE-flash-attention"
cat "$src/AUTHORS" >> "$out/ptx/LICENSE-flash-attention"
sed -n '2,28s/^ \*\{0,1\} \{0,1\}//p' "$src/csrc/cutlass/include/cutlass/cutlass.h" > "$out/ptx/LICENSE-cutlass"
echo "fa2-ptx: wrote $out/ptx and $out/generated/fa2_layout.rs" >&2
