#!/bin/sh
# Runs every test of nmc and prints one closing line "N passed, N failed".
#   C suites:      $BUILD/tests/test_*        (Check; CK_FORK=no under sanitizers is fine)
#   shell tests:   tests/run_*.sh             (exit 0 = pass; get NMC_BIN and BUILD in env)
#   Python tests:  tests/test_*.py            (pytest, if any exist)
# Usage: tests/run-all.sh BUILD_DIR   (NMC_BIN names the nmc binary to test)
BUILD=${1:-build}
NMC_BIN=${NMC_BIN:-./nmc}
export BUILD NMC_BIN
case "$NMC_BIN" in /*) ;; *) NMC_BIN="$(pwd)/$NMC_BIN"; export NMC_BIN ;; esac
pass=0; fail=0; failed=""
run() { # name cmd...
  name=$1; shift
  printf '== %s\n' "$name"
  if "$@"; then pass=$((pass+1)); else fail=$((fail+1)); failed="$failed $name"; fi
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *.d|*.o) continue ;; esac
  run "$(basename "$t")" "$t"
done
for s in tests/run_*.sh; do
  [ -f "$s" ] || continue
  run "$(basename "$s")" sh "$s"
done
if ls tests/test_*.py >/dev/null 2>&1; then
  run pytest python3 -m pytest -q tests
fi
echo
[ -n "$failed" ] && echo "failed:$failed"
echo "suites: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
