#!/usr/bin/env bash
# Removing the teacher that carried the text tasks, and the repair that keeps the contracts
# (docs/adding-a-teacher.md, section 5):
#   1. a quickstart run and its distilled student: `nexus distill` fine-tunes paraphrase-MiniLM-L3
#      end to end on the composition's outputs (10 to 21 min on 2 cores, by machine); STUDENT_RUN names an
#      existing student run to reuse instead, BASE_RUN an existing quickstart run;
#   2. the quickstart with that MiniLM fine-tune as a third text teacher, trained from scratch: the
#      router gives it nearly all the text weight, so the other text towers learn little;
#   3. remove it: a dry run, the router alone (`--repair router`: rejected), then the default
#      repair, which widens only what the failing text tasks read.
# repair_check.py then asserts what the proofs must show and prints the figures.
# Usage: examples/add_teacher/repair.sh [WORK_DIR]   (needs scripts/setup.sh to have run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
nexus=${NEXUS:-$root/build/bin/nexus}
work=${1:-$root/build/examples/repair}
mkdir -p "$work"
rm -rf "$work/three" "$work/router-only" "$work/router-only.rejected" "$work/repaired" "$work/repaired.partial"

base=${BASE_RUN:-$work/quickstart}
if [ ! -f "$base/run.json" ]; then
  echo "== 1. the quickstart run"
  "$nexus" train "$root/configs/quickstart.yaml" --run "$base"
fi
student=${STUDENT_RUN:-$work/student}
if [ ! -f "$student/distill.json" ]; then
  echo "== 1. its student, distilled"
  "$nexus" distill "$base" --student "$root/configs/students/quickstart-text.yaml" --out "$student"
fi

echo "== 2. the quickstart with the student as a third text teacher, trained from scratch"
student_model=$(cd "$student/model" && pwd)
# The quickstart's own file, its paths made absolute, with the student inserted before the image teacher.
sed "s#\.\./#$root/#g; s#^name: quickstart#name: quickstart-three-text#" "$root/configs/quickstart.yaml" | awk -v model="$student_model" '
  /^  - name: fmnist_cnn/ {
    print "  - name: student"; print "    plugin: hf_encoder"; print "    modality: text"; print "    width: 384"
    print "    options: {path: " model ", max_length: 64}"; print "    tower: {plugin: mlp, options: {hidden: 512, dropout: 0.1}}"
  }
  { print }' >"$work/three.yaml"
"$nexus" train "$work/three.yaml" --run "$work/three" || true   # the contracts are judged again after the removal

echo
echo "== 3. remove the student: the plan first"
"$nexus" remove-teacher "$work/three" --teacher student --out "$work/repaired" --dry-run
echo
echo "== 3. the router alone"
"$nexus" remove-teacher "$work/three" --teacher student --out "$work/router-only" --repair router || true
echo
echo "== 3. with the repair"
"$nexus" remove-teacher "$work/three" --teacher student --out "$work/repaired"
echo
python3 "$here/repair_check.py" "$work"
