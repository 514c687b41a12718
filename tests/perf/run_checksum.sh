#!/usr/bin/env bash
# The Internet checksum's AVX2 loop against the portable one it replaced (the baseline), same run,
# same buffers (tests/perf/bench_checksum.cc, Google Benchmark, medians of repetitions). Writes
#   $BENCH_RESULTS_DIR/checksum.json (raw Google Benchmark output) and checksum.md (table, ratios).
# Usage: tests/perf/run_checksum.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: BENCH_REPETITIONS (5).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"
reps=${BENCH_REPETITIONS:-5}
bin=$build/tests/perf/bench_checksum
[[ -x $bin ]] || { echo "run_checksum.sh: $bin is missing (build $build with -Dbenchmarks=true)" >&2; exit 1; }
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 1); fi
"${pin[@]}" "$bin" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_out="$out/checksum.json" --benchmark_out_format=json >/dev/null
/usr/bin/python3 - "$out/checksum.json" "$out/checksum.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
med = {}
for b in d["benchmarks"]:
    if b.get("aggregate_name") == "median":
        name, size = b["run_name"].rsplit("/", 1)
        med[(name, int(size))] = b["real_time"]  # ns per call
sizes = sorted({s for _, s in med})
lines = ["Internet checksum, ns per call (median of repetitions), and GB/s; the portable 64-bit loop is the baseline",
         "", "| bytes | portable | avx2 | checksummer (dispatched) | avx2 speed-up |", "|---:|---:|---:|---:|---:|"]
for s in sizes:
    sc, av, ck = med.get(("checksum/scalar", s)), med.get(("checksum/avx2", s)), med.get(("checksum/checksummer", s))
    lines.append(f"| {s} | {sc:.1f} ({s / sc:.1f} GB/s) | {av:.1f} ({s / av:.1f} GB/s) | {ck:.1f} | {sc / av:.2f}x |")
ctx = d.get("context", {})
lines += ["", f"host: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; build type of the library: "
          f"{ctx.get('library_build_type')}"]
text = "\n".join(lines) + "\n"
open(sys.argv[2], "w").write(text)
print(text, end="")
PY
