#!/usr/bin/env bash
# End-to-end checks of the nexus command: plugin listing, validation errors and exit codes, a
# forward pass. Usage: cli_test.sh NEXUS_BINARY SOURCE_TESTS_DIR
set -u
nexus=$1
tests=$2
root=$(dirname "$tests")
source "$tests/cli/cli_lib.sh"

check "plugins list --json" 0 "$nexus" plugins list --json
python3 - "$work/out" <<'PY' || failures=$((failures + 1))
import json, os, sys
rows = json.load(open(sys.argv[1]))
want = {("tower", "linear"), ("tower", "mlp"), ("tower", "lowrank"), ("router", "softmax"), ("router", "topk"),
        ("router", "sigmoid"), ("router", "conditioned"), ("loss", "mse"), ("loss", "cosine"),
        ("loss", "cross_entropy"), ("loss", "kl"), ("loss", "load_balance"), ("loss", "z_loss"),
        ("loss", "routing_entropy"), ("teacher", "torchscript"), ("teacher", "hf_encoder"),
        ("teacher", "feature_file"), ("teacher", "decoder_llm")}
got = {(r["kind"], r["name"]): r for r in rows}
missing = want - set(got)
bad = [f"{k}: {got[k]['status']} {got[k]['reason']}" for k in want & set(got) if got[k]["status"] != "ok"]
libs = {got[k]["library"] for k in want & set(got)}
if missing or bad or len(libs) != 7 or not all(os.path.isfile(l) for l in libs):
    print("FAIL: built-in plugins:", missing, bad, libs); sys.exit(1)
print("ok: all 18 built-in components ok, from 7 separate libraries")
PY

check "plugins info shows options" 0 "$nexus" plugins info mlp
grep -q "activation *relu|gelu|tanh *default gelu" "$work/out" || { echo "FAIL: info output"; cat "$work/out"; failures=$((failures + 1)); }
check "plugins info of an unknown name" 2 "$nexus" plugins info nosuch
check "--help lists every command" 0 "$nexus" --help
for c in "plugins list|info" "validate FILE" "forward FILE" "cache build|merge|ls|verify|gc" "train FILE" "eval RUN" \
         "add-teacher RUN" "remove-teacher RUN" "convert-run RUN" "serve RUN" "version"; do
  grep -qF "  $c " "$work/out" || { echo "FAIL: --help does not list '$c'"; cat "$work/out"; failures=$((failures + 1)); }
  "$nexus" ${c%% *} --help >/dev/null 2>&1 || { echo "FAIL: '${c%% *} --help' is not dispatched"; failures=$((failures + 1)); }
done
echo "ok: --help lists the command table, and each listed command answers --help"
check "unknown command" 2 "$nexus" frobnicate
check "missing file argument" 2 "$nexus" validate
check "--help" 0 "$nexus" validate --help

check "validate the foundation composition" 0 "$nexus" validate "$root/configs/foundation.yaml"
check "validate with an override" 0 "$nexus" validate "$root/configs/foundation.yaml" --set trainer.lr=1e-4
check "validate a bad override" 2 "$nexus" validate "$root/configs/foundation.yaml" --set trainer.lr=fast
grep -q "^<--set>:1:[0-9]*: error:" "$work/err" || { echo "FAIL: override error location"; cat "$work/err"; failures=$((failures + 1)); }
sed 's/plugin: mlp/plugin: mpl/' "$root/configs/foundation.yaml" > "$work/typo.yaml"
check "validate a typo'd plugin" 2 "$nexus" validate "$work/typo.yaml"
grep -q "typo.yaml:[0-9]*:[0-9]*: error: unknown tower plugin 'mpl'" "$work/err" || { echo "FAIL: typo message"; cat "$work/err"; failures=$((failures + 1)); }
grep -q "did you mean 'mlp'" "$work/err" || { echo "FAIL: typo hint"; cat "$work/err"; failures=$((failures + 1)); }

