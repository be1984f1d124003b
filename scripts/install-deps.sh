#!/usr/bin/env bash
# Installs everything NEXUS needs to build, test and build its datasets: Debian packages, and the
# few pinned PyPI packages Debian lacks (for Debian's python3, in the user's site-packages).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache python3
  python3-pip unzip                  # scripts/fetch_models.sh: model wheels from PyPI
  libtorch-dev                       # libtorch 1.13 (CPU)
  # libtorch's BLAS: Debian's default reference BLAS is single-threaded and ~20x slower than
  # OpenBLAS at the GEMMs towers and teachers run; installing this switches libblas.so.3 to it.
  libopenblas0-pthread
  python3-torch python3-numpy python3-yaml  # the image teacher's recipe and bench/train_throughput's reference
  python3-onnx                       # scripts/onnx_to_hf.py: a model wheel that ships only ONNX
  libboost-dev libboost-filesystem-dev libboost-program-options-dev   # Boost.DLL, Program_options
  libyaml-cpp-dev libspdlog-dev doctest-dev nlohmann-json3-dev
  libcpp-httplib-dev pkgconf         # nexus serve (cpp-httplib is found through pkg-config)
  libgloo-dev                        # c10d's Gloo process group headers (multi-process training)
  universal-ctags git                # ctest function_sizes (scripts/function_sizes.py)
  clang-14 libclang-rt-14-dev        # scripts/fuzz.sh: libFuzzer, ASan and UBSan runtimes
  libsamplerate0-dev                 # core/audio: WAV resampling to 16 kHz
  libjs-chart.js                     # nexus report: Chart.js, compiled into the page it writes
  chromium                           # ctest report_browser: the report in a real (headless) browser
  # Sources of the labelled datasets (scripts/build_datasets.py pins their versions; docs/data.md)
  dataset-fashion-mnist wordnet-base fortunes espeak-ng asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# PyPI, pinned. safetensors: ctest checkpoint_python opens NEXUS checkpoints with it, as a Python
# user would (Debian ships no python3-safetensors). gguf (with tqdm, which it imports):
# scripts/gguf_to_hf.py, which fetch_models.sh runs to test decoder_llm's Hugging Face folder path.
pip_packages=(safetensors==0.8.0 gguf==0.19.0 tqdm==4.67.1)
for spec in "${pip_packages[@]}"; do
  if [ "$(/usr/bin/python3 -c "import importlib.metadata as m; print(m.version('${spec%%==*}'))" 2>/dev/null)" = "${spec##*==}" ]; then
    echo "install-deps: $spec present"
  else
    /usr/bin/python3 -m pip install -q --user --break-system-packages --no-deps "$spec"
  fi
done
