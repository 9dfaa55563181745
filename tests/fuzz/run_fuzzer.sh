#!/bin/sh
# run_fuzzer.sh - runs one libFuzzer target for a bounded time over a working copy of its corpus
# (so the corpus in the repository only changes through scripts/fuzz.sh --merge). Used by the
# fuzz_* ctest tests and by scripts/fuzz.sh.
#
# Usage: run_fuzzer.sh FUZZER CORPUS_DIR WORK_DIR SECONDS [LIBFUZZER_ARG ...]
#   The environment variable FUZZ_SECONDS, when set, replaces SECONDS. Extra arguments go to
#   the fuzzer: flags, or more corpus directories to seed from (read, never written).
#   WORK_DIR is emptied and receives corpus/ (the working corpus), artifacts/ and log.
#   crash-* files of CORPUS_DIR are not copied: they would stop the run at its first input, and
#   the fuzz_corpus test replays them in every normal build anyway.
# Prints one summary line (executions, rate, coverage). Exits 1, naming the crash, leak,
# timeout or out-of-memory file it left in WORK_DIR/artifacts, if the run found one.
set -eu

if [ $# -lt 4 ]; then
    echo "usage: run_fuzzer.sh FUZZER CORPUS_DIR WORK_DIR SECONDS [LIBFUZZER_ARG ...]" >&2
    exit 2
fi
fuzzer=$1
corpus=$2
work=$3
seconds=${FUZZ_SECONDS:-$4}
shift 4
name=$(basename "$fuzzer")
case $seconds in '' | *[!0-9]*)
    echo "run_fuzzer: SECONDS must be a whole number, not '$seconds'" >&2
    exit 2
    ;;
esac

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
skipped=0
for f in "$corpus"/*; do
    [ -f "$f" ] || continue
    case $(basename "$f") in
    crash-*) skipped=$((skipped + 1)) ;;
    *) cp "$f" "$work/corpus/" ;;
    esac
done
if [ "$skipped" -gt 0 ]; then
    echo "$name: $skipped known crash input(s) in $corpus not fuzzed (fuzz_corpus replays them)"
fi

# A dictionary next to the target's source, if there is one.
dict=$(dirname "$0")/$(echo "$name" | sed 's/^fuzz_//').dict
set -- "$@" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/"
if [ -f "$dict" ]; then
    set -- "$@" -dict="$dict"
fi

# A smaller quarantine than ASan's 256 MB default: the apply target frees a lot of SQLite page
# memory, and touching fresh pages costs a quarter of its speed. 16 MB still covers every free
# of the input being run.
ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=16:thread_local_quarantine_size_kb=64}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

status=0
# The working corpus first: libFuzzer adds new inputs to the first directory; directories
# among the extra arguments only seed the run.
"$fuzzer" "$work/corpus" "$@" >"$work/log" 2>&1 || status=$?

stat() {
    sed -n "s/^stat::$1: *//p" "$work/log" | tail -n 1
}
execs=$(stat number_of_executed_units)
rate=$(stat average_exec_per_sec)
last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1 | sed -n 's/.*\(cov: [0-9]* ft: [0-9]*\).*/\1/p')
echo "$name: ${execs:-?} executions in ${seconds} s (${rate:-?}/s), ${last:-no coverage line}," \
    "corpus $(ls "$work/corpus" | wc -l) files"

found=$(ls "$work/artifacts" 2>/dev/null || true)
if [ "$status" -ne 0 ] || [ -n "$found" ]; then
    echo "$name: FAILED (exit $status); the end of $work/log:" >&2
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)' "$work/log" | tail -n 60 >&2
    for f in $found; do
        echo "$name: found $work/artifacts/$f" >&2
    done
    exit 1
fi
exit 0