check "forward pass" 0 "$nexus" forward "$root/configs/foundation.yaml" --json --batch 3
python3 - "$work/out" <<'PY' || failures=$((failures + 1))
import json, sys
out = json.load(open(sys.argv[1]))
b = out["batches"][0]
assert b["teachers_run"] == ["pixels", "pooled"], b
assert b["shared"] == [3, 32] and b["heads"]["classes"] == [3, 10] and b["shared_finite"], b
assert abs(sum(b["mean_routing_weights"]) - 1) < 1e-5, b
print("ok: forward pass shapes and routing weights")
PY

check "cache ls on an empty cache" 0 "$nexus" cache ls --cache "$work/features"
grep -q "(empty" "$work/out" || { echo "FAIL: empty cache listing"; cat "$work/out"; failures=$((failures + 1)); }
check "cache verify on an empty cache" 0 "$nexus" cache verify --cache "$work/features"
check "cache without an action" 2 "$nexus" cache

# Feature cache on real data (built by scripts/build_datasets.py into data/).
demo="$tests/cli/cache_demo.yaml"
check "cache build" 0 "$nexus" cache build "$demo" --split val --json
python3 - "$work/out" <<'PY' || failures=$((failures + 1))
import json, sys
rows = json.load(open(sys.argv[1]))
got = {(r["teacher"], r["split"]): r for r in rows}
assert set(got) == {("pixels", "val"), ("pooled", "val")}, got
assert got["pixels", "val"]["rows"] == 5000 and got["pixels", "val"]["width"] == 784, got
assert got["pooled", "val"]["width"] == 49 and all(r["computed_rows"] == 5000 for r in rows), rows
print("ok: cache build computed 2 entries of 5000 rows")
PY
check "cache build again reuses everything" 0 "$nexus" cache build "$demo" --split val --json
python3 -c 'import json,sys; rows=json.load(open(sys.argv[1])); assert all(r["computed_rows"] == 0 for r in rows), rows' "$work/out" \
  && echo "ok: second build computed nothing" || { echo "FAIL: second build recomputed"; failures=$((failures + 1)); }
