#!/usr/bin/env bash
# Echo server CPU cost per request: reef-echo (one shard, posix stack) against the hand-written
# epoll floor server (tests/bench/epoll_echo_floor.cc), both pinned to the same CPU and loaded by
# the same reef-loadgen (one shard, pinned to another CPU): 64 connections, 1 request in flight
# each, 64-byte requests, 10 s measured after 2 s of warmup. The server's CPU time (utime + stime
# of the whole process, from /proc/<pid>/stat) over the measured window divided by the requests
# answered in it gives CPU microseconds per request. The pair runs 3 times, interleaved; medians
# are reported. Target: Reef <= 1.1x the floor (reported as met or MISSED; a miss does not fail
# the run, a broken run does).
#
# reef-echo runs with --idle-policy sleep: when it has nothing to do it sleeps in epoll_wait like
# the floor does, so idle polling is not counted as work.
#
# Writes $BENCH_RESULTS_DIR/echo.txt (table) and echo.json (every run and the medians).
# Usage: tests/bench/run_echo.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: ECHO_BENCH_ROUNDS (3), ECHO_BENCH_DURATION (10), ECHO_BENCH_WARMUP (2),
#   ECHO_BENCH_CONNECTIONS (64), ECHO_BENCH_PIPELINE (1), ECHO_BENCH_SIZE (64),
#   ECHO_BENCH_SERVER_CPU (1), ECHO_BENCH_CLIENT_CPU (0).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

rounds=${ECHO_BENCH_ROUNDS:-3}
duration=${ECHO_BENCH_DURATION:-10}
warmup=${ECHO_BENCH_WARMUP:-2}
connections=${ECHO_BENCH_CONNECTIONS:-64}
pipeline=${ECHO_BENCH_PIPELINE:-1}
size=${ECHO_BENCH_SIZE:-64}
server_cpu=${ECHO_BENCH_SERVER_CPU:-1}
client_cpu=${ECHO_BENCH_CLIENT_CPU:-0}
idle_policy=sleep

echo_bin=$build/apps/echo/reef-echo
loadgen_bin=$build/apps/loadgen/reef-loadgen
floor_bin=$build/tests/bench/epoll_echo_floor
for b in "$echo_bin" "$loadgen_bin" "$floor_bin"; do
    [[ -x $b ]] || { echo "run_echo.sh: $b is missing (build $build first)" >&2; exit 1; }
done

ticks_per_s=$(getconf CLK_TCK)
work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat; the command
# name in field 2 may hold spaces, so count from the closing parenthesis).
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086  # split into fields
    set -- $stat
    echo $((${12} + ${13}))
}

# Wait (up to 30 s) until the server's output has its ready line.
wait_ready() {
    local log=$1 pattern=$2 i
    for ((i = 0; i < 300; i++)); do
        grep -q "$pattern" "$log" && return 0
        kill -0 "$server_pid" 2>/dev/null || { echo "run_echo.sh: server exited:" >&2; cat "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "run_echo.sh: server not ready after 30 s:" >&2
    cat "$log" >&2
    return 1
}

# run_one NAME ROUND: start the server, load it, write $work/NAME.ROUND.json.
run_one() {
    local name=$1 round=$2 port log
    port=$(free_port)
    log=$work/$name.$round.log
    case $name in
        reef)
            "$echo_bin" --smp 1 --cpuset "$server_cpu" --network-stack posix --idle-policy "$idle_policy" \
                --address 127.0.0.1 --port "$port" --udp-port 0 >"$log" 2>&1 &
            server_pid=$!
            wait_ready "$log" "reef-echo listening"
            ;;
        floor)
            taskset -c "$server_cpu" "$floor_bin" --address 127.0.0.1 --port "$port" >"$log" 2>&1 &
            server_pid=$!
            wait_ready "$log" "^ready"
            ;;
    esac
    "$loadgen_bin" --smp 1 --cpuset "$client_cpu" --server "127.0.0.1:$port" --connections "$connections" \
        --pipeline "$pipeline" --request-size "$size" --warmup "$warmup" --duration "$duration" --json \
        >"$work/loadgen.json" 2>"$work/loadgen.err" &
    local lg=$!
    # The server's CPU time over the measured window: from the end of the warmup to the end of the
    # measurement (the load generator connects first, within milliseconds, so the windows match
    # to a few ms of 10 s).
    sleep "$warmup"
    local t0 c0 t1 c1
    t0=$(date +%s.%N)
    c0=$(cpu_ticks "$server_pid")
    sleep "$duration"
    c1=$(cpu_ticks "$server_pid")
    t1=$(date +%s.%N)
    local rc=0
    wait "$lg" || rc=$?
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    server_pid=
    if [[ $rc != 0 ]]; then
        echo "run_echo.sh: reef-loadgen failed against $name (exit $rc):" >&2
        cat "$work/loadgen.err" "$work/loadgen.json" >&2
        return 1
    fi
    /usr/bin/python3 - "$work/loadgen.json" "$name" "$round" "$c0" "$c1" "$t0" "$t1" "$ticks_per_s" \
        >"$work/$name.$round.json" <<'PY'
