#!/usr/bin/env bash
# bench-consumers.sh - changes applied per second by 1, 2 and 3 synccloud consumers on one
# PostgreSQL store, and by one on SQLite (tests/scale/bench_consumers.c says how it measures).
#
# Usage: scripts/bench-consumers.sh [EDGES [CHANGES]]     defaults: 5 edges, 4000 changes each
#
# Builds build-release/ (Release) and runs, one after the other, each on a fresh broker and store:
#   pg 1 consumer (alone, no group), pg 2 and pg 3 (one shared group), sqlite 1,
#   and pg 1 in a group of one (what a shared group costs by itself).
# Every setting is synccloud's and syncedge's default (sync_full true: every commit is fsynced
# before the acks; events "changes"; publish_rows true) except that the edges do not replicate.
# REPEAT=N runs each configuration N times and reports the median. Each run's full output goes
# to build-release/bench-consumers/. The numbers depend on the machine and on what else runs on
# it: the table says how many cores there were, and the load average before each run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EDGES=${1:-5}
CHANGES=${2:-4000}
REPEAT=${REPEAT:-1}
JOBS=${SYNC_JOBS:-2}
OUT=build-release/bench-consumers

echo "== build-release/ (Release)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$JOBS" --target bench_consumers >/dev/null
mkdir -p "$OUT"

# label|store|consumers|extra arguments
CONFIGS=(
    "pg 1|pg|1|"
    "pg 2 (group)|pg|2|"
    "pg 3 (group)|pg|3|"
    "sqlite 1|sqlite|1|"
    "pg 1 (group of one)|pg|1|--group yes"
)

# Prints the value of KEY in a "bench=consumers k=v ..." line.
field() {
    sed -n "s/^bench=consumers.* $1=\([^ ]*\).*/\1/p" <<<"$2"
}

# Prints the median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

rows=()
for cfg in "${CONFIGS[@]}"; do
    IFS='|' read -r label store consumers extra <<<"$cfg"
    rates=()
    secs=()
    loads=()
    for ((i = 1; i <= REPEAT; i++)); do
        loads+=("$(cut -d' ' -f1 /proc/loadavg)")
        log="$OUT/${store}-${consumers}${extra:+-group}-$i.log"
        echo "== $label, run $i of $REPEAT (log $log)"
        # shellcheck disable=SC2086 # extra holds separate arguments
        if ! build-release/tests/scale/bench_consumers --consumers "$consumers" --store "$store" \
            --edges "$EDGES" --changes "$CHANGES" $extra >"$log" 2>&1; then
            echo "bench-consumers: the run failed; the end of its output:" >&2
            tail -n 30 "$log" >&2
            exit 1
        fi
        line=$(grep '^bench=consumers' "$log")
        grep '^bench: ' "$log" | grep -v 'stopped in' | sed 's/^/   /'
        rates+=("$(field changes_per_s "$line")")
        secs+=("$(field seconds "$line")")
    done
    rows+=("$(printf '%-22s %10s %10s %10s' "$label" "$(median "${secs[@]}")" \
        "$(median "${rates[@]}")" "${loads[*]}")")
done

echo
echo "== $EDGES edges x $CHANGES changes, backlog queued before the consumers start;" \
    "$(nproc) cores; median of $REPEAT run(s)"
printf '%-22s %10s %10s %10s\n' "configuration" "seconds" "changes/s" "load before"
printf '%s\n' "${rows[@]}"
