#!/usr/bin/env bash
# Data-parallel training end to end (c10d, Gloo, loopback): `--nproc 2` against one process with
# the same global batch; a worker killed mid-training ends the job with a clear error well within
# 60 s, with the launcher and without it (torchrun-style workers); --resume with another world
# size completes the run.
# Usage: distributed_test.sh NEXUS_BINARY SOURCE_TESTS_DIR
nexus=$1
tests=$2
source "$tests/cli/cli_lib.sh"
demo="$tests/cli/train_demo.yaml"
# A process's children, from /proc (procps' pgrep may not be installed).
children_of() { for s in /proc/[0-9]*/stat; do awk -v p="$1" '$4 == p {print $1}' "$s" 2>/dev/null; done; }
json_field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval('d' + sys.argv[2]))" "$@"; }

# 1. Same global batch, 1 vs 2 processes: same best step, same validation and test accuracy. The
#    two workers start on an empty cache: each computes a disjoint part of every entry, rank 0
#    merges them, and the one-process run then finds every entry complete.
check "train --nproc 2" 0 "$nexus" --log-level info train "$demo" --run "$work/two" --json --nproc 2
cp "$work/out" "$work/two.json"
for r in 0 1; do
  n=$(grep -c "computed [0-9]* rows (part $r of 2)" "$work/err")
  [ "$n" -gt 0 ] && echo "ok: rank $r computed its part of $n cache entries" || { echo "FAIL: rank $r computed no part"; cat "$work/err"; failures=$((failures + 1)); }
done
check "the merged cache verifies" 0 "$nexus" cache verify --json
check "train, 1 process" 0 "$nexus" --log-level info train "$demo" --run "$work/one" --json
cp "$work/out" "$work/one.json"
if grep -q "computed" "$work/err"; then echo "FAIL: the one-process run recomputed features"; grep computed "$work/err"; failures=$((failures + 1))
else echo "ok: the one-process run found every entry the two workers cached"; fi
for f in "['best_step']" "['val_accuracy']['fashion']" "['eval']['tasks'][0]['accuracy']" "['steps']"; do
  a=$(json_field "$work/one.json" "$f"); b=$(json_field "$work/two.json" "$f")
  if [ "$a" = "$b" ] && [ -n "$a" ]; then echo "ok: $f: 1 process $a, 2 processes $b"
  else echo "FAIL: $f: 1 process '$a', 2 processes '$b'"; failures=$((failures + 1)); fi
done
[ "$(json_field "$work/two.json" "['processes']")" = 2 ] && echo "ok: 2 processes reported" || { echo "FAIL: processes"; failures=$((failures + 1)); }
[ "$(json_field "$work/two.json" "['dist_backend']")" = gloo ] && echo "ok: Gloo on the CPU" || { echo "FAIL: dist_backend"; failures=$((failures + 1)); }
check "--dist-backend nccl without a GPU is bad usage" 2 "$nexus" train "$demo" --run "$work/nccl" --nproc 2 --dist-backend nccl
grep -q "nccl" "$work/err" && echo "ok: says why: $(grep -o 'dist-backend nccl[^(]*' "$work/err" | head -1)" || { echo "FAIL: no reason given"; cat "$work/err"; failures=$((failures + 1)); }

# 1b. Parts by hand (machines that share a cache folder): a part that never ran is named by merge,
#     and building it afterwards completes the entry.
parts=(--cache "$work/parts" --split val)
check "cache build --part 0/2" 0 "$nexus" cache build "$demo" "${parts[@]}" --part 0/2
check "cache ls shows the part-built entries as incomplete" 0 "$nexus" cache ls --cache "$work/parts" --json
python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); assert len(e) == 2 and all(not x["complete"] and x["cached_rows"] in (4096, 904) and x["rows"] == 5000 for x in e), e; print("ok: 2 entries, not complete:", ", ".join("%s %d of 5000 rows" % (x["teacher"], x["cached_rows"]) for x in e))' "$work/out" \
  || { echo "FAIL: cache ls of parts"; cat "$work/out"; failures=$((failures + 1)); }
