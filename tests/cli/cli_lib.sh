# Shared by the end-to-end shell tests (source it): a scratch folder with its own feature cache,
# no developer plugin path, and `check`, which runs a command and compares its exit status.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NEXUS_CACHE_DIR="$work/cache"
unset NEXUS_PLUGIN_PATH
failures=0
check() {  # check DESCRIPTION EXPECTED_EXIT COMMAND...  (stdout in $work/out, stderr in $work/err)
  local what=$1 want=$2
  shift 2
  "$@" >"$work/out" 2>"$work/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; cat "$work/out" "$work/err"; failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}
