#!/usr/bin/env bash
# End-to-end checks of add-teacher, remove-teacher and train --from on real Fashion-MNIST pixels
# (and a real text encoder for the new-capability case).
# Usage: increment_test.sh NEXUS_BINARY SOURCE_TESTS_DIR TEST_PLUGIN_DIR
set -u
nexus=$1
tests=$2
test_plugins=$3
inc="$tests/increments/teachers"
source "$tests/cli/cli_lib.sh"
expect() {  # expect DESCRIPTION PYTHON_SNIPPET ARGS... (the snippet asserts; argv[1:] are ARGS)
  local what=$1 code=$2
  shift 2
  if python3 -c "$code" "$@" 2>"$work/py"; then echo "ok: $what"; else echo "FAIL: $what"; cat "$work/py" "$work/out" "$work/err"; failures=$((failures + 1)); fi
}
fingerprint() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum); }

check "train the base run" 0 "$nexus" train "$tests/cli/train_demo.yaml" --run "$work/base" --json
base_print=$(fingerprint "$work/base")

# A teacher whose width (196) differs from every existing one (784, 49).
check "add a teacher of a new width" 0 "$nexus" add-teacher "$work/base" --teacher "$inc/wide_teacher.yaml" --out "$work/added" --steps 300 --json
expect "only the new tower, its statistics and the router trained; every frozen checksum identical" '
import json, sys
p = json.load(open(sys.argv[1]))
assert p == json.load(open(sys.argv[2])), "proof.json differs from the printed proof"
assert sorted(p["trained"]) == ["norm.half", "router", "tower.half"], p["trained"]
frozen = {c["name"]: c for c in p["components"] if c["role"] == "frozen"}
assert set(frozen) == {"norm.pixels", "tower.pixels", "norm.pooled", "tower.pooled", "head.clothes"}, frozen
assert all(c["before"] == c["after"] for c in frozen.values()) and p["frozen_identical"], frozen
router = next(c for c in p["components"] if c["name"] == "router")
assert router["role"] == "trained" and router["before"] != router["after"], router
(t,) = p["tasks"]
assert t["task"] == "fashion" and 0.6 < t["before"] < 1 and t["after"] > t["before"] - 0.02, t
assert "half" in t["new_teacher_probes"] and 0.6 < t["new_teacher_probes"]["half"] < 1, t
assert p["status"] == "ok" and p["timing"]["steps"] > 0, p
' "$work/out" "$work/added/proof.json"
check "the new run evaluates like any run" 0 "$nexus" eval "$work/added" --json
expect "eval of the new run matches its proof" '
import json, sys
e, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert e["teachers"] == ["pixels", "pooled", "half"], e["teachers"]
assert abs(e["tasks"][0]["accuracy"] - p["tasks"][0]["after"]) < 1e-12, (e["tasks"][0], p["tasks"][0])
' "$work/out" "$work/added/proof.json"
[ "$(fingerprint "$work/base")" = "$base_print" ] && echo "ok: the base run is untouched" || { echo "FAIL: the base run changed"; failures=$((failures + 1)); }

# The same change made by hand in YAML: train --from finds that only `half` is new and reaches
# bitwise the same weights as add-teacher.
check "train --from a hand-edited composition" 0 "$nexus" train "$inc/train_demo_plus_half.yaml" --from "$work/base" --run "$work/from" --steps 300 --json
expect "train --from trains only what is new, to the same weights as add-teacher" '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert b["added_teachers"] == ["half"] and b["kind"] == "train --from", b
assert {c["name"]: c["after"] for c in a["components"]} == {c["name"]: c["after"] for c in b["components"]}
' "$work/added/proof.json" "$work/from/proof.json"
check "train --from with nothing new" 2 "$nexus" train "$tests/cli/train_demo.yaml" --from "$work/base" --run "$work/same"
grep -q "nothing to train" "$work/err" && echo "ok: says there is nothing to train" || { echo "FAIL: nothing-new message"; cat "$work/err"; failures=$((failures + 1)); }

# Teachers that cannot be added: clear errors, exit 2, nothing written, the base run untouched.
check "a teacher of a modality no head uses" 2 "$nexus" add-teacher "$work/base" --teacher "$inc/audio_teacher.yaml" --out "$work/x"
grep -q "audio_teacher.yaml:[0-9]*:[0-9]*: error: teacher 'listener' takes audio inputs, and no head trains on an audio task" "$work/err" \
  && grep -q "heads take image inputs" "$work/err" && echo "ok: names the teacher, its modality and the file position" \
  || { echo "FAIL: modality message"; cat "$work/err"; failures=$((failures + 1)); }
