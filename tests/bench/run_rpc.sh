#!/usr/bin/env bash
# RPC round trips on loopback: reef-rpc-bench --mode server --smp 1 pinned to the server CPU, and
# reef-rpc-bench --mode client --smp 1 (one connection, RPC_BENCH_CONCURRENCY calls in flight)
# pinned to the other, in one run:
#   - 64-byte calls (below the compression threshold, so LZ4 plays no part);
#   - 4 KiB text-like payloads with LZ4 agreed;
#   - 4 KiB payloads with compression off (--no-compress on the client).
# Each call's argument is echoed back, so a round trip moves the payload both ways. Reported per
# case: calls/s, mean latency, bytes on the wire per call, and the server's CPU time per call
# (utime + stime from /proc/<pid>/stat over the measured window); plus the ratio of the 4 KiB
# cases (LZ4 on / off). Rounds alternate the cases; medians are reported.
#
# Isolation: with RPC_BENCH_RT=1 (the default) server and client run SCHED_RR priority 1 (chrt).
#
# Writes $BENCH_RESULTS_DIR/rpc.txt (table) and rpc.json (every run and the medians), and a copy
# of the table as tests/bench/results/rpc-<date>.txt.
# Usage: tests/bench/run_rpc.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: RPC_BENCH_ROUNDS (3), RPC_BENCH_DURATION (5), RPC_BENCH_CONCURRENCY (32),
#   RPC_BENCH_SERVER_CPU (1), RPC_BENCH_CLIENT_CPU (0), RPC_BENCH_RT (1).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out" tests/bench/results

rounds=${RPC_BENCH_ROUNDS:-3}
duration=${RPC_BENCH_DURATION:-5}
concurrency=${RPC_BENCH_CONCURRENCY:-32}
server_cpu=${RPC_BENCH_SERVER_CPU:-1}
client_cpu=${RPC_BENCH_CLIENT_CPU:-0}
rt=()
if [[ ${RPC_BENCH_RT:-1} == 1 ]]; then
    rt=(chrt -r 1)
fi

bin=$build/apps/rpc_bench/reef-rpc-bench
[[ -x $bin ]] || { echo "run_rpc.sh: $bin is missing (build $build first)" >&2; exit 1; }

ticks_per_s=$(getconf CLK_TCK)
work=$(mktemp -d)
server_pid=
stop_server() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
trap 'stop_server; rm -rf "$work"' EXIT

# utime + stime of a process and its threads, in clock ticks (after the command name's ')').
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}

"${rt[@]}" "$bin" --mode server --smp 1 --cpuset "$server_cpu" --idle-policy sleep --address 127.0.0.1 --port 0 \
    --ctl-socket none >"$work/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/server.log" | sed 's/.*://' || true)
    [[ -n $port ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $port ]] || { echo "run_rpc.sh: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }

# run_one CASE ROUND: prints one JSON line.
run_one() {
    local name=$1 round=$2 args
    case $name in
        64B) args=(--payload 64) ;;
        4KiB-lz4) args=(--payload 4096) ;;
        4KiB-plain) args=(--payload 4096 --no-compress) ;;
    esac
    # The client warms up for 1 s before its measured window; the server's CPU is sampled around
    # that window.
    "${rt[@]}" "$bin" --mode client --smp 1 --cpuset "$client_cpu" --ctl-socket none --server "127.0.0.1:$port" \
        --concurrency "$concurrency" --duration "$duration" "${args[@]}" >"$work/client.out" 2>"$work/client.err" &
    local client=$!
    sleep 1
    local before after
    before=$(cpu_ticks "$server_pid")
    sleep "$duration"
    after=$(cpu_ticks "$server_pid")
    wait "$client" || { echo "run_rpc.sh: client failed" >&2; cat "$work/client.err" >&2; exit 1; }
    /usr/bin/python3 - "$work/client.out" "$name" "$round" "$((after - before))" "$ticks_per_s" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
if not lines:
    sys.exit("run_rpc.sh: no result line from the client")
r = json.loads(lines[-1])
ticks, hz = int(sys.argv[4]), int(sys.argv[5])
r.update({"case": sys.argv[2], "round": int(sys.argv[3]),
          "server_cpu_us_per_call": (ticks / hz * 1e6 / r["calls"]) if r["calls"] else None})
print(json.dumps(r))
PY
}

echo "rpc benchmark: $rounds rounds of ${duration} s, one connection with $concurrency calls in flight, client on CPU $client_cpu, server on CPU $server_cpu" >&2
: >"$work/runs.jsonl"
for ((r = 1; r <= rounds; r++)); do
    for name in 64B 4KiB-lz4 4KiB-plain; do
        line=$(run_one "$name" "$r")
        echo "  $line" >&2
        echo "$line" >>"$work/runs.jsonl"
    done
done
stop_server

/usr/bin/python3 - "$work/runs.jsonl" "$out/rpc.json" "$out/rpc.txt" "$duration" "$concurrency" \
    "${RPC_BENCH_RT:-1}" "$build" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dur, conc, rt = sys.argv[4], sys.argv[5], sys.argv[6] == "1"
cases = ["64B", "4KiB-lz4", "4KiB-plain"]
med = {}
for c in cases:
    rs = [r for r in runs if r["case"] == c]
    med[c] = {k: statistics.median(r[k] for r in rs)
              for k in ("calls_per_s", "mean_latency_us", "wire_bytes_per_call", "server_cpu_us_per_call")}
    med[c]["lz4"] = rs[0]["lz4"]
    med[c]["errors"] = sum(r["errors"] for r in rs)
ratio = med["4KiB-lz4"]["calls_per_s"] / med["4KiB-plain"]["calls_per_s"]
wire_ratio = med["4KiB-lz4"]["wire_bytes_per_call"] / med["4KiB-plain"]["wire_bytes_per_call"]
rounds = len(runs) // len(cases)
lines = [f"RPC round trips on loopback, reef-rpc-bench --smp 1 each, 1 connection, {conc} calls in flight, "
         f"{dur} s per run, medians of {rounds} rounds", "",
         "| case | LZ4 | calls/s | mean latency us | wire bytes/call | server CPU us/call |",
         "|---|---|---:|---:|---:|---:|"]
for c in cases:
    m = med[c]
    lines.append(f"| {c} | {'on' if m['lz4'] else 'off'} | {m['calls_per_s']:.0f} | {m['mean_latency_us']:.1f} | "
                 f"{m['wire_bytes_per_call']:.0f} | {m['server_cpu_us_per_call']:.2f} |")
lines += ["", f"4 KiB payloads: LZ4 on / off calls/s {ratio:.2f}x, wire bytes {wire_ratio:.2f}x",
          ("processes at SCHED_RR priority 1" if rt else "processes at normal priority") + f", build {sys.argv[7]}"]
errors = sum(med[c]["errors"] for c in cases)
if errors:
    lines.append(f"ERRORS: {errors} failed calls")
json.dump({"config": {"duration_s": float(dur), "concurrency": int(conc), "realtime_priority": rt},
           "runs": runs, "median": med, "lz4_over_plain_4k": ratio, "lz4_over_plain_4k_wire": wire_ratio},
          open(sys.argv[2], "w"), indent=1)
text = "\n".join(lines) + "\n"
open(sys.argv[3], "w").write(text)
print(text, end="")
PY
cp "$out/rpc.txt" "tests/bench/results/rpc-$(date +%Y-%m-%d).txt"
