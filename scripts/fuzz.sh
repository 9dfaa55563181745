#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer targets (tests/fuzz) and run each for a while.
#
# Usage: scripts/fuzz.sh [--merge] [SECONDS]        (SECONDS per target, default 60)
#
# 1. installs clang and its sanitizer/libFuzzer runtime if missing (scripts/install-deps.sh);
# 2. configures and builds build-fuzz/ (CC=clang, -DSYNC_FUZZ=ON, RelWithDebInfo; FUZZ_BUILD_DIR
#    overrides the directory), only the fuzz targets;
# 3. runs fuzz_record, then fuzz_apply, each for SECONDS over a temporary copy of its corpus
#    (tests/fuzz/corpus/TARGET), with -timeout=10 -rss_limit_mb=2048, and prints how many
#    inputs each ran;
# 4. with --merge, adds to tests/fuzz/corpus/TARGET the inputs of the run that reach new
#    coverage (libFuzzer -merge=1: only those, so the corpus stays small).
# Exits nonzero if a target found a crash, leak, timeout or out-of-memory input; the file's path
# is printed, and the temporary directory holding it is kept.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${SYNC_JOBS:-2}
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

merge=0
seconds=60
for arg in "$@"; do
    case $arg in
    --merge) merge=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    '' | *[!0-9]*)
        echo "fuzz.sh: unknown argument '$arg'" >&2
        usage >&2
        exit 2
        ;;
    *) seconds=$arg ;;
    esac
done

# libFuzzer and the sanitizer runtimes are in libclang-rt-14-dev, which the clang package only
# recommends (install-deps.sh installs without recommends): ask for it by name.
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    >"$probe/probe.c"
if ! command -v clang >/dev/null 2>&1 ||
    ! clang -fsanitize=fuzzer,address,undefined "$probe/probe.c" -o "$probe/probe" 2>/dev/null; then
    bash "$ROOT/scripts/install-deps.sh" clang libclang-rt-14-dev
fi
rm -rf "$probe"
trap - EXIT

echo "== $BUILD (clang, SYNC_FUZZ=ON)"
CC=clang cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNC_FUZZ=ON >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target fuzz_record fuzz_apply

work=$(mktemp -d "${TMPDIR:-/tmp}/edgesync-fuzz.XXXXXX")
status=0
for target in record apply; do
    echo "== fuzz_$target for $seconds s"
    if ! sh "$ROOT/tests/fuzz/run_fuzzer.sh" "$BUILD/tests/fuzz/fuzz_$target" \
        "$ROOT/tests/fuzz/corpus/$target" "$work/$target" "$seconds"; then
        status=1
        continue
    fi
    if ((merge)); then
        before=$(ls "$ROOT/tests/fuzz/corpus/$target" | wc -l)
        "$BUILD/tests/fuzz/fuzz_$target" -merge=1 "$ROOT/tests/fuzz/corpus/$target" \
            "$work/$target/corpus" >"$work/$target/merge.log" 2>&1 || {
            echo "fuzz.sh: merging into tests/fuzz/corpus/$target failed; see" \
                "$work/$target/merge.log" >&2
            status=1
            continue
        }
        after=$(ls "$ROOT/tests/fuzz/corpus/$target" | wc -l)
        echo "fuzz_$target: merged $((after - before)) new input(s) into tests/fuzz/corpus/$target"
    fi
done

if ((status == 0)); then
    rm -rf "$work"
    echo "fuzz.sh: no crash"
else
    echo "fuzz.sh: FAILED; the findings are kept in $work" >&2
fi
exit "$status"
