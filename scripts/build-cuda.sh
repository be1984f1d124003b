#!/usr/bin/env bash
# Builds NEXUS against a CUDA libtorch 2.x into ./build-cuda: the libtorch inside PyTorch's CUDA
# wheel from PyPI (installed into build-cuda/venv with its CUDA runtime wheels), found through
# Torch_DIR, plus the CUDA toolkit's nvcc and headers (CUDA_HOME, else the nvcc on PATH). Building
# needs no GPU. CI does not run this (several GB of wheels); the CPU build uses Debian's libtorch.
# Usage: scripts/build-cuda.sh [ninja targets...]      TORCH_SPEC=torch==2.15.0 by default
set -euo pipefail
cd "$(dirname "$0")/.."
spec=${TORCH_SPEC:-torch==2.15.0}
venv=$PWD/build-cuda/venv
if ! compgen -G "$venv/lib/python3*/site-packages/torch/share/cmake/Torch" >/dev/null \
   || [ "$(cat build-cuda/torch-spec 2>/dev/null)" != "$spec" ]; then
  mkdir -p build-cuda
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  echo "build-cuda: installing $spec (CUDA wheels from PyPI) into $venv"
  "$venv/bin/pip" install -q "$spec"
  echo "$spec" > build-cuda/torch-spec
fi
torch_dir=$(compgen -G "$venv/lib/python3*/site-packages/torch/share/cmake/Torch" | head -1)
torch_root=$(dirname "$(dirname "$(dirname "$torch_dir")")")
nvcc=$(command -v "${CUDA_HOME:+$CUDA_HOME/bin/}nvcc" || true)
[ -n "$nvcc" ] || { echo "build-cuda: no nvcc (set CUDA_HOME or put the CUDA toolkit on PATH)" >&2; exit 2; }
cuda_root=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
# libtorch's CMake package looks for the toolkit; the wheel's own CUDA libraries are found at
# run time through libtorch's RUNPATH, and at link time through -rpath-link. CMAKE_PREFIX_PATH
# puts the wheel's libtorch ahead of a system one (Debian's libtorch-dev may be installed too:
# libtorch's own CMake package would otherwise find /usr/lib's libraries first).
nvidia_libs=$(compgen -G "$venv/lib/python3*/site-packages/nvidia/*/lib" | paste -sd: -)
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=${NEXUS_BUILD_TYPE:-Release} \
  -DTorch_DIR="$torch_dir" -DCMAKE_PREFIX_PATH="$torch_root" -DCUDAToolkit_ROOT="$cuda_root" -DCMAKE_CUDA_COMPILER="$nvcc" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$nvidia_libs" -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$nvidia_libs" \
  -DNEXUS_BUILD_TESTS=${NEXUS_BUILD_TESTS:-OFF} >/dev/null
ninja -C build-cuda -j"${NEXUS_JOBS:-$(nproc)}" "$@"
