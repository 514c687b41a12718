#!/usr/bin/env bash
# submit_to round trip (shard 0 -> 1 -> 0) and batched one-way throughput, both shards polling.
# Writes $BENCH_RESULTS_DIR/smp.json; prints the figures beside the issue's targets and the
# Seastar 25.05 anchor measured on this machine (1.68 us median round trip, 84 ns per message).
# Usage: tests/perf/run_smp.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"
runs=${BENCH_REPETITIONS:-5}
: > "$out/smp.runs.jsonl"
for i in $(seq "$runs"); do
    "$build/tests/perf/bench_smp" 200000 5000000 1000 | tail -n 1 >> "$out/smp.runs.jsonl"
done
/usr/bin/python3 - "$out/smp.runs.jsonl" "$out/smp.json" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = {k: statistics.median(r[k] for r in runs) for k in ("rtt_median_ns", "rtt_p99_ns", "rtt_p999_ns", "msgs_per_sec", "ns_per_msg")}
json.dump({"runs": runs, "median_of_runs": med}, open(sys.argv[2], "w"), indent=1)
rtt, p99, mps = med["rtt_median_ns"], med["rtt_p99_ns"], med["msgs_per_sec"]
print(f"submit_to round trip, median of {len(runs)} runs: median {rtt:.0f} ns, p99 {p99:.0f} ns "
      f"(target <= 1200 ns: {'met' if rtt <= 1200 else 'MISSED'}; Seastar 25.05 here: 1680 ns -> {1680 / rtt:.2f}x)")
print(f"batched one-way: {mps / 1e6:.1f} M msgs/s = {med['ns_per_msg']:.1f} ns/msg "
      f"(target >= 15 M/s: {'met' if mps >= 15e6 else 'MISSED'}; Seastar 25.05 here: 11.9 M/s -> {mps / 11.9e6:.2f}x)")
PY
