#!/usr/bin/env bash
# Disk I/O throughput: Reef's file API (tests/bench/io_bench, one shard) against fio with the
# io_uring engine, on the same file, size, queue depth and duration, in the same run:
#   randread  4 KiB  random reads   (IOPS)
#   read      128 KiB sequential reads  (bandwidth)
#   write     128 KiB sequential writes (bandwidth)
# Both use O_DIRECT. The file is laid out once (written in full, so reads hit allocated blocks).
# io_bench runs with an io-properties file that does not limit it (max_in_flight = the depth, very
# high rates), so the I/O scheduler is in the path but not in the way. Target: Reef >= 0.9x fio
# (reported as met or MISSED; a miss does not fail the run, a broken run does).
#
# Rounds: a virtual disk's throughput drifts from second to second with the host's load (on the
# development VM fio's sequential reads range from 1.2 to 3.3 GB/s between runs). Each round runs
# every case for fio and for Reef back to back, fio first in odd rounds and Reef first in even
# ones; the figures are the medians over the rounds and the ratio is median(reef) / median(fio).
# Every round's figures and ratio are kept in disk_io.json.
#
# Isolation (DISK_BENCH_RT=1, the default): both run pinned to one CPU at SCHED_RR priority 1
# (chrt -r 1, as run_memif_echo.sh does), so compilers and other ordinary processes cannot take
# the CPU from either. The CPU must not be the one that takes the disk's completion interrupts:
# the block layer then runs part of each request in a per-CPU kernel worker (kblockd) on that CPU,
# an ordinary thread that a polling reactor at real-time priority starves (Reef's 128 KiB writes
# fell to 0.06x fio there; fio sleeps in io_uring_enter and does not starve it). By default the
# script picks the CPU of its affinity mask that took the fewest of the disk's interrupts
# (virtio or nvme queues in /proc/interrupts); DISK_BENCH_CPU overrides.
#
# The directory must be on a real disk: tmpfs would measure memory (the script refuses tmpfs).
# Writes $BENCH_RESULTS_DIR/disk_io.txt (table) and disk_io.json (every figure and the ratios).
# Usage: tests/bench/run_disk_io.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: DISK_BENCH_DIR (/var/tmp), DISK_BENCH_SIZE (1G), DISK_BENCH_DEPTH (32),
#   DISK_BENCH_DURATION (5, seconds per run), DISK_BENCH_ROUNDS (3), DISK_BENCH_RT (1),
#   DISK_BENCH_CPU (auto), DISK_BENCH_BACKEND (auto: io_bench's --reactor-backend),
#   DISK_BENCH_CASES ("randread read write").
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

dir=${DISK_BENCH_DIR:-/var/tmp}
size=${DISK_BENCH_SIZE:-1G}
depth=${DISK_BENCH_DEPTH:-32}
duration=${DISK_BENCH_DURATION:-5}
rounds=${DISK_BENCH_ROUNDS:-3}
backend=${DISK_BENCH_BACKEND:-auto}
cases=${DISK_BENCH_CASES:-randread read write}

bench_bin=$build/tests/bench/io_bench
[[ -x $bench_bin ]] || { echo "run_disk_io.sh: $bench_bin is missing (build $build first)" >&2; exit 1; }
command -v fio >/dev/null || { echo "run_disk_io.sh: fio is not installed (apt-get install fio)" >&2; exit 1; }
if [[ $(stat -f -c %T "$dir") == tmpfs ]]; then
    echo "run_disk_io.sh: $dir is a tmpfs; set DISK_BENCH_DIR to a directory on a disk" >&2
    exit 1
fi

# The disk's interrupt names: the parent device of the block device holding $dir (virtio1,
# nvme0, ...), as /proc/interrupts lists its queues ("virtio1-req.0", "nvme0q1").
disk_irq_name() {
    local src dev link
    src=$(findmnt -no SOURCE --target "$dir" 2>/dev/null) || return 0
    dev=$(basename "$src")
    [[ -e /sys/class/block/$dev ]] || return 0
    # A partition's device is its parent disk's.
    [[ -e /sys/class/block/$dev/partition ]] && dev=$(basename "$(dirname "$(readlink -f "/sys/class/block/$dev")")")
    link=$(readlink -f "/sys/class/block/$dev/device" 2>/dev/null) || return 0
    basename "$link"
}

pick_cpu() {
    local allowed name
    allowed=$(/usr/bin/python3 -c 'import os; print(" ".join(map(str, sorted(os.sched_getaffinity(0)))))')
    name=$(disk_irq_name)
    /usr/bin/python3 - "$name" $allowed <<'PY'
import re, sys
name, allowed = sys.argv[1], [int(c) for c in sys.argv[2:]]
counts = {c: 0 for c in allowed}
if name:
    lines = open("/proc/interrupts").read().splitlines()
    cpus = [int(c[3:]) for c in lines[0].split()]
    queue = re.compile(re.escape(name) + r"(-.*|q\d+)$")
    for line in lines[1:]:
        parts = line.split()
        if parts and queue.match(parts[-1]):
            for cpu, n in zip(cpus, parts[1:1 + len(cpus)]):
                if cpu in counts and n.isdigit():
                    counts[cpu] += int(n)
# Fewest disk interrupts; among equals the lowest number.
print(min(allowed, key=lambda c: (counts[c], c)))
PY
}

cpu=${DISK_BENCH_CPU:-$(pick_cpu)}
run=(taskset -c "$cpu")
isolation="pinned to CPU $cpu"
if [[ ${DISK_BENCH_RT:-1} == 1 ]]; then
    run=(chrt -r 1 taskset -c "$cpu")
    isolation="pinned to CPU $cpu, SCHED_RR priority 1"