import json, sys
lg = json.load(open(sys.argv[1]))
name, rnd = sys.argv[2], int(sys.argv[3])
c0, c1, t0, t1, hz = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
cpu_s = (c1 - c0) / hz
wall_s = t1 - t0
# Requests the server answered during the CPU window, at the load generator's measured rate.
requests = lg["rps"] * wall_s
print(json.dumps({
    "server": name, "round": rnd, "rps": lg["rps"], "requests": lg["requests"], "errors": lg["errors"],
    "server_cpu_s": cpu_s, "window_s": wall_s, "server_cpu_util": cpu_s / wall_s,
    "cpu_us_per_request": cpu_s * 1e6 / requests if requests else None,
    "latency_us": lg["latency_us"],
}))
PY
    echo "  $name round $round: $(cat "$work/$name.$round.json")" >&2
}

echo "echo benchmark: $rounds rounds, ${connections} connections x pipeline ${pipeline}, ${size}-byte requests," \
    "${duration} s after ${warmup} s warmup; server on CPU $server_cpu, reef-loadgen on CPU $client_cpu;" \
    "reef-echo --idle-policy $idle_policy" >&2
for ((r = 1; r <= rounds; r++)); do
    run_one reef "$r"
    run_one floor "$r"
done

cat "$work"/reef.*.json "$work"/floor.*.json >"$work/runs.jsonl"
/usr/bin/python3 - "$work/runs.jsonl" "$out/echo.json" "$out/echo.txt" "$idle_policy" \
    "$connections" "$pipeline" "$size" "$duration" "$warmup" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
idle, conns, pipe, size, dur, warm = sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9])
med = {}
for name in ("reef", "floor"):
    rs = [r for r in runs if r["server"] == name]
    med[name] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "cpu_us_per_request", "server_cpu_util")}
    med[name]["p50_us"] = statistics.median(r["latency_us"]["p50"] for r in rs)
    med[name]["p99_us"] = statistics.median(r["latency_us"]["p99"] for r in rs)
ratio = med["reef"]["cpu_us_per_request"] / med["floor"]["cpu_us_per_request"]
target = 1.1
met = ratio <= target
result = {
    "config": {"connections": conns, "pipeline": pipe, "request_size": size, "duration_s": dur, "warmup_s": warm,
               "reef_idle_policy": idle, "rounds": len(runs) // 2},
    "runs": runs, "median_of_runs": med,
    "cpu_per_request_ratio_reef_over_floor": ratio, "target_ratio": target, "target_met": met,
}
json.dump(result, open(sys.argv[2], "w"), indent=1)
lines = [
    f"Echo server CPU per request: {conns} connections x pipeline {pipe}, {size}-byte requests, "
    f"{dur:g} s after {warm:g} s warmup, medians of {len(runs) // 2} interleaved rounds",
    f"(reef-echo: 1 shard, posix stack, --idle-policy {idle}; floor: tests/bench/epoll_echo_floor)",
    "",
    f"| server | requests/s | server CPU | CPU us/request | p50 us | p99 us |",
    f"|---|---:|---:|---:|---:|---:|",
]
for name, label in (("reef", "reef-echo"), ("floor", "epoll floor")):
    m = med[name]
    lines.append(f"| {label} | {m['rps']:,.0f} | {100 * m['server_cpu_util']:.0f}% | {m['cpu_us_per_request']:.3f} "
                 f"| {m['p50_us']:.1f} | {m['p99_us']:.1f} |")
lines += ["", f"Reef / floor CPU per request: {ratio:.2f}x (target <= {target}x: {'met' if met else 'MISSED'})"]
text = "\n".join(lines) + "\n"
open(sys.argv[3], "w").write(text)
print(text, end="")
PY