check "a teacher whose plugin is missing" 2 "$nexus" add-teacher "$work/base" --teacher "$inc/missing_plugin.yaml" --out "$work/x"
grep -q "missing_plugin.yaml:2:9: error: unknown teacher plugin 'nosuch_encoder'" "$work/err" && echo "ok: missing plugin named at file:line:col" \
  || { echo "FAIL: missing plugin message"; cat "$work/err"; failures=$((failures + 1)); }
check "a teacher that cannot be created" 2 "$nexus" add-teacher "$work/base" --teacher "$inc/broken_teacher.yaml" --out "$work/x"
grep -q "broken_teacher.yaml:[0-9]*:[0-9]*: error: cannot create teacher 'broken'.*does-not-exist.pt" "$work/err" && echo "ok: broken teacher named with the reason" \
  || { echo "FAIL: broken teacher message"; cat "$work/err"; failures=$((failures + 1)); }
# Only the broken library on the path: the test plugins' hanging ones would cost the probe deadline.
mkdir -p "$work/plugins" && cp "$test_plugins/throwing_plugin.so" "$work/plugins/"
check "a tower plugin that is broken" 2 "$nexus" --plugin-path "$work/plugins" add-teacher "$work/base" --teacher "$inc/broken_tower.yaml" --out "$work/x"
grep -q "broken_tower.yaml:[0-9]*:[0-9]*: error: tower plugin 'throwing_plugin' is installed but broken: .*weights file is corrupt.*throwing_plugin.so" "$work/err" && echo "ok: broken plugin named with the reason" \
  || { echo "FAIL: broken plugin message"; cat "$work/err"; failures=$((failures + 1)); }
[ ! -e "$work/x" ] && [ ! -e "$work/x.partial" ] && echo "ok: nothing written for the refused teachers" || { echo "FAIL: a refused add wrote $work/x*"; failures=$((failures + 1)); }
[ "$(fingerprint "$work/base")" = "$base_print" ] && echo "ok: the base run is still untouched" || { echo "FAIL: the base run changed"; failures=$((failures + 1)); }

# Killed with SIGKILL mid-training, then rerun: refuses to start over, resumes to the same weights.
"$nexus" add-teacher "$work/base" --teacher "$inc/wide_teacher.yaml" --out "$work/killed" --steps 300 --json >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1200); do
  grep -qE "step-0000005|step-0000010" "$work/killed.partial/checkpoints/latest" 2>/dev/null && break
  sleep 0.02
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; killed=$?
[ "$killed" = 137 ] && echo "ok: killed add-teacher at $(cat "$work/killed.partial/checkpoints/latest")" || { echo "FAIL: add-teacher ended before the kill (exit $killed)"; failures=$((failures + 1)); }
check "rerun without --resume refuses the interrupted run" 2 "$nexus" add-teacher "$work/base" --teacher "$inc/wide_teacher.yaml" --out "$work/killed" --steps 300
grep -q "killed.partial holds an interrupted run: add --resume" "$work/err" && echo "ok: says how to continue" || { echo "FAIL: interrupted-run message"; cat "$work/err"; failures=$((failures + 1)); }
check "rerun with --resume" 0 "$nexus" add-teacher "$work/base" --teacher "$inc/wide_teacher.yaml" --out "$work/killed" --steps 300 --resume --json
expect "the resumed add-teacher reached bitwise the same weights" '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert {c["name"]: c["after"] for c in a["components"]} == {c["name"]: c["after"] for c in b["components"]}
assert b["frozen_identical"] and b["status"] == "ok", b
' "$work/added/proof.json" "$work/killed/proof.json"

# Retention contracts are gates. The real Fashion-MNIST CNN is a much stronger teacher than the
# base run's pixels: trained for one step, the composite (frozen heads) stays near the base run
# while the best probe jumps, so a 0.97 contract fails; the command exits 1 naming the task and
# does not write the run unless --force.
plus_cnn="$inc/train_demo_plus_cnn.yaml"
check "a contract violation exits 1" 1 "$nexus" train "$plus_cnn" --from "$work/base" --run "$work/weak" \
  --set retention.default=0.97 --steps 1
grep -q "retention contract violated: task 'fashion'" "$work/err" && echo "ok: the violation names the task" || { echo "FAIL: violation message"; cat "$work/out" "$work/err"; failures=$((failures + 1)); }
[ ! -e "$work/weak" ] && [ -f "$work/weak.rejected/proof.json" ] && echo "ok: not written; kept as weak.rejected" || { echo "FAIL: rejected run layout"; ls "$work"; failures=$((failures + 1)); }
check "--force writes it, marked failing" 1 "$nexus" train "$plus_cnn" --from "$work/base" --run "$work/weak" \
  --set retention.default=0.97 --steps 1 --force
expect "the forced run is marked failing" 'import json, sys; p = json.load(open(sys.argv[1])); assert p["status"] == "failing" and p["violations"], p' "$work/weak/proof.json"

