#!/usr/bin/env bash
# Static files over HTTP/1.1: reef-httpd (one shard, posix stack) against nginx
# (worker_processes 1, access_log off, sendfile on, open_file_cache revalidated every second like
# reef-httpd's file cache, keep-alive), each pinned to the server CPU,
# loaded by wrk (one thread, 64 keep-alive connections) pinned to the other CPU, on the same
# 100-byte and 4 KiB files, in one run. For each server and file: requests/s from wrk, and the
# server's CPU time per request (utime + stime of the server processes over the measured window,
# from /proc/<pid>/stat, divided by wrk's request count). Rounds alternate the servers; medians
# are reported. Target: reef-httpd >= 1.3x nginx in requests/s (reported as met or MISSED on
# each file; a miss does not fail the run, a broken run does).
#
# Isolation: with HTTPD_BENCH_RT=1 (the default) servers and wrk run SCHED_RR priority 1 (chrt),
# so other work on the machine cannot take their CPUs (see run_memif_echo.sh).
#
# Writes $BENCH_RESULTS_DIR/httpd.txt (table) and httpd.json (every run and the medians).
# Usage: tests/bench/run_httpd.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: HTTPD_BENCH_ROUNDS (3), HTTPD_BENCH_DURATION (10), HTTPD_BENCH_CONNECTIONS (64),
#   HTTPD_BENCH_SERVER_CPU (1), HTTPD_BENCH_CLIENT_CPU (0), HTTPD_BENCH_RT (1).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

rounds=${HTTPD_BENCH_ROUNDS:-3}
duration=${HTTPD_BENCH_DURATION:-10}
connections=${HTTPD_BENCH_CONNECTIONS:-64}
server_cpu=${HTTPD_BENCH_SERVER_CPU:-1}
client_cpu=${HTTPD_BENCH_CLIENT_CPU:-0}
rt=()
if [[ ${HTTPD_BENCH_RT:-1} == 1 ]]; then
    rt=(chrt -r 1)
fi

httpd_bin=$build/apps/httpd/reef-httpd
[[ -x $httpd_bin ]] || { echo "run_httpd.sh: $httpd_bin is missing (build $build first)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "run_httpd.sh: wrk not found (apt-get install wrk)" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $nginx_bin ]] || { echo "run_httpd.sh: nginx not found (apt-get install nginx-light)" >&2; exit 1; }

ticks_per_s=$(getconf CLK_TCK)
work=$(mktemp -d)
chmod 755 "$work"
server_pids=()
stop_servers() {
    local pid
    for pid in "${server_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    server_pids=()
}
trap 'stop_servers; rm -rf "$work"' EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# utime + stime of a process and its threads, in clock ticks (after the command name's ')').
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    read -r -a f <<<"$stat"
    echo $((f[11] + f[12]))
}

www=$work/www
mkdir -p "$www"
head -c 100 /dev/urandom | base64 -w0 | head -c 100 >"$www/100.txt"
head -c 4096 /dev/urandom | base64 -w0 | head -c 4096 >"$www/4k.txt"
chmod -R a+rX "$www"

# Start NAME on a free port; sets port and server_pids (the processes whose CPU counts).
start_server() {
    local name=$1
    port=$(free_port)
    case $name in
        reef)
            "${rt[@]}" "$httpd_bin" --smp 1 --cpuset "$server_cpu" --idle-policy sleep --address 127.0.0.1 \
                --port "$port" --root "$www" --ctl-socket none >"$work/reef.log" 2>&1 &
            server_pids=($!)
            for _ in $(seq 100); do
                grep -qs "listening" "$work/reef.log" && break
                kill -0 "${server_pids[0]}" 2>/dev/null || { cat "$work/reef.log" >&2; exit 1; }
                sleep 0.1
            done
            ;;
        nginx)
            cat >"$work/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity auto;
daemon off;
master_process on;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    default_type text/plain;
    # reef-httpd keeps small files in memory and revalidates them once a second: the same here.
    open_file_cache max=1000 inactive=60s;
    open_file_cache_valid 1s;
    client_body_temp_path $work/nginx-tmp;
    proxy_temp_path $work/nginx-tmp;
    fastcgi_temp_path $work/nginx-tmp;
    uwsgi_temp_path $work/nginx-tmp;
    scgi_temp_path $work/nginx-tmp;
    server {
        listen 127.0.0.1:$port;
        root $www;
    }
}
EOF
            mkdir -p "$work/nginx-tmp"
            "${rt[@]}" taskset -c "$server_cpu" "$nginx_bin" -c "$work/nginx.conf" -e "$work/nginx-error.log" \
                >"$work/nginx.log" 2>&1 &
            local master=$!
            for _ in $(seq 100); do
                [[ -s $work/nginx.pid ]] && pgrep -P "$master" >/dev/null && break
                sleep 0.1
            done
            server_pids=("$master" $(pgrep -P "$master"))
            ;;
    esac
    curl -sf "http://127.0.0.1:$port/100.txt" -o /dev/null || { echo "run_httpd.sh: $name does not serve" >&2; exit 1; }
}