shard=$(ls "$NEXUS_CACHE_DIR"/features/*/shard-00000.nxf | head -1)
printf 'X' | dd of="$shard" bs=1 seek=100 conv=notrunc 2>/dev/null
check "cache verify names a corrupt shard" 1 "$nexus" cache verify
grep -q "corrupt shard $shard: checksum mismatch" "$work/out" || { echo "FAIL: corrupt shard not named"; cat "$work/out"; failures=$((failures + 1)); }
check "cache gc removes the corrupt entry" 0 "$nexus" cache gc
grep -q "1 entries removed, 1 kept" "$work/out" || { echo "FAIL: gc"; cat "$work/out"; failures=$((failures + 1)); }
check "cache verify after gc" 0 "$nexus" cache verify
check "cache build of a sliced split" 0 "$nexus" cache build "$demo" --split val --set data.tasks.fashion.val_rows=1000
check "cache ls" 0 "$nexus" cache ls
grep -qE " val\[:1000\] +1000 " "$work/out" && echo "ok: cache ls keeps a sliced split and its rows apart" \
  || { echo "FAIL: cache ls columns"; cat "$work/out"; failures=$((failures + 1)); }

# A composition naming a Hugging Face Qwen2 folder as a decoder_llm teacher caches like any other.
qwen="$tests/cli/qwen_demo.yaml"
check "cache build with a Qwen2 folder as a decoder_llm teacher" 0 "$nexus" cache build "$qwen" --split val --json
python3 - "$work/out" <<'PY' || failures=$((failures + 1))
import json, sys
rows = json.load(open(sys.argv[1]))
assert [(r["teacher"], r["split"]) for r in rows] == [("qwen", "val")], rows
assert rows[0]["rows"] == 1203 and rows[0]["computed_rows"] == 1203 and rows[0]["width"] == 128, rows
print("ok: cache build ran the Qwen2 folder over 1203 rows, 128 wide")
PY
check "cache verify after the Qwen2 entry" 0 "$nexus" cache verify

# Training: an uninterrupted run, then one killed with SIGKILL after its step-100 checkpoint and
# resumed, must end with bitwise-identical weights.
train="$tests/cli/train_demo.yaml"
check "train" 0 "$nexus" train "$train" --run "$work/run-a" --json
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["device"] == "cpu", r["device"]' "$work/out" \
  && echo "ok: device auto trained on the CPU here" || { echo "FAIL: device"; failures=$((failures + 1)); }
if build_has_cuda=$("$nexus" train "$train" --run "$work/run-gpu" --device cuda:0 --no-eval 2>&1); then
  echo "ok: --device cuda:0 trained (a GPU is here)"
elif [ $? = 2 ] && grep -q "device 'cuda:0' asked for, but" <<<"$build_has_cuda" && [ ! -e "$work/run-gpu" ]; then
  echo "ok: --device cuda:0 without a GPU is refused before anything runs (exit 2): ${build_has_cuda#nexus: }"
else
  echo "FAIL: --device cuda:0: $build_has_cuda"; failures=$((failures + 1))
fi
digest_a=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["val_accuracy"]["fashion"] > 0.75, r; print(r["weights_sha256"])' "$work/out") \
  && echo "ok: trained, val accuracy above 0.75" || { echo "FAIL: training result"; cat "$work/out"; failures=$((failures + 1)); }
"$nexus" train "$train" --run "$work/run-b" --json >/dev/null 2>&1 &
pid=$!
for _ in $(seq 600); do
  grep -qE "step-0000010|step-0000015|step-0000020" "$work/run-b/checkpoints/latest" 2>/dev/null && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; killed=$?
[ "$killed" = 137 ] && echo "ok: killed training at $(cat "$work/run-b/checkpoints/latest")" || { echo "FAIL: run ended before the kill (exit $killed)"; failures=$((failures + 1)); }
check "train without --resume refuses an existing run" 1 "$nexus" train "$train" --run "$work/run-b"
check "train --resume" 0 "$nexus" train "$train" --run "$work/run-b" --resume --json
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["resumed"] and r["weights_sha256"] == sys.argv[2], (r, sys.argv[2])' "$work/out" "$digest_a" \
  && echo "ok: resumed run reached bitwise-identical weights" || { echo "FAIL: resume differs"; cat "$work/out"; failures=$((failures + 1)); }

# Evaluation: the run scored against each teacher's own probe; retention is composite / best probe.
check "eval" 0 "$nexus" eval "$work/run-a" --json
python3 - "$work/out" "$work/run-a/eval.json" <<'PY' && echo "ok: eval reports composite, probes, retention and routing" || { echo "FAIL: eval output"; cat "$work/out"; failures=$((failures + 1)); }
import json, sys
r = json.load(open(sys.argv[1]))
assert r == json.load(open(sys.argv[2])), "eval.json differs from the printed result"
(t,) = r["tasks"]
assert t["task"] == "fashion" and t["rows"] == 10000 and t["split"] == "test", t
assert set(t["probes"]) == {"pixels", "pooled"}, t["probes"]
best = max(p["test_accuracy"] for p in t["probes"].values())
assert t["best_probe"] == best and abs(t["retention"] - t["accuracy"] / best) < 1e-12, t
assert 0.6 < t["accuracy"] < 1 and 0.6 < best < 1, t
assert abs(sum(v["mean_weight"] for v in t["routing"].values()) - 1) < 1e-4, t["routing"]
assert t["shared_variance"] > 0 and r["ok"] and r["violations"] == [], r
PY
check "eval reuses the stored probes" 0 "$nexus" eval "$work/run-a" --json
check "eval of a folder that is not a run" 2 "$nexus" eval "$work"
# A composite trained for one step cannot keep 97 % of its teachers' probe accuracy: the contract
# fails, train and eval exit 1 and name the task.
check "a violated retention contract fails train" 1 "$nexus" train "$train" --run "$work/run-c" \
  --set trainer.steps=1 --set trainer.validate_every=1 --set retention.default=0.97
grep -q "retention contract violated: task 'fashion'" "$work/out" && echo "ok: the violation names the task" \
  || { echo "FAIL: violation message"; cat "$work/out"; failures=$((failures + 1)); }
check "a violated retention contract fails eval" 1 "$nexus" eval "$work/run-c"

echo "cli: $failures failed"
[ "$failures" = 0 ]