# A new capability, asked for: a text teacher with a head, loss and task of its own.
check "add a teacher with a new head when asked" 0 "$nexus" add-teacher "$work/base" --teacher "$inc/text_capability.yaml" --out "$work/text" --steps 300 --json
expect "the new head trains; the old ones stay frozen" '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["added_heads"] == ["fortune_kind"] and sorted(p["trained"]) == ["head.fortune_kind", "norm.paraphrase", "tower.paraphrase"], p
# The only text teacher gives the router nothing new to weigh: it stays frozen, so the image task
# is not trained and its outputs do not change at all.
assert p["frozen_identical"] and p["trained_tasks"] == ["fortunes"], p
assert any("the router is kept as it is" in n for n in p["notes"]), p["notes"]
t = {t["task"]: t for t in p["tasks"]}
assert t["fortunes"]["before"] is None and t["fortunes"]["after"] > 0.2, t
assert t["fashion"]["after"] == t["fashion"]["before"], t
' "$work/out"

# Removing the only text teacher loses the text task; the image task is untouched.
check "remove a teacher" 0 "$nexus" remove-teacher "$work/text" --teacher paraphrase --out "$work/removed" --json
expect "the lost capability is named; the rest is kept" '
import json, sys
p = json.load(open(sys.argv[1]))
assert [l["task"] for l in p["lost_tasks"]] == ["fortunes"] and "text" in p["lost_tasks"][0]["why"], p["lost_tasks"]
assert p["removed_teachers"] == ["paraphrase"] and p["frozen_identical"] and p["status"] == "ok", p
(t,) = p["tasks"]
assert t["task"] == "fashion" and t["after"] >= t["before"] - 0.01, t
' "$work/out"
check "remove a teacher without retraining" 0 "$nexus" remove-teacher "$work/added" --teacher half --out "$work/removed-nr" --no-retrain --json
expect "--no-retrain trains nothing; the router is only mapped" '
import json, sys
p, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert p["timing"]["steps"] == 0 and all(c["role"] == "frozen" for c in p["components"] if c["name"] != "router"), p
router = next(c for c in p["components"] if c["name"] == "router")
assert router["role"] == "mapped" and p["trained"] == [], (router, p["trained"])
assert p["lost_tasks"] == [] and p["status"] == "ok" and p["frozen_identical"], p
' "$work/out" "$work/added/proof.json"
check "remove an unknown teacher" 2 "$nexus" remove-teacher "$work/text" --teacher nosuch --out "$work/y"
grep -q "has no teacher 'nosuch' (it has pixels, pooled, paraphrase)" "$work/err" && echo "ok: lists the run's teachers" || { echo "FAIL: unknown teacher message"; cat "$work/err"; failures=$((failures + 1)); }

