#!/usr/bin/env bash
# LSA churn benchmark (issue 3): random sizes 50-2,000 B, live set held at 80% of a 256 MiB budget,
# random frees, for --seconds (default 60); then the same operations on glibc malloc. Prints a table
# (LSA occupancy after compaction against malloc's live bytes / RSS) and writes
#   $BENCH_RESULTS_DIR/lsa_churn.json   (default build/bench-results)
# Usage: tests/perf/run_lsa.sh [BUILD_DIR] [bench_lsa options, e.g. --seconds 60 --budget-mib 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-release}
if [[ $# -gt 0 && $1 != -* ]]; then
    build=$1
    shift
fi
out=${BENCH_RESULTS_DIR:-build/bench-results}
mkdir -p "$out"
# One core, as the other runtime benchmarks: the figures are per-shard.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 1); fi
"${pin[@]}" "$build/tests/perf/bench_lsa" --json "$out/lsa_churn.json" "$@"