# run_one NAME FILE ROUND: prints one JSON line.
run_one() {
    local name=$1 file=$2 round=$3
    start_server "$name"
    # Warm up (caches, connections), then measure.
    taskset -c "$client_cpu" wrk -t1 -c"$connections" -d2s "http://127.0.0.1:$port/$file" >/dev/null
    local before=0 after=0 pid
    for pid in "${server_pids[@]}"; do before=$((before + $(cpu_ticks "$pid"))); done
    "${rt[@]}" taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"${duration}s" "http://127.0.0.1:$port/$file" \
        >"$work/wrk.txt"
    for pid in "${server_pids[@]}"; do after=$((after + $(cpu_ticks "$pid"))); done
    stop_servers
    /usr/bin/python3 - "$work/wrk.txt" "$name" "$file" "$round" "$((after - before))" "$ticks_per_s" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
name, file, rnd, ticks, hz = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
if not m or not rps:
    sys.exit(f"run_httpd.sh: cannot read wrk's output:\n{text}")
requests = int(m.group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print(json.dumps({"server": name, "file": file, "round": rnd, "requests": requests, "rps": float(rps.group(1)),
                  "cpu_us_per_request": (ticks / hz * 1e6 / requests) if requests else None,
                  "non_2xx": int(errors.group(1)) if errors else 0}))
PY
}

echo "httpd benchmark: $rounds rounds of ${duration} s, wrk -t1 -c$connections on CPU $client_cpu, servers on CPU $server_cpu" >&2
: >"$work/runs.jsonl"
for ((r = 1; r <= rounds; r++)); do
    for file in 100.txt 4k.txt; do
        for name in reef nginx; do
            line=$(run_one "$name" "$file" "$r")
            echo "  $line" >&2
            echo "$line" >>"$work/runs.jsonl"
        done
    done
done

/usr/bin/python3 - "$work/runs.jsonl" "$out/httpd.json" "$out/httpd.txt" "$duration" "$connections" \
    "${HTTPD_BENCH_RT:-1}" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dur, conns, rt = sys.argv[4], sys.argv[5], sys.argv[6] == "1"
target = 1.3
result = {"config": {"duration_s": float(dur), "connections": int(conns), "client": "wrk -t1", "realtime_priority": rt,
                     "baseline": "nginx worker_processes 1, access_log off, sendfile on"},
          "runs": runs, "files": {}}
lines = [f"Static files, keep-alive, wrk -t1 -c{conns}, {dur} s per run, medians of {len(runs) // 4} rounds",
         "", "| file | server | requests/s | server CPU us/request |", "|---|---|---:|---:|"]
summary = []
for file in ("100.txt", "4k.txt"):
    med = {}
    for name in ("reef", "nginx"):
        rs = [r for r in runs if r["server"] == name and r["file"] == file]
        med[name] = {"rps": statistics.median(r["rps"] for r in rs),
                     "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
                     "non_2xx": sum(r["non_2xx"] for r in rs)}
        lines.append(f"| {file} | {'reef-httpd --smp 1' if name == 'reef' else 'nginx'} | {med[name]['rps']:.0f} | "
                     f"{med[name]['cpu_us_per_request']:.2f} |")
    ratio = med["reef"]["rps"] / med["nginx"]["rps"]
    cpu_ratio = med["nginx"]["cpu_us_per_request"] / med["reef"]["cpu_us_per_request"]
    result["files"][file] = {"median": med, "rps_ratio": ratio, "cpu_per_request_ratio_nginx_over_reef": cpu_ratio,
                             "target_ratio": target, "target_met": ratio >= target}
    summary.append(f"{file}: reef-httpd / nginx requests/s {ratio:.2f}x (target >= {target}x: "
                   f"{'met' if ratio >= target else 'MISSED'}); nginx CPU per request / reef's {cpu_ratio:.2f}x")
    if med["reef"]["non_2xx"] or med["nginx"]["non_2xx"]:
        summary.append(f"  non-2xx replies: reef {med['reef']['non_2xx']}, nginx {med['nginx']['non_2xx']}")
lines += [""] + summary + ["processes at SCHED_RR priority 1" if rt else "processes at normal priority"]
json.dump(result, open(sys.argv[2], "w"), indent=1)
text = "\n".join(lines) + "\n"
open(sys.argv[3], "w").write(text)
print(text, end="")
PY
