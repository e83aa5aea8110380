#!/bin/sh
# tests/run_cli.sh — end-to-end tests of the nmc CLI job commands (validate, schema, explain,
# help, version, usage errors), run by `make test` with NMC_BIN set.
#
# Fixtures: tests/data/jobs/<dir>/{valid,invalid}/NAME.json with NAME.expected beside each one
# (the exact `nmc validate --color never` text output, paths relative to the repo root).
# <dir> is a backend name (validated with --backend <dir>) or `auto` (no --backend: the
# backend comes from "$schema" or the automodel default).
#
#   sh tests/run_cli.sh            check everything
#   sh tests/run_cli.sh --refresh  rewrite every .expected from the current binary
#                                  (then review `git diff tests/data/jobs` by hand)
set -u
NMC=${NMC_BIN:-./nmc}
JOBS=tests/data/jobs
fails=0
checks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { fails=$((fails + 1)); echo "FAIL: $*"; }
ok() { checks=$((checks + 1)); }

backend_args() { # fixture path -> --backend flag (empty for auto/)
    d=$(echo "$1" | sed "s|^$JOBS/||; s|/.*||")
    [ "$d" = auto ] || printf -- '--backend %s' "$d"
}

if [ "${1:-}" = "--refresh" ]; then
    for f in $JOBS/*/valid/*.json $JOBS/*/invalid/*.json; do
        # shellcheck disable=SC2046
        "$NMC" validate $(backend_args "$f") --color never "$f" >"${f%.json}.expected"
    done
    echo "refreshed $(ls $JOBS/*/*/*.expected | wc -l) expected files; review: git diff $JOBS"
    exit 0
fi

# ---- every fixture: exit code and exact text output ---------------------------------------
for f in $JOBS/*/valid/*.json $JOBS/*/invalid/*.json; do
    case "$f" in */valid/*) want=0 ;; *) want=1 ;; esac
    exp="${f%.json}.expected"
    # shellcheck disable=SC2046
    "$NMC" validate $(backend_args "$f") --color never "$f" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] && ok || fail "$f: exit $rc, want $want"
    if [ ! -f "$exp" ]; then
        fail "$f: missing $exp (run: sh tests/run_cli.sh --refresh)"
    elif cmp -s "$tmp/out" "$exp"; then
        ok
    else
        fail "$f: output differs from $exp"
        diff -u "$exp" "$tmp/out" | head -40
    fi
    [ -s "$tmp/err" ] && fail "$f: unexpected stderr: $(head -3 "$tmp/err")"
done

# ---- --format json: one document per call, valid JSON, verdicts and pointers -------------
for d in automodel unsloth auto; do
    ba=""; [ "$d" = auto ] || ba="--backend $d"
    # shellcheck disable=SC2086
    "$NMC" validate $ba --format json $JOBS/$d/valid/*.json $JOBS/$d/invalid/*.json >"$tmp/j.json"
    rc=$?
    [ "$rc" -eq 1 ] && ok || fail "json $d: exit $rc, want 1 (mixed valid and invalid)"
    if python3 -m json.tool "$tmp/j.json" >/dev/null 2>&1; then ok; else fail "json $d: not valid JSON"; fi
    if python3 - "$tmp/j.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
bad = []
for f in doc["files"]:
    want = "/valid/" in f["file"]
    if f["valid"] != want: bad.append("%s: valid=%s" % (f["file"], f["valid"]))
    if f["backend"] not in ("automodel", "unsloth"): bad.append(f["file"] + ": backend")
    for d in f["diagnostics"]:
        p = d.get("pointer")
        if p is not None and p != "" and not p.startswith("/"): bad.append(f["file"] + ": pointer " + p)
        if d["severity"] not in ("error", "warning", "note"): bad.append(f["file"] + ": severity")
    errs = sum(1 for d in f["diagnostics"] if d["severity"] == "error")
    if (errs == 0) != f["valid"]: bad.append(f["file"] + ": errors vs valid")
if bad:
    print("\n".join(bad)); sys.exit(1)
EOF
    then ok; else fail "json $d: verdicts/pointers"; fi
done
# a JSON pointer as RFC 6901 writes it
"$NMC" validate --backend automodel --format json $JOBS/automodel/invalid/gbs-10-mbs-4-dp-2.json >"$tmp/p.json"
grep -q '"pointer": "/batch/global_batch_size"' "$tmp/p.json" && ok || fail "json pointer of gbs rule"

# ---- many files per call ------------------------------------------------------------------
"$NMC" validate --backend automodel $JOBS/automodel/valid/*.json >/dev/null
[ $? -eq 0 ] && ok || fail "all automodel valid fixtures in one call: want exit 0"
"$NMC" validate --backend unsloth $JOBS/unsloth/valid/*.json >/dev/null
[ $? -eq 0 ] && ok || fail "all unsloth valid fixtures in one call: want exit 0"

# ---- examples validate cleanly (no warnings) and explain ----------------------------------
for f in examples/*.json; do
    out=$("$NMC" validate --color never "$f")
    rc=$?
    [ "$rc" -eq 0 ] && [ "$out" = "$f: valid" ] && ok || fail "example $f: exit $rc: $out"
    "$NMC" explain "$f" >"$tmp/e.json"
    rc=$?
    [ "$rc" -eq 0 ] && ok || fail "explain $f: exit $rc"
    if python3 - "$tmp/e.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"spec", "derived"}, d.keys()
assert d["derived"]["backend"] in ("automodel", "unsloth")
assert d["derived"]["output_type"] in ("adapter", "model")
assert isinstance(d["derived"]["effective_batch_size"], int)
assert "model" in d["spec"] and "dataset" in d["spec"]
EOF
    then ok; else fail "explain $f: shape"; fi
done

# ---- explain: defaults and derived values -------------------------------------------------
"$NMC" explain --backend automodel $JOBS/automodel/valid/gbs-8-mbs-4-dp-2.json >"$tmp/x.json"
if python3 - "$tmp/x.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, v = d["spec"], d["derived"]
assert s["optimizer"]["learning_rate"] == 5e-06 and s["training"]["lora"]["alpha"] == 32, s
assert v == {"backend": "automodel", "total_gpus": 2, "data_parallel_size": 2, "dp_cp_size": 2,
             "gradient_accumulation_steps": 1, "effective_batch_size": 8, "output_type": "adapter"}, v
EOF
then ok; else fail "explain automodel values"; fi
"$NMC" explain $JOBS/auto/valid/schema-unsloth.json >"$tmp/y.json"
if python3 - "$tmp/y.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, v = d["spec"], d["derived"]
assert v["backend"] == "unsloth" and v["total_gpus"] == 1 and v["load_quantization"] == "4bit", v
assert s["training"]["lora"]["target_modules"][6] == "down_proj" and s["training"]["lora"]["alpha"] == 16, s
assert "$schema" not in s
EOF
then ok; else fail "explain unsloth values"; fi
"$NMC" explain --backend automodel $JOBS/automodel/invalid/mbs-3-alone.json >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] && [ ! -s "$tmp/out" ] && grep -q "gbs-not-divisible" "$tmp/err" && ok || fail "explain of an invalid job: exit 1, diagnostics on stderr"

# ---- schema -------------------------------------------------------------------------------
for b in automodel unsloth; do
    "$NMC" schema $b >"$tmp/s.json"
    [ $? -eq 0 ] && ok || fail "schema $b: exit code"
    if [ -f generated/$b.schema.json ]; then
        cmp -s "$tmp/s.json" generated/$b.schema.json && ok || fail "schema $b differs from generated/$b.schema.json"
    fi
    python3 -m json.tool "$tmp/s.json" >/dev/null 2>&1 && ok || fail "schema $b: not JSON"
done

# ---- help, version, usage errors ----------------------------------------------------------
expect_rc() { # want_rc description cmd...
    want=$1; what=$2; shift 2
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ "$rc" -eq "$want" ] && ok || fail "$what: exit $rc, want $want"
}
expect_rc 0 "--version" "$NMC" --version
[ "$(cat "$tmp/out")" = "nmc 0.1.0" ] && ok || fail "--version prints 'nmc 0.1.0'"
expect_rc 0 "--help" "$NMC" --help
grep -q "validate" "$tmp/out" && grep -q "explain" "$tmp/out" && ok || fail "--help lists commands"
expect_rc 0 "help validate" "$NMC" help validate
grep -q "^usage: nmc validate" "$tmp/out" && ok || fail "help validate prints usage"
expect_rc 0 "validate --help" "$NMC" validate --help
expect_rc 2 "no arguments" "$NMC"
expect_rc 2 "unknown command" "$NMC" valdate x.json
grep -q "did you mean \`nmc validate\`" "$tmp/err" && ok || fail "unknown command did-you-mean: $(cat "$tmp/err")"
expect_rc 2 "help for an unknown command" "$NMC" help nosuchcommand
expect_rc 2 "validate without files" "$NMC" validate
expect_rc 2 "unknown backend" "$NMC" validate --backend torch x.json
expect_rc 2 "unknown format" "$NMC" validate --format xml x.json
expect_rc 2 "unknown color" "$NMC" validate --color sometimes x.json
expect_rc 2 "unknown option" "$NMC" validate --strict x.json
expect_rc 2 "schema of an unknown backend" "$NMC" schema nemo
expect_rc 2 "schema without a backend" "$NMC" schema
expect_rc 2 "explain two files" "$NMC" explain a.json b.json
expect_rc 2 "missing file" "$NMC" validate "$tmp/does-not-exist.json"
grep -q "error\[io-error\]" "$tmp/out" && ok || fail "missing file reports io-error"
expect_rc 2 "directory as file" "$NMC" validate "$tmp"
expect_rc 2 "valid + missing file" "$NMC" validate --backend automodel $JOBS/automodel/valid/minimal.json "$tmp/nope.json"
expect_rc 2 "explain a missing file" "$NMC" explain "$tmp/nope.json"
expect_rc 1 "--backend=unsloth form" "$NMC" validate --backend=unsloth $JOBS/automodel/valid/minimal.json
grep -q "valid-as-other-backend" "$tmp/out" && ok || fail "other-backend note"
# colour: always adds ANSI escapes, never has none
"$NMC" validate --color always --backend automodel $JOBS/automodel/invalid/mbs-3-alone.json >"$tmp/c" 2>&1
grep -q "$(printf '\033')\[" "$tmp/c" && ok || fail "--color always has no ANSI escapes"

echo "run_cli: $checks checks passed, $fails failed"
[ "$fails" -eq 0 ]