# Repair: the CNN carried fashion (the router gave it most of the weight), so the other image
# towers learnt little. Removing it with the router alone misses the contract; the repair widens
# to those towers only; the text task's components never change.
check "train the repair base (three image teachers and a text task)" 0 "$nexus" train "$inc/repair_demo.yaml" --run "$work/r3" --json
check "a dry run prints the plan" 0 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/rx" --dry-run --json
expect "the dry run names what may widen, what never changes, and the failing contract; writes nothing" '
import json, os, sys
p = json.load(open(sys.argv[1]))
assert p["dry_run"] and p["changed_tasks"] == ["fashion"], p
assert [s["scope"] for s in p["repair"]["stages"]] == ["router", "towers", "heads"], p["repair"]
assert p["repair"]["stages"][1]["components"] == ["tower.pixels", "tower.pooled"], p["repair"]["stages"]
assert p["repair"]["stages"][2]["components"] == ["head.clothes"], p["repair"]["stages"]
assert {"norm.paraphrase", "tower.paraphrase", "head.fortune_kind"} <= set(p["never_change"]), p["never_change"]
(now,) = p["now"]
assert now["task"] == "fashion" and not now["holds"] and now["best_teacher"] == "pixels", now
assert not os.path.exists(sys.argv[2]) and not os.path.exists(sys.argv[2] + ".partial")
' "$work/out" "$work/rx"
check "--repair router: the router alone misses the contract" 1 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/rr" --repair router --json
expect "the router stage is judged and the run rejected" '
import json, sys
p = json.load(open(sys.argv[1]))
(st,) = p["repair"]["stages"]
assert st["scope"] == "router" and st["widened"] == ["router"] and not st["checks"][0]["holds"], st
assert p["status"] == "failing" and p["frozen_identical"], p
' "$work/rr.rejected/proof.json"
check "remove with repair (auto)" 0 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/ra" --json
auto_proof() {  # what every repaired removal must show; argv: proof, the widened components
  python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
widened = sys.argv[2].split(",")
roles = {c["name"]: c for c in p["components"]}
assert sorted(n for n, c in roles.items() if c["role"] == "widened") == sorted(widened), roles
assert all("fashion" in roles[n]["why"] for n in widened), [roles[n]["why"] for n in widened]
for n in ["norm.paraphrase", "tower.paraphrase", "head.fortune_kind", "norm.pixels", "norm.pooled"]:
    assert roles[n]["role"] == "frozen" and roles[n]["identical"], roles[n]
t = {t["task"]: t for t in p["tasks"]}
assert t["fortunes"]["after"] == t["fortunes"]["before"], t["fortunes"]
assert not t["fashion"]["violated"] and p["status"] == "ok" and p["frozen_identical"], t["fashion"]
' "$@"
}
expect "auto widens to the image towers only, and stops once the contract holds" '
import json, sys
p = json.load(open(sys.argv[1]))
stages = p["repair"]["stages"]
assert [s["scope"] for s in stages] == ["router", "towers"] and stages[-1]["checks"][0]["holds"], stages
assert not stages[0]["checks"][0]["holds"] and stages[1]["folder"] == "repair/2-towers", stages
' "$work/out"
auto_proof "$work/out" "tower.pixels,tower.pooled" && echo "ok: widened towers only; the text task bit-identical" || { echo "FAIL: auto repair proof"; failures=$((failures + 1)); }
check "--repair heads runs every stage" 0 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/rh" --repair heads --json
expect "the heads stage widens the fashion head" '
import json, sys
p = json.load(open(sys.argv[1]))
assert [s["scope"] for s in p["repair"]["stages"]] == ["router", "towers", "heads"], p["repair"]
assert p["repair"]["stages"][2]["widened"] == ["head.clothes"], p["repair"]["stages"][2]
' "$work/out"
auto_proof "$work/rh/proof.json" "tower.pixels,tower.pooled,head.clothes" && echo "ok: heads stage; the text task bit-identical" || { echo "FAIL: heads repair proof"; failures=$((failures + 1)); }
check "train --from with the CNN dropped by hand" 0 "$nexus" train "$inc/repair_demo_without_cnn.yaml" --from "$work/r3" --run "$work/rf" --json
expect "train --from repairs the same way, to the same weights as remove-teacher" '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert b["kind"] == "train --from" and b["removed_teachers"] == ["cnn"], b
assert [s["scope"] for s in b["repair"]["stages"]] == [s["scope"] for s in a["repair"]["stages"]], b["repair"]
assert {c["name"]: c["after"] for c in a["components"]} == {c["name"]: c["after"] for c in b["components"]}
' "$work/ra/proof.json" "$work/rf/proof.json"
# Adding the CNN to the two-teacher base misses the contract with the router and the new tower
# alone (fashion's frozen head was fitted to weaker features); the repair widens the kept towers.
check "train --from adding the CNN, repaired" 0 "$nexus" train "$plus_cnn" --from "$work/base" --run "$work/cnn-repaired" --set retention.default=0.97 --json
expect "the first stage misses the contract, a widened one keeps it; the kept norms stay" '
import json, sys
p = json.load(open(sys.argv[1]))
stages = p["repair"]["stages"]
assert len(stages) >= 2 and not stages[0]["checks"][0]["holds"] and stages[-1]["checks"][0]["holds"], stages
assert stages[1]["widened"] == ["tower.pixels", "tower.pooled"], stages[1]
roles = {c["name"]: c["role"] for c in p["components"]}
assert roles["tower.pixels"] == "widened" and roles["norm.pixels"] == "frozen" and roles["tower.cnn"] == "new", roles
assert p["status"] == "ok" and p["frozen_identical"] and not p["tasks"][0]["violated"], p["tasks"]
' "$work/cnn-repaired/proof.json"
# Killed in the towers stage, then resumed: the same weights as the uninterrupted repair.
"$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/rk" --repair heads --json >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1500); do
  [ -e "$work/rk.partial/repair/2-towers/checkpoints/latest" ] && break
  sleep 0.02
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
check "resume the killed repair" 0 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/rk" --repair heads --resume --json
expect "the resumed repair reached bitwise the same weights" '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert {c["name"]: c["after"] for c in a["components"]} == {c["name"]: c["after"] for c in b["components"]}
assert [s["steps"] for s in a["repair"]["stages"]] == [s["steps"] for s in b["repair"]["stages"]]
' "$work/rh/proof.json" "$work/rk/proof.json"
check "--repair takes only known scopes" 2 "$nexus" remove-teacher "$work/r3" --teacher cnn --out "$work/ry" --repair everything
grep -q "repair takes auto, router, towers, heads or none" "$work/err" && echo "ok: names the scopes" || { echo "FAIL: scope message"; cat "$work/err"; failures=$((failures + 1)); }

echo "increment: $failures failed"
[ "$failures" = 0 ]
