#!/usr/bin/env bash
# Disk I/O throughput: Reef's file API (tests/bench/io_bench, one shard) against fio with the
# io_uring engine, on the same file, size, queue depth and duration, one run each:
#   randread  4 KiB  random reads   (IOPS)
#   read      128 KiB sequential reads  (bandwidth)
#   write     128 KiB sequential writes (bandwidth)
# Both use O_DIRECT. The file is laid out once (written in full, so reads hit allocated blocks).
# io_bench runs with an io-properties file that does not limit it (max_in_flight = the depth, very
# high rates), so the I/O scheduler is in the path but not in the way. Target: Reef >= 0.9x fio
# (reported as met or MISSED; a miss does not fail the run, a broken run does).
#
# The directory must be on a real disk: tmpfs would measure memory (the script refuses tmpfs).
# Writes $BENCH_RESULTS_DIR/disk_io.txt (table) and disk_io.json (every figure and the ratios).
# Usage: tests/bench/run_disk_io.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: DISK_BENCH_DIR (/var/tmp), DISK_BENCH_SIZE (1G), DISK_BENCH_DEPTH (32),
#   DISK_BENCH_DURATION (10), DISK_BENCH_BACKEND (auto: io_bench's --reactor-backend).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

dir=${DISK_BENCH_DIR:-/var/tmp}
size=${DISK_BENCH_SIZE:-1G}
depth=${DISK_BENCH_DEPTH:-32}
duration=${DISK_BENCH_DURATION:-10}
backend=${DISK_BENCH_BACKEND:-auto}

bench_bin=$build/tests/bench/io_bench
[[ -x $bench_bin ]] || { echo "run_disk_io.sh: $bench_bin is missing (build $build first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "run_disk_io.sh: fio is not installed (apt-get install fio)" >&2; exit 1; }
if [[ $(stat -f -c %T "$dir") == tmpfs ]]; then
    echo "run_disk_io.sh: $dir is a tmpfs; set DISK_BENCH_DIR to a directory on a disk" >&2
    exit 1
fi

work=$(mktemp -d)
file=$(mktemp -p "$dir" reef-disk-bench.XXXXXX)
cleanup() { rm -rf "$work"; rm -f "$file"; }
trap cleanup EXIT

bytes=$(/usr/bin/python3 -c '
import sys
s = sys.argv[1]; m = {"K": 10, "M": 20, "G": 30, "T": 40}
print(int(s[:-1]) << m[s[-1].upper()] if s[-1].upper() in m else int(s))' "$size")

echo "laying out $size in $file" >&2
fio --name=layout --filename="$file" --size="$bytes" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 --output=/dev/null

cat >"$work/io.yaml" <<EOF
# run_disk_io.sh: no limit from the scheduler, room for the whole depth
disks:
  - mountpoint: $dir
    read_iops: 1e12
    read_bandwidth: 1e15
    write_iops: 1e12
    write_bandwidth: 1e15
    max_in_flight: $depth
EOF

# run_case NAME MODE BS: fio then io_bench; writes $work/NAME.fio.json and $work/NAME.reef.json.
run_case() {
    local name=$1 mode=$2 bs=$3
    echo "  $name: fio" >&2
    fio --name="$name" --filename="$file" --size="$bytes" --rw="$mode" --bs="$bs" --iodepth="$depth" \
        --ioengine=io_uring --direct=1 --time_based --runtime="$duration" --numjobs=1 \
        --output-format=json --output="$work/$name.fio.json"
    echo "  $name: reef" >&2
    "$bench_bin" --smp 1 --reactor-backend "$backend" --io-properties-file "$work/io.yaml" --file "$file" \
        --mode "$mode" --block-size "$bs" --depth "$depth" --duration "$duration" --size "$bytes" \
        >"$work/$name.reef.json" 2>"$work/$name.reef.err" || {
        echo "run_disk_io.sh: io_bench failed:" >&2
        cat "$work/$name.reef.err" >&2
        exit 1
    }
}

run_case randread randread 4096
run_case read read 131072
run_case write write 131072

/usr/bin/python3 - "$work" "$out" "$size" "$depth" "$duration" <<'PY'
import json, sys
work, out, size, depth, duration = sys.argv[1:]
target = 0.9
cases = [("randread", "random 4 KiB read", "iops", "IOPS"),
         ("read", "sequential 128 KiB read", "bw", "MB/s"),
         ("write", "sequential 128 KiB write", "bw", "MB/s")]
result = {"size": size, "depth": int(depth), "duration_s": float(duration), "target_ratio": target, "cases": {}}
lines = [f"Disk I/O: Reef file API vs fio (io_uring engine, O_DIRECT), {size} file, depth {depth}, {duration} s each",
         "", f"{'workload':<26} {'fio':>12} {'reef':>12} {'unit':>6} {'ratio':>7}  target >= {target}x"]
for name, label, metric, unit in cases:
    fio = json.load(open(f"{work}/{name}.fio.json"))["jobs"][0]
    side = fio["write"] if name == "write" else fio["read"]
    reef = json.load(open(f"{work}/{name}.reef.json"))
    if metric == "iops":
        f, r = side["iops"], reef["iops"]
    else:
        f, r = side["bw_bytes"] / 1e6, reef["bw_bytes"] / 1e6
    ratio = r / f if f > 0 else 0.0
    status = "met" if ratio >= target else "MISSED"
    result["cases"][name] = {"workload": label, "unit": unit, "fio": f, "reef": r, "ratio": ratio,
                             "status": status, "reef_backend": reef.get("backend"),
                             "fio_iops": side["iops"], "fio_bw_bytes": side["bw_bytes"],
                             "reef_iops": reef["iops"], "reef_bw_bytes": reef["bw_bytes"]}
    lines.append(f"{label:<26} {f:>12.1f} {r:>12.1f} {unit:>6} {ratio:>6.2f}x  {status}")
backends = {c["reef_backend"] for c in result["cases"].values()}
lines.append("")
lines.append(f"Reef backend: {', '.join(sorted(b for b in backends if b))}")
open(f"{out}/disk_io.txt", "w").write("\n".join(lines) + "\n")
json.dump(result, open(f"{out}/disk_io.json", "w"), indent=2)
print("\n".join(lines))
PY
