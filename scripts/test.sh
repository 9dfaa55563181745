#!/usr/bin/env bash
# test.sh - build everything and run the test suite, then again under ASan + UBSan.
#
# Usage: scripts/test.sh [CTEST_ARGS ...]      e.g. scripts/test.sh -L unit
#
# 1. installs missing Debian packages (scripts/install-deps.sh, plus valgrind and PostgreSQL:
#    the tests labelled postgres start a throwaway server of their own; chromium for the
#    dashboard's browser test, label ui), then the npm packages of cloud/dashboard and
#    tests/ui with `npm ci`, exactly as their package-lock.json says;
# 2. builds build/ (RelWithDebInfo, warnings are errors) and runs ctest there, passing
#    CTEST_ARGS through;
# 3. unless SYNC_SKIP_FUZZ=1, builds the libFuzzer targets (clang, ASan + UBSan, build-fuzz/)
#    and runs each for FUZZ_SECONDS (default 30) from the corpus in tests/fuzz (scripts/fuzz.sh);
# 4. unless SYNC_SKIP_ASAN=1, builds build-asan/ with -DSYNC_SANITIZE=ON and runs every test
#    there (all labels: CTEST_ARGS are not passed), with leak detection on.
# Exits nonzero if a build fails or any test fails; both test runs happen either way, so one
# run shows every failure. ctest runs SYNC_CTEST_JOBS (default 2) tests at a time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${SYNC_JOBS:-2}

bash scripts/install-deps.sh valgrind postgresql chromium

# The live dashboard (mqtt.js) and its browser test (playwright-core, which drives Debian's
# chromium and downloads no browser of its own).
for dir in cloud/dashboard tests/ui; do
    echo "== npm ci in $dir"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund </dev/null) || {
        echo "test.sh: 'npm ci' failed in $dir (the ui test needs it)" >&2
        exit 1
    }
done

echo "== build/ (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNC_WERROR=ON
cmake --build build -j"$JOBS"

status=0
echo "== ctest build/ $*"
# Two tests at a time: most of their time is spent waiting on daemons and timers, not CPU.
CTEST_JOBS=${SYNC_CTEST_JOBS:-2}
if ! ctest --test-dir build --output-on-failure --no-tests=error -j"$CTEST_JOBS" "$@"; then
    status=1
    echo "test.sh: tests FAILED in build/" >&2
fi

if [[ "${SYNC_SKIP_FUZZ:-0}" != 1 ]]; then
    echo "== fuzzing (build-fuzz/, ${FUZZ_SECONDS:-30} s per target)"
    if ! bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"; then
        status=1
        echo "test.sh: a fuzzer found a problem (see above)" >&2
    fi
else
    echo "== SYNC_SKIP_FUZZ=1: fuzzing skipped"
fi

if [[ "${SYNC_SKIP_ASAN:-0}" != 1 ]]; then
    echo "== build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer)"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSYNC_WERROR=ON -DSYNC_SANITIZE=ON
    cmake --build build-asan -j"$JOBS"
    echo "== ctest build-asan/ (all labels)"
    # The daemons the tests start inherit these too: a leak or UB in them makes them exit
    # nonzero, which the integration tests check when they stop them.
    if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure --no-tests=error -j"$CTEST_JOBS"; then
        status=1
        echo "test.sh: tests FAILED in build-asan/" >&2
    fi
else
    echo "== SYNC_SKIP_ASAN=1: sanitizer build skipped"
fi

if ((status == 0)); then
    echo "test.sh: all tests passed"
fi
exit "$status"
