#!/bin/sh
# Builds every tests/fuzz/fuzz_<name>.c as a libFuzzer target (clang, ASan + UBSan + LSan)
# against the library sources, then runs each for ${FUZZ_SECONDS:-30} seconds on a scratch
# copy of tests/fuzz/corpus/<name>/ (the committed corpus is never written). Exits non-zero
# when any target crashes, leaks, trips a sanitizer or fails to build.
#
# The library is compiled here file by file, not through the Makefile: runtime/*.c except
# main.c, generated/*.gen.c and kernels/*.c. A file clang cannot compile is skipped with a
# warning (a target that needs it then fails to link, which fails the run). Objects go into
# an archive so each target links only what it uses.
#
#   FUZZ_SECONDS=60 sh tests/fuzz/run.sh          all targets
#   sh tests/fuzz/run.sh json                     only fuzz_json.c
# Crash inputs are kept in build-fuzz/artifacts/.
set -u
cd "$(dirname "$0")/../.."
SECONDS_PER=${FUZZ_SECONDS:-30}
CLANG=${CLANG:-clang}
OUT=build-fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-g -O1 -std=c11 -D_GNU_SOURCE -pthread -Iruntime -Igenerated -Ikernels $SAN"

command -v "$CLANG" >/dev/null 2>&1 || { echo "fuzz: $CLANG not found (deps/apt.txt lists clang)" >&2; exit 1; }
mkdir -p "$OUT/obj" "$OUT/artifacts"

# ---- the library ----
objs=""
for src in runtime/*.c generated/*.gen.c kernels/*.c; do
  [ -f "$src" ] || continue
  [ "$src" = runtime/main.c ] && continue
  obj="$OUT/obj/$(echo "$src" | tr / _).o"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find runtime generated kernels -name '*.h' -newer "$obj" 2>/dev/null | head -1)" ]; then
    if ! $CLANG $CFLAGS -fsanitize=fuzzer-no-link -w -c "$src" -o "$obj" 2>"$obj.log"; then
      echo "fuzz: warning: skipping $src (clang cannot compile it; see $obj.log)" >&2
      rm -f "$obj"
      continue
    fi
  fi
  objs="$objs $obj"
done
rm -f "$OUT/libnmc-fuzz.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libnmc-fuzz.a" $objs

# ---- the targets ----
fail=0
ran=0
for target in tests/fuzz/fuzz_*.c; do
  [ -f "$target" ] || continue
  name=$(basename "$target" .c); name=${name#fuzz_}
  if [ $# -gt 0 ]; then
    case " $* " in *" $name "*) ;; *) continue ;; esac
  fi
  bin="$OUT/fuzz_$name"
  echo "== fuzz_$name: build"
  if ! $CLANG $CFLAGS -fsanitize=fuzzer "$target" "$OUT/libnmc-fuzz.a" -lm -lpthread -o "$bin"; then
    echo "fuzz_$name: BUILD FAILED" >&2
    fail=1
    continue
  fi
  work=$(mktemp -d "${TMPDIR:-/tmp}/nmc-fuzz-$name.XXXXXX")
  [ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$work/"
  echo "== fuzz_$name: ${SECONDS_PER}s on $(ls "$work" | wc -l) seed inputs"
  ran=$((ran + 1))
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$bin" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$OUT/artifacts/$name-" "$work" >"$OUT/fuzz_$name.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$OUT/fuzz_$name.log"
    echo "fuzz_$name: ok ($(ls "$work" | wc -l) corpus entries after the run)"
  else
    echo "fuzz_$name: FAILED (log: $OUT/fuzz_$name.log; inputs: $OUT/artifacts/)" >&2
    tail -40 "$OUT/fuzz_$name.log" >&2
    fail=1
  fi
  rm -rf "$work"
done
[ "$ran" -gt 0 ] || { echo "fuzz: no targets ran" >&2; fail=1; }
exit $fail
