#!/usr/bin/env bash
# Feature caching of the quickstart (real teachers, train and val splits) by one process, against
# two processes each computing a part of every entry (`nexus cache build --part r/2`, then
# `nexus cache merge`), on an empty cache each time: wall seconds, median of RUNS runs each, and the
# ratio in the same session. One process gets all cores; each of the two gets cores/2 threads.
# Usage: bench/sharded_cache.sh [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nexus=build/bin/nexus
cores=$(nproc)
half=$(( cores > 1 ? cores / 2 : 1 ))
now() { date +%s.%N; }
since() { python3 -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$1"; }
for i in $(seq "$runs"); do
  rm -rf "$out/one"
  t0=$(now)
  "$nexus" cache build configs/quickstart.yaml --split train,val --cache "$out/one" >/dev/null 2>&1
  since "$t0" >> "$out/one.txt"
  rm -rf "$out/two"
  t0=$(now)
  OMP_NUM_THREADS=$half "$nexus" cache build configs/quickstart.yaml --split train,val --cache "$out/two" --part 0/2 >/dev/null 2>&1 &
  p0=$!
  OMP_NUM_THREADS=$half "$nexus" cache build configs/quickstart.yaml --split train,val --cache "$out/two" --part 1/2 >/dev/null 2>&1
  wait "$p0"
  "$nexus" cache merge configs/quickstart.yaml --split train,val --cache "$out/two" >/dev/null
  since "$t0" >> "$out/two.txt"
  "$nexus" cache verify --cache "$out/two" >/dev/null
  # Same features either way: the merged entries hold what the single process computed.
  python3 - "$out" <<'PY'
import json, os, sys, hashlib
out = sys.argv[1]
def digest(root):
    d = {}
    for key in sorted(os.listdir(root)):
        m = os.path.join(root, key, "manifest.json")
        if os.path.exists(m):
            d[key] = [s["sha256"] for s in json.load(open(m))["shards"]]
    return d
a, b = digest(f"{out}/one"), digest(f"{out}/two")
same = sum(a[k] == b.get(k) for k in a)
print(f"entries {len(a)} vs {len(b)}; identical shard checksums in {same} of {len(a)}")
PY
done
python3 - "$out" "$runs" "$cores" <<'PY'
import statistics, sys
out, runs, cores = sys.argv[1], sys.argv[2], sys.argv[3]
one = [float(x) for x in open(f"{out}/one.txt")]
two = [float(x) for x in open(f"{out}/two.txt")]
print(f"1 process ({cores} threads):        {', '.join(f'{x:.1f}' for x in one)} s (median {statistics.median(one):.1f})")
print(f"2 processes (--part r/2 + merge): {', '.join(f'{x:.1f}' for x in two)} s (median {statistics.median(two):.1f})")
print(f"ratio 2 / 1 processes (wall time): {statistics.median(two) / statistics.median(one):.3f}  ({runs} runs each)")
PY