check "cache merge with part 1 missing" 1 "$nexus" cache merge "$demo" "${parts[@]}"
if grep -q "is missing 1 of 2 shards: shard-0000[01].nxf (rows [0-9]*\.\.[0-9]*, part 1 of 2)" "$work/err"; then
  echo "ok: merge names the missing shard: $(grep -o "shard-0000[01].nxf ([^)]*)" "$work/err" | head -1)"
else echo "FAIL: merge did not name the missing shard"; cat "$work/err"; failures=$((failures + 1)); fi
check "cache build --part 1/2" 0 "$nexus" cache build "$demo" "${parts[@]}" --part 1/2
check "cache merge" 0 "$nexus" cache merge "$demo" "${parts[@]}"
check "the merged entries verify" 0 "$nexus" cache verify --cache "$work/parts"
check "--part 2/2 is bad usage" 2 "$nexus" cache build "$demo" "${parts[@]}" --part 2/2

# 2. Kill one worker mid-training: the launcher stops the rest and says so.
long=(--set trainer.steps=200000 --set trainer.validate_every=100 --set trainer.patience=0 --no-eval)
"$nexus" train "$demo" --run "$work/killed" --nproc 2 "${long[@]}" >"$work/launcher.out" 2>"$work/launcher.err" &
launcher=$!
for _ in $(seq 600); do
  [ -f "$work/killed/checkpoints/latest" ] && [ "$(cat "$work/killed/checkpoints/latest")" != step-00000000 ] && break
  sleep 0.1
done
victim=$(children_of "$launcher" | sort -n | tail -1)
start=$(date +%s.%N)
kill -9 "$victim"
wait "$launcher"; rc=$?
took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
if [ "$rc" = 1 ] && grep -q "was killed by signal 9" "$work/launcher.err" && grep -q "stopped the other 1 worker" "$work/launcher.err" \
   && [ -z "$(children_of "$launcher")" ]; then
  echo "ok: a killed worker ends the job in ${took} s, exit 1: $(grep 'nexus train:' "$work/launcher.err")"
else
  echo "FAIL: killed worker: exit $rc after ${took} s"; cat "$work/launcher.err"; failures=$((failures + 1))
fi
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 60 else 1)" "$took" || { echo "FAIL: took ${took} s"; failures=$((failures + 1)); }

# 3. Resume it with a different world size (1 process), to a bounded end.
check "--resume with 1 process instead of 2" 0 "$nexus" train "$demo" --run "$work/killed" --resume --json --no-eval \
  --set trainer.steps=200000 --set trainer.validate_every=100 --set trainer.patience=2
resumed=$(json_field "$work/out" "['resumed']")
[ "$resumed" = True ] && echo "ok: the run was resumed, not restarted" || { echo "FAIL: resumed=$resumed"; failures=$((failures + 1)); }

# 4. torchrun-style workers (no launcher): when one dies, the other fails with a clear error
#    within --dist-timeout instead of hanging.
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$nexus" train "$demo" --run "$work/torchrun" "${long[@]}" --dist-timeout 10 >"$work/w$r.out" 2>"$work/w$r.err" &
  eval "w$r=\$!"
done
for _ in $(seq 600); do
  [ -f "$work/torchrun/checkpoints/latest" ] && [ "$(cat "$work/torchrun/checkpoints/latest")" != step-00000000 ] && break
  sleep 0.1
done
start=$(date +%s.%N)
kill -9 "$w1"
wait "$w0"; rc=$?
took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
if [ "$rc" = 1 ] && grep -q "another worker died or stopped answering" "$work/w0.err"; then
  echo "ok: without a launcher, rank 0 stops ${took} s after rank 1 died: $(grep -o 'all-reduce failed on rank 0[^(]*' "$work/w0.err" | head -1)"
else
  echo "FAIL: rank 0 after rank 1 died: exit $rc after ${took} s"; cat "$work/w0.err"; failures=$((failures + 1))
fi
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 60 else 1)" "$took" || { echo "FAIL: took ${took} s"; failures=$((failures + 1)); }

echo "distributed: $failures failed"
[ "$failures" = 0 ]
