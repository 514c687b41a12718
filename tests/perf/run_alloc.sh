#!/usr/bin/env bash
# Allocator benchmark (issue 3): small malloc/free pairs (16-512 B) on one shard and with
# cross-shard frees, Reef's allocator against glibc's in the same binary. Writes
#   $BENCH_RESULTS_DIR/alloc.json   (default build/bench-results; Google Benchmark JSON, medians)
#   $BENCH_RESULTS_DIR/alloc.log    (the benchmark's own report: machine, load average)
# and prints the median time per pair of each case and the ratio reef/glibc (target from the
# issue: <= 0.5 on one shard).
# Usage: tests/perf/run_alloc.sh [BUILD_DIR]   (a release build with benchmarks, e.g.
#   meson setup build-release -Dbuildtype=release -Db_ndebug=true -Dallocator=reef)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-build/bench-results}
mkdir -p "$out"
reps=${BENCH_REPETITIONS:-5}
# Not pinned: the cross-shard case runs two polling shards, which need two cores.
"$build/tests/perf/bench_alloc" \
    --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/alloc.json" --benchmark_out_format=json >/dev/null 2>"$out/alloc.log" ||
    { cat "$out/alloc.log" >&2; exit 1; }
/usr/bin/python3 - "$out/alloc.json" "$reps" <<'EOF'
import json
import sys

data = json.load(open(sys.argv[1]))
ns = {}
for b in data["benchmarks"]:
    if b.get("aggregate_name") == "median":
        # "pairs" is a rate (pairs per second): time per pair is its inverse. One shard: per CPU
        # second (other processes' preemption excluded); across shards: per wall-clock second.
        ns[b["run_name"].removesuffix("/real_time")] = 1e9 / b["pairs"]
print(f"allocator benchmark ({sys.argv[1]}; malloc is Reef's: {data['context'].get('malloc_is_reef', '?')}),"
      f" median of {sys.argv[2]} runs, time per malloc/free pair:")
print(f"{'case':<18} {'reef ns':>9} {'glibc ns':>9} {'reef/glibc':>11}  target")
for case, target in (("small_pairs", 0.5), ("cross_shard_free", None)):
    r, g = ns.get(case + "/reef"), ns.get(case + "/glibc")
    if r is None or g is None:
        print(f"{case:<18} missing from the results")
        continue
    goal = f"<= {target}x: {'met' if r / g <= target else 'NOT met'}" if target else "-"
    print(f"{case:<18} {r:9.2f} {g:9.2f} {r / g:10.2f}x  {goal}")
EOF
