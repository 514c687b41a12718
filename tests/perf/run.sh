#!/usr/bin/env bash
# Runs the runtime microbenchmarks (Google Benchmark) with their baselines and writes
#   $BENCH_RESULTS_DIR/runtime_core.json  (raw Google Benchmark output, medians of repetitions)
#   $BENCH_RESULTS_DIR/runtime_core.md    (table with ratios against the baselines and targets)
# Usage: tests/perf/run.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"
reps=${BENCH_REPETITIONS:-5}
# Pin to one core where possible: the figures are per-core costs.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 1); fi
"${pin[@]}" "$build/tests/perf/bench_future" \
    --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/runtime_core.json" --benchmark_out_format=json
/usr/bin/python3 tests/perf/summarize_runtime.py "$out/runtime_core.json" > "$out/runtime_core.md"
cat "$out/runtime_core.md"
