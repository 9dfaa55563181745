#!/usr/bin/env bash
# bench.sh - build in Release and measure the pipeline against the machine's own limits.
#
# Usage: scripts/bench.sh [--quick] [--skip-callgrind] [--consumers]
#
#   (default)        the full run: 100,000-change throughput runs, 10 s of latency at 1,000
#                    changes/s, a 100,000-row bootstrap, a 100,000-change backlog, callgrind
#   --quick          the same measures, smaller (under 2 minutes)
#   --skip-callgrind no instruction counts (valgrind is slow)
#   --consumers      also run scripts/bench-consumers.sh (PostgreSQL, 1-3 consumers)
#
# Prints a table (Markdown) and one line "bench: key=value ..." for scripts. Installs what is
# missing (scripts/install-deps.sh), builds build-release/ (CMAKE_BUILD_TYPE=Release) and runs
# tests/bench/bench_pipeline, which starts its own Mosquitto on a free loopback port and every
# daemon in a temporary folder (kept with TH_KEEP=1). docs/performance.md explains the figures.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${SYNC_JOBS:-2}
ARGS=()
CONSUMERS=0
for a in "$@"; do
    case "$a" in
    --quick | --skip-callgrind) ARGS+=("$a") ;;
    --consumers) CONSUMERS=1 ;;
    -h | --help)
        sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "bench.sh: unknown argument '$a' (see --help)" >&2
        exit 2
        ;;
    esac
done

bash scripts/install-deps.sh valgrind >&2
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build-release -j"$JOBS" --target bench_pipeline >&2
./build-release/tests/bench/bench_pipeline "${ARGS[@]}"
if ((CONSUMERS)) && [[ -x scripts/bench-consumers.sh ]]; then
    bash scripts/bench-consumers.sh
fi
