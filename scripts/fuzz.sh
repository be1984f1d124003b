#!/usr/bin/env bash
# Builds the parsers' libFuzzer harnesses (tests/fuzz) with clang-14, ASan and UBSan into
# build-fuzz/ (NEXUS_FUZZ: torch-free libraries only), then runs each for a fixed time on a copy of
# its seed corpus. Fails, naming the harness and the input that broke it, on any crash, uncaught
# exception, sanitizer report, leak, timeout (-timeout) or excess memory (-rss_limit_mb).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--keep DIR] [NAME...]
#
# Defaults: 20 s each, every harness, one harness per core at a time (a harness is one process on
# one core, so J at once take about (harnesses / J) x N seconds).
#
# The grown corpora are left in build-fuzz/runs/NAME/ (or DIR/NAME with --keep); they are not
# committed: add an input to tests/fuzz/corpus/NAME/ only when it is a small regression or seed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=20
jobs=${NEXUS_JOBS:-$(nproc)}
runs_dir=""
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --keep) runs_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) names+=("$1"); shift ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=($(ls tests/fuzz/corpus))
runs_dir=$(realpath -m "${runs_dir:-build-fuzz/runs}")

CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEXUS_FUZZ=ON >/dev/null
ninja -C build-fuzz -j"${NEXUS_JOBS:-$(nproc)}" $(printf '%s_fuzz ' "${names[@]}")

# Runs one harness; its summary goes to $work/summary, and $work/failed exists if it failed.
fuzz_one() {
  local name=$1 exe="$PWD/build-fuzz/bin/${1}_fuzz" work="$runs_dir/$1"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
  local log="$work/fuzz.log" status=0
  # The corpus copy is the working folder: compositions include, and run.json names, files there.
  (cd "$work/corpus" && "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
     -print_final_stats=1 -artifact_prefix="$work/artifacts/" . >"$log" 2>&1) || status=$?
  local done_line execs rate
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  {
    echo "fuzz: $name: ${execs:-?} executions, ${rate:-?}/s, $(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo 'no final stats'), corpus $(ls "$work/corpus" | wc -l) files"
    if [ "$status" -ne 0 ]; then
      local artifact
      artifact=$(ls "$work/artifacts" 2>/dev/null | head -1)
      echo "fuzz: FAILED $name (exit $status): input $work/artifacts/${artifact:-<none written>}"
      grep -E 'ERROR|SUMMARY|runtime error|terminate|what\(\)' "$log" | head -8 || true
      touch "$work/failed"
    fi
  } >"$work/summary"
}

echo "fuzz: ${#names[@]} harnesses, ${seconds}s each, $jobs at a time (logs in $runs_dir/NAME/fuzz.log)"
running=0
for name in "${names[@]}"; do
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
  fuzz_one "$name" &
  running=$((running + 1))
done
wait
failed=()
for name in "${names[@]}"; do
  cat "$runs_dir/$name/summary"
  [ ! -e "$runs_dir/$name/failed" ] || failed+=("$name")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} harness(es) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#names[@]} harnesses ran ${seconds}s without a failure"
