#!/usr/bin/env python3
"""Function lengths of the C++ sources, and the project's limits on them.

Every function (and doctest TEST_CASE) in the tracked C++ files, longest first. The command files
(core/cli) keep to --max-cli lines per function: a command parses options, calls one engine
function and reports. Everything else keeps to --max. Lines are counted from a function's first
line to its closing brace, lambdas inside included. Generated tables (scripts/gen_unicode_tables.py)
hold no functions. Functions are found with Universal Ctags (Debian: universal-ctags).

  python3 scripts/function_sizes.py               # check the limits; exit 1 naming each function over
  python3 scripts/function_sizes.py --top 10      # the ten longest, and check
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # --root DIR measures another checkout


def cpp_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.cpp", "*.hpp", "*.h"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout.split()
    return [f for f in out if os.path.exists(os.path.join(ROOT, f))]


def ctags_functions(files):
    cmd = ["ctags", "--output-format=json", "--fields=+neK", "--c++-kinds=f", "--language-force=C++", "-f", "-"] + files
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("_type") == "tag" and "end" in tag:
            yield tag["path"], int(tag["line"]), int(tag["end"]), tag.get("scope", "") and tag["scope"] + "::" + tag["name"] or tag["name"]


def test_cases(files):
    """doctest's TEST_CASE("...") { ... } blocks: ctags sees macros, not functions."""
    for path in files:
        if not path.startswith("tests/"):
            continue
        lines = open(os.path.join(ROOT, path), encoding="utf-8").read().split("\n")
        for i, text in enumerate(lines):
            m = re.match(r'TEST_CASE\("(.*)"\)', text)
            if not m:
                continue
            for j in range(i + 1, len(lines)):
                if lines[j].startswith("}"):
                    yield path, i + 1, j + 1, 'TEST_CASE("' + m.group(1) + '")'
                    break


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max", type=int, default=120)
    ap.add_argument("--max-cli", type=int, default=80)
    ap.add_argument("--top", type=int, default=0, help="print the N longest")
    ap.add_argument("--root", help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    global ROOT
    ROOT = os.path.abspath(args.root) if args.root else ROOT
    files = cpp_files()
    found = sorted(set(ctags_functions(files)) | set(test_cases(files)), key=lambda f: f[1] - f[2])
    for path, first, last, name in found[: args.top]:
        print(f"{last - first + 1:5d}  {path}:{first}  {name}")
    over = [f for f in found if f[2] - f[1] + 1 > (args.max_cli if f[0].startswith("core/cli/") else args.max)]
    for path, first, last, name in over:
        limit = args.max_cli if path.startswith("core/cli/") else args.max
        print(f"over the limit of {limit} lines: {path}:{first} {name} ({last - first + 1} lines)", file=sys.stderr)
    print(f"{len(found)} functions; longest {found[0][2] - found[0][1] + 1} lines ({found[0][0]}:{found[0][1]} {found[0][3]}); "
          f"{len(over)} over the limits (core/cli {args.max_cli}, elsewhere {args.max})")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
