#!/usr/bin/env bash
# Python tools that the tests use but Debian does not package, in a virtual environment of their
# own (PyPI, exact versions pinned below): schemathesis, which fuzzes `nexus serve` against
# docs/openapi.json (tests/serving/schemathesis_test.py).
#
# Usage: scripts/python-tools.sh VENV_DIR      (e.g. build/python-tools)
# Idempotent: a venv whose stamp matches the pins below is left as it is (no network).
# PYTHON picks the interpreter the venv is made from (default python3; 3.9 or later).
set -euo pipefail
venv=${1:?usage: python-tools.sh VENV_DIR}
python=${PYTHON:-python3}
# schemathesis and everything it pulls in (pip freeze of a fresh venv), so a run is reproducible.
pins="
schemathesis==4.32.5
anyio==4.16.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
idna==3.20
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
sortedcontainers==2.4.0
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
"
want=$(printf '%s\n' $pins)
stamp="$venv/.nexus-pins"
if [ -x "$venv/bin/st" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
  echo "python-tools: $venv exists and is not a virtual environment; not touching it" >&2
  exit 1
fi
echo "python-tools: installing schemathesis into $venv"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r <(printf '%s\n' "$want")
printf '%s\n' "$want" >"$stamp"
echo "python-tools: $("$venv/bin/st" --version 2>/dev/null || echo schemathesis) in $venv"
