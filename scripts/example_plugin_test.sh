#!/usr/bin/env bash
# Installs NEXUS into a prefix, builds examples/teacher_plugin against the installed package (as
# a third party would), and checks that the host finds it, validates a composition using it and
# runs a forward pass. Given a trained run of examples/add_teacher/base.yaml, also adds the plugin
# to it as a teacher (the walk-through of docs/adding-a-teacher.md).
# Usage: example_plugin_test.sh [BASE_RUN]
set -euo pipefail
base_run=${1:-}
cd "$(dirname "$0")/.."
prefix="$PWD/build/prefix"
rm -rf "$prefix" build/example
cmake --install build --prefix "$prefix" >/dev/null
cmake -S examples/teacher_plugin -B build/example -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
ninja -C build/example >/dev/null
nexus="$prefix/bin/nexus"
export NEXUS_PLUGIN_PATH="$PWD/build/example"
outer_cache_dir=${NEXUS_CACHE_DIR:-$HOME/.cache/nexus}  # where the base run's features are
export NEXUS_CACHE_DIR="$PWD/build/example/cache"
"$nexus" plugins list --json > build/example/list.json
python3 - build/example/list.json "$prefix" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
ex = [r for r in rows if r["name"] == "char_ngrams"]
assert ex and ex[0]["status"] == "ok" and ex[0]["kind"] == "teacher", ex
assert ex[0]["library"].endswith("build/example/example_teacher.so"), ex[0]["library"]
builtins = [r for r in rows if r["library"].startswith(sys.argv[2])]
assert len(builtins) == 18 and all(r["status"] == "ok" for r in builtins), builtins
print("ok: example plugin listed from", ex[0]["library"], "beside", len(builtins), "installed built-ins")
PY
"$nexus" validate examples/teacher_plugin/composition.yaml
"$nexus" forward examples/teacher_plugin/composition.yaml --json --batch 3 > build/example/forward.json
python3 - build/example/forward.json <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
b = out["batches"][0]
assert b["modality"] == "text" and b["teachers_run"] == ["trigrams", "words"], b
assert b["heads"]["sentiment"] == [3, 2] and b["shared_finite"], b
print("ok: forward pass through the example plugin:", b["teachers_run"], "->", b["heads"])
PY
if [ -n "$base_run" ]; then
  rm -rf build/example/with-trigrams build/example/with-trigrams.partial build/example/with-trigrams.rejected
  "$nexus" add-teacher "$base_run" --teacher examples/teacher_plugin/trigrams_teacher.yaml \
    --out build/example/with-trigrams --cache "$outer_cache_dir/features" --json > build/example/add.json
  python3 - build/example/add.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["added_teachers"] == ["trigrams"] and sorted(p["trained"]) == ["norm.trigrams", "router", "tower.trigrams"], p
assert p["frozen_identical"] and p["status"] == "ok", p
frozen = [c["name"] for c in p["components"] if c["role"] == "frozen"]
print("ok: the example plugin added as a teacher;", len(frozen), "frozen components unchanged;",
      ", ".join(f"{t['task']} {t['before']:.4f} -> {t['after']:.4f}" for t in p["tasks"]))
PY
fi
echo "examples: 1 passed, 0 failed"