fi

work=$(mktemp -d)
file=$(mktemp -p "$dir" reef-disk-bench.XXXXXX)
cleanup() { rm -rf "$work"; rm -f "$file"; }
trap cleanup EXIT

bytes=$(/usr/bin/python3 -c '
import sys
s = sys.argv[1]; m = {"K": 10, "M": 20, "G": 30, "T": 40}
print(int(s[:-1]) << m[s[-1].upper()] if s[-1].upper() in m else int(s))' "$size")

echo "laying out $size in $file; $isolation; disk interrupts: $(disk_irq_name || true)" >&2
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

# run_fio NAME MODE BS ROUND / run_reef NAME MODE BS ROUND: one measurement each, into
# $work/NAME.ROUND.{fio,reef}.json.
run_fio() {
    local name=$1 mode=$2 bs=$3 r=$4
    "${run[@]}" fio --name="$name" --filename="$file" --size="$bytes" --rw="$mode" --bs="$bs" --iodepth="$depth" \
        --ioengine=io_uring --direct=1 --time_based --runtime="$duration" --numjobs=1 \
        --output-format=json --output="$work/$name.$r.fio.json"
}
run_reef() {
    local name=$1 mode=$2 bs=$3 r=$4
    "${run[@]}" "$bench_bin" --smp 1 --cpuset "$cpu" --reactor-backend "$backend" \
        --io-properties-file "$work/io.yaml" --file "$file" --mode "$mode" --block-size "$bs" --depth "$depth" \
        --duration "$duration" --size "$bytes" >"$work/$name.$r.reef.json" 2>"$work/$name.$r.reef.err" || {
        echo "run_disk_io.sh: io_bench failed:" >&2
        cat "$work/$name.$r.reef.err" >&2
        exit 1
    }
}

for ((r = 1; r <= rounds; r++)); do
    for name in $cases; do
        case $name in
        randread) mode=randread bs=4096 ;;
        read) mode=read bs=131072 ;;
        write) mode=write bs=131072 ;;
        *) echo "run_disk_io.sh: unknown case '$name' (randread, read, write)" >&2; exit 1 ;;
        esac
        echo "  round $r/$rounds: $name" >&2
        if ((r % 2)); then
            run_fio "$name" "$mode" "$bs" "$r"
            run_reef "$name" "$mode" "$bs" "$r"
        else
            run_reef "$name" "$mode" "$bs" "$r"
            run_fio "$name" "$mode" "$bs" "$r"
        fi
    done
done

/usr/bin/python3 - "$work" "$out" "$size" "$depth" "$duration" "$rounds" "$isolation" "$cases" <<'PY'
import json, statistics, sys
work, out, size, depth, duration, rounds, isolation, cases = sys.argv[1:]
rounds = int(rounds)
target = 0.9
labels = {"randread": ("random 4 KiB read", "iops", "IOPS"),
          "read": ("sequential 128 KiB read", "bw", "MB/s"),
          "write": ("sequential 128 KiB write", "bw", "MB/s")}
result = {"size": size, "depth": int(depth), "duration_s": float(duration), "rounds": rounds,
          "isolation": isolation, "target_ratio": target, "cases": {}}
lines = [f"Disk I/O: Reef file API vs fio (io_uring engine, O_DIRECT), {size} file, depth {depth}, "
         f"{rounds} rounds of {duration} s each, {isolation}",
         "", f"{'workload':<26} {'fio':>10} {'reef':>10} {'unit':>6} {'ratio':>7}  {'per-round ratios':<28} target >= {target}x"]
backends = set()
for name in cases.split():
    label, metric, unit = labels[name]
    per_round = []
    for r in range(1, rounds + 1):
        fio = json.load(open(f"{work}/{name}.{r}.fio.json"))["jobs"][0]
        side = fio["write"] if name == "write" else fio["read"]
        reef = json.load(open(f"{work}/{name}.{r}.reef.json"))
        backends.add(reef.get("backend"))
        if metric == "iops":
            f, v = side["iops"], reef["iops"]
        else:
            f, v = side["bw_bytes"] / 1e6, reef["bw_bytes"] / 1e6
        per_round.append({"fio": f, "reef": v, "ratio": v / f if f > 0 else 0.0,
                          "fio_cpu_pct": fio["usr_cpu"] + fio["sys_cpu"],
                          "reef_reactor": {k: reef.get(k) for k in
                                           ("reactor_polls", "reactor_sleeps", "reactor_fd_polls", "idle_s")}})
    f = statistics.median(p["fio"] for p in per_round)
    v = statistics.median(p["reef"] for p in per_round)
    ratio = v / f if f > 0 else 0.0
    status = "met" if ratio >= target else "MISSED"
    result["cases"][name] = {"workload": label, "unit": unit, "fio": f, "reef": v, "ratio": ratio,
                             "status": status, "rounds": per_round}
    ratios = " ".join(f"{p['ratio']:.2f}" for p in per_round)
    lines.append(f"{label:<26} {f:>10.1f} {v:>10.1f} {unit:>6} {ratio:>6.2f}x  {ratios:<28} {status}")
lines.append("")
lines.append(f"fio and reef: medians over the rounds; ratio = median(reef) / median(fio). "
             f"Reef backend: {', '.join(sorted(b for b in backends if b))}")
open(f"{out}/disk_io.txt", "w").write("\n".join(lines) + "\n")
json.dump(result, open(f"{out}/disk_io.json", "w"), indent=2)
print("\n".join(lines))
PY
