#!/bin/sh
# make check-gen: regenerate into a temp dir and compare with the committed generated/ and
# docs/reference/. Fails (exit 1) with the list of differing files and how to fix it.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! command -v lua5.4 >/dev/null 2>&1; then
  echo "check-gen: lua5.4 is not installed (run: make deps)" >&2
  exit 1
fi
lua5.4 codegen/gen.lua --out "$tmp/generated" --docs "$tmp/docs" || exit 1
status=0
for pair in "generated:$tmp/generated" "docs/reference:$tmp/docs"; do
  committed=${pair%%:*}; fresh=${pair#*:}
  if ! diff -r -q "$committed" "$fresh" >"$tmp/diff" 2>&1; then
    status=1
    echo "check-gen: $committed/ is stale — it differs from what schema/ + codegen/ generate:" >&2
    sed "s|$tmp/docs|(fresh docs)|; s|$tmp/generated|(fresh generated)|" "$tmp/diff" >&2
  fi
done
if [ $status -ne 0 ]; then
  echo "help: run 'make gen' and commit generated/ and docs/reference/ together with schema/" >&2
fi
exit $status
