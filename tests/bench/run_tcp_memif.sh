#!/usr/bin/env bash
# Reef's native TCP/IP stack over DPDK net_memif against the posix (kernel) stack on loopback, with
# the same two programs, in the same run (issue 6).
#
# Native: reef-echo (--smp 1 --network-stack native --dpdk-pmd, 198.18.0.1/15) pinned to the
# server CPU, reef-loadgen (same options, 198.18.0.2) on the other end of the same memif socket,
# pinned to the client CPU. By default reef-echo is the memif server and both processes copy
# every frame into or out of memif's shared buffers. With TCP_BENCH_SERVER_ZC=1 (and hugepages:
# zero-copy needs memory with a file descriptor) reef-echo is the memif client with zero-copy=yes
# and --single-file-segments: the peer's buffers are reef-echo's own mbufs, so the server does no
# memif copy (as with a NIC, which DMAs), and reef-loadgen, the memif server, copies every frame
# both ways. Measured 2026-11-27, that makes reef-loadgen the bottleneck (one-way bulk 21.7 Gbit/s
# against 27.1 in the default layout), so it is not the default. Each DPDK process gets its own --file-prefix from Reef
# (reef-<pid>, dataplane/eal.cc) and runs --in-memory, so the two do not meet except through memif.
# Posix: the same binaries without the native/DPDK options, on 127.0.0.1, pinned the same way;
# reef-echo there runs --idle-policy sleep (as in run_echo.sh: it sleeps in epoll_wait when idle,
# so idle polling is not counted as work); on the native stack it runs the default adaptive policy
# (a DPDK shard polls its queue while busy).
#
# Cases (reef-loadgen's echo generator checks every byte of every answer):
#   rr64    request/response, 64 connections, pipeline 1, 64-byte requests
#   rr1k    request/response, 64 connections, pipeline 1, 1 KiB requests
#   bulk1   throughput, 1 connection, 64 KiB requests, pipeline TCP_BENCH_BULK_PIPELINE (8)
#   bulk8   throughput, 8 connections, same requests and pipeline
#   sink1   one-way throughput (as iperf measures it), 1 connection: reef-echo --sink-ack SIZE drops
#           the data and answers each request's worth with an 8-byte byte count, which
#           reef-loadgen --generator sink checks; same request size as bulk, pipeline
#           TCP_BENCH_SINK_PIPELINE (16): iperf streams without waiting for answers, and with 8
#           requests (512 KiB) outstanding one connection is bound by the answers' round trip
#           (2026-11-27, same binaries, alternating 1-round runs: native sink1 17.60, 17.28, 13.92,
#           15.40 Gbit/s at 8; 28.21, 28.63, 15.92 at 16, the last while posix fell to 15.55 too)
#   sink8   the same over 8 connections
# Throughput is the payload rate one way (answered request bytes / s, in Gbit/s). In bulk the echo
# moves the same bytes back, so the wire carries them both ways and the server both receives and
# sends them; in sink they cross once.
#
# Server CPU: utime + stime of the whole server process (/proc/<pid>/stat) over a window inside
# the load generator's measured window (it starts TCP_BENCH_WARMUP s after the generator is up,
# plus a quarter second, and ends before the generator's window does); CPU per request = CPU
# utilisation / requests per second. "Per server core" = rate / server CPU utilisation, i.e. the
# rate one fully used core would give at that cost. The client's CPU is reported the same way.
# On the native stack reef-echo polls the NIC, so its CPU stays near 100% whatever its load: its
# busy fraction over the same window comes from its reactor counters, read from its control agent
# (--ctl-socket in the work directory, JSON-RPC shards.list at the window's start and end):
# busy = 1 - (delta idle_s + delta idle_poll_s) / delta uptime_s (asleep and polling without
# finding work are both idle). On the posix stack it sleeps when idle, so busy is its CPU
# utilisation. "Per busy server core" = rate / busy.
#
# Targets (reported as met or MISSED; a miss does not fail the run, a broken run does):
#   request/response: native >= 3x posix requests/s per server core (median of per-round ratios);
#   bulk: native >= 20 Gbit/s on one server core (the server has one; median of rounds), MTU 1500.
#   Both are also judged, and reported apart, on the per-busy-server-core figures (bulk: native
#   Gbit/s per busy server core >= 20).
#
# Isolation: with TCP_BENCH_RT=1 (the default, if chrt works) every process runs SCHED_RR priority
# 1 (see run_memif_echo.sh). Rounds interleave the stacks case by case (native first in odd
# rounds, posix first in even ones); medians over rounds.
# Memory: the DPDK processes run --no-huge unless TCP_BENCH_HUGE=1 (or TCP_BENCH_SERVER_ZC=1, which
# needs them). On this VM memif's copies have a slow mode: in some rounds the sender spends 54-63%
# of its time in memif's TX copy and free instead of 20%. On 2026-11-27 it hit about a third of the
# native sink rounds with hugepages and 3 of 30 without (docs/benchmarks.md, session 9; runs at
# different times, so this is a lean, not a proof). With TCP_BENCH_HUGE=1, as run_memif_echo.sh:
# 2 MiB pages are reserved (TCP_BENCH_HUGEPAGES, default 1024, only if fewer are reserved) and a
# private hugetlbfs is mounted for the run, both restored at exit; without root or pages the DPDK
# processes run --no-huge. The results say which.
#
# Writes $BENCH_RESULTS_DIR/tcp_memif.txt (table) and tcp_memif.json (every run and the medians).
# Usage: tests/bench/run_tcp_memif.sh [BUILD_DIR]   (a release build; scripts/dev.sh bench passes it)
# Environment: TCP_BENCH_ROUNDS (3), TCP_BENCH_DURATION (8), TCP_BENCH_WARMUP (2), TCP_BENCH_RT (1),
#   TCP_BENCH_SERVER_CPU (1), TCP_BENCH_CLIENT_CPU (0), TCP_BENCH_HUGE (0), TCP_BENCH_HUGEPAGES (1024),
#   TCP_BENCH_BULK_SIZE (65536), TCP_BENCH_BULK_PIPELINE (8), TCP_BENCH_SINK_PIPELINE (16), TCP_BENCH_CASES (rr64 rr1k bulk1 bulk8 sink1 sink8),
#   TCP_BENCH_MBUFS (32767: --dpdk-mbufs-per-shard of both DPDK processes),
#   TCP_BENCH_DPDK_ARGS (none: extra --dpdk-args of both DPDK processes),
#   TCP_BENCH_SERVER_ZC (0: the server is the copying memif server; 1: it is memif's zero-copy client),
#   TCP_BENCH_PERF (unset: a directory; each native run's measured window is profiled there with
#   `perf record -e cpu-clock` (a flat profile), one file per process: native.CASE.ROUND.{server,client}.data),
#   TCP_BENCH_PERF_ARGS (-F 1999: perf record's sampling options, e.g. "-F 499 --call-graph dwarf,16384").
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

rounds=${TCP_BENCH_ROUNDS:-3}
duration=${TCP_BENCH_DURATION:-8}
warmup=${TCP_BENCH_WARMUP:-2}
server_cpu=${TCP_BENCH_SERVER_CPU:-1}
client_cpu=${TCP_BENCH_CLIENT_CPU:-0}
want_pages=${TCP_BENCH_HUGEPAGES:-1024}
bulk_size=${TCP_BENCH_BULK_SIZE:-65536}
bulk_pipeline=${TCP_BENCH_BULK_PIPELINE:-8}
sink_pipeline=${TCP_BENCH_SINK_PIPELINE:-16}
mbufs=${TCP_BENCH_MBUFS:-32767}
dpdk_args=${TCP_BENCH_DPDK_ARGS:-}
server_zc=${TCP_BENCH_SERVER_ZC:-0}
use_huge=${TCP_BENCH_HUGE:-0}
[[ $server_zc == 1 ]] && use_huge=1
perf_dir=${TCP_BENCH_PERF:-}
read -ra perf_args <<<"${TCP_BENCH_PERF_ARGS:--F 1999}"
if [[ -n $perf_dir ]]; then
    command -v perf >/dev/null || { echo "run_tcp_memif.sh: TCP_BENCH_PERF needs perf (linux-perf)" >&2; exit 1; }
    mkdir -p "$perf_dir"
fi
read -r -a cases <<<"${TCP_BENCH_CASES:-rr64 rr1k bulk1 bulk8 sink1 sink8}"
server_ip=198.18.0.1
client_ip=198.18.0.2
server_mac=02:52:45:46:00:01
client_mac=02:52:45:46:00:02
tcp_port=7

echo_bin=$build/apps/echo/reef-echo
loadgen_bin=$build/apps/loadgen/reef-loadgen
for b in "$echo_bin" "$loadgen_bin"; do
    [[ -x $b ]] || { echo "run_tcp_memif.sh: $b is missing (build $build first)" >&2; exit 1; }
done
# grep without -q reads the whole help: with -q it may exit first, and pipefail turns the writer's SIGPIPE into a failure.
"$echo_bin" --help 2>/dev/null | grep -- '--dpdk-pmd' >/dev/null ||
    { echo "run_tcp_memif.sh: $echo_bin has no DPDK options (build with -Ddpdk=enabled)" >&2; exit 1; }
"$loadgen_bin" --help 2>/dev/null | grep -- '--host-ipv4-addr' >/dev/null ||
    { echo "run_tcp_memif.sh: $loadgen_bin has no native stack options (it must be a reef::app)" >&2; exit 1; }

rt=()
rt_used=0
if [[ ${TCP_BENCH_RT:-1} == 1 ]] && chrt -r 1 true 2>/dev/null; then
    rt=(chrt -r 1)
    rt_used=1
fi

# case NAME -> "connections request_size pipeline kind"
case_shape() {
    case $1 in
        rr64) echo "64 64 1 rr" ;;
        rr1k) echo "64 1024 1 rr" ;;
        bulk1) echo "1 $bulk_size $bulk_pipeline bulk" ;;
        bulk8) echo "8 $bulk_size $bulk_pipeline bulk" ;;
        sink1) echo "1 $bulk_size $sink_pipeline sink" ;;
        sink8) echo "8 $bulk_size $sink_pipeline sink" ;;
        *) echo "run_tcp_memif.sh: unknown case '$1' (rr64 rr1k bulk1 bulk8 sink1 sink8)" >&2; return 1 ;;
    esac
}
for c in "${cases[@]}"; do case_shape "$c" >/dev/null; done

ticks_per_s=$(getconf CLK_TCK)
nr_file=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
work=$(mktemp -d /tmp/reef-tcpbench.XXXXXX)
huge=$work/huge
sock=$work/memif.sock
old_pages=
mounted=
server_pid=
client_pid=
stop_pid() {
    local pid=$1
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    if [[ -n $pid ]]; then wait "$pid" 2>/dev/null || true; fi
}
cleanup() {
    stop_pid "$client_pid"
    stop_pid "$server_pid"
    rm -f "$sock"
    if [[ -n $mounted ]]; then umount "$huge" 2>/dev/null || true; fi
    if [[ -n $old_pages ]]; then echo "$old_pages" >"$nr_file" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Hugepages when we can have them; else --no-huge, said in the results.
huge_opts=(--no-huge)
huge_note="no hugepages (--no-huge)"
if [[ $use_huge != 1 ]]; then
    huge_note="no hugepages (--no-huge; TCP_BENCH_HUGE=1 for them)"
elif [[ $(id -u) == 0 && -w $nr_file ]]; then
    old_pages=$(<"$nr_file")
    if ((old_pages < want_pages)); then
        echo "$want_pages" >"$nr_file" 2>/dev/null || true
    fi
    got_pages=$(<"$nr_file")
    if ((got_pages >= 256)) && mkdir -p "$huge" && mount -t hugetlbfs -o pagesize=2M nodev "$huge"; then
        mounted=1
        huge_opts=(--huge-dir "$huge")
        huge_note="hugepages ($got_pages x 2 MiB reserved, private hugetlbfs)"
    else
        huge_note="no hugepages (only $got_pages could be reserved, or the mount failed): --no-huge"
    fi
else
    huge_note="no hugepages (not root): --no-huge"
fi

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {
    local log=$1 pattern=$2 pid=$3 what=$4 i
    for ((i = 0; i < 300; i++)); do
        grep -qs -- "$pattern" "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { echo "run_tcp_memif.sh: $what exited:" >&2; cat "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "run_tcp_memif.sh: $what: '$pattern' not seen after 30 s:" >&2
    cat "$log" >&2
    return 1
}

# sampler.py CLIENT_LOG READY_PATTERN SERVER_PID CLIENT_PID WARMUP DURATION HZ: waits for
# READY_PATTERN in the client's log (if any), then WARMUP + 0.25 s, then reads both processes'
# utime + stime over a window that ends before the client's measured window does (DURATION - 1 s,
# at least 0.75 DURATION); prints one JSON line. With CTL_SOCKET (the server's control agent) it
# also reads the server's reactor counters at the window's ends and prints its busy fraction.
cat >"$work/sampler.py" <<'PY'
import json, os, re, socket, sys, time
log, pattern, spid, cpid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
warm, dur, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
ctl = sys.argv[8] if len(sys.argv) > 8 else ""

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

if pattern:
    rx = re.compile(pattern)
    deadline = time.monotonic() + 30
    while True:
        try:
            if rx.search(open(log, errors="replace").read()):
                break
        except OSError:
            pass
        if not alive(cpid) or time.monotonic() > deadline:
            sys.exit(f"sampler: '{pattern}' not seen in {log}")
        time.sleep(0.02)
time.sleep(warm + 0.25)

class Agent:
    # JSON-RPC 2.0 over the agent's unix socket, one request per line; one connection for both
    # samples, opened before the window so the samples cost one round trip each.
    def __init__(self, path):
        deadline = time.monotonic() + 10
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(10)
                self.s.connect(path)
                break
            except OSError as e:
                self.s.close()
                if time.monotonic() > deadline:
                    sys.exit(f"sampler: control socket {path}: {e}")
                time.sleep(0.1)
        self.buf, self.id = b"", 0

    def shards(self):
        self.id += 1
        self.s.sendall(json.dumps({"jsonrpc": "2.0", "id": self.id, "method": "shards.list"}).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                sys.exit("sampler: the control agent closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        r = json.loads(line)
        if "error" in r:
            sys.exit(f"sampler: shards.list: {r['error']}")
        return r["result"]["shards"]

def reactor_window(a, b):
    # Summed over shards: busy cores, and the seconds that went to sleep and to empty polling.
    busy = idle = idle_poll = 0.0
    wall = None
    for x, y in zip(a, b):
        dt = y["uptime_s"] - x["uptime_s"]
        di, dp = y["idle_s"] - x["idle_s"], y["idle_poll_s"] - x["idle_poll_s"]
        busy += min(1.0, max(0.0, 1.0 - (di + dp) / dt))
        idle += di
        idle_poll += dp
        wall = dt if wall is None else min(wall, dt)
    return {"server_busy": busy, "server_reactor_window_s": wall, "server_idle_s": idle,
            "server_idle_poll_s": idle_poll}

agent = Agent(ctl) if ctl else None
window = max(dur - 1.0, 0.75 * dur)
t0, c0, l0 = time.monotonic(), ticks(spid), ticks(cpid)
r0 = agent.shards() if agent else None
time.sleep(window)
r1 = agent.shards() if agent else None
c1, l1, t1 = ticks(spid), ticks(cpid), time.monotonic()
out = {"window_s": t1 - t0, "server_cpu_s": (c1 - c0) / hz, "client_cpu_s": (l1 - l0) / hz}
if agent:
    out.update(reactor_window(r0, r1))
print(json.dumps(out))
PY
rt_sampler=()
if [[ $rt_used == 1 ]]; then
    rt_sampler=(chrt -r 2)
fi

# The EAL's default IOVA mode is kept (PA as root with hugepages): dpdk_device no longer looks up
# the IO address of a zero-copy TX fragment through /proc/self/pagemap (it cost 4x in bulk
# throughput here before; --iova-mode=va hid it).
# Which end of memif each DPDK process is (see the top of this file).
if [[ $server_zc == 1 && ${huge_opts[0]} == --huge-dir ]]; then
    server_vdev="net_memif0,role=client,zero-copy=yes,socket=$sock,socket-abstract=no,mac=$server_mac"
    client_vdev="net_memif0,role=server,socket=$sock,socket-abstract=no,mac=$client_mac"
    server_dpdk_args="$dpdk_args --single-file-segments"
    memif_note="reef-echo is memif's zero-copy client (no copy on the server), reef-loadgen the copying memif server"
else
    server_vdev="net_memif0,role=server,socket=$sock,socket-abstract=no,mac=$server_mac"
    client_vdev="net_memif0,role=client,socket=$sock,socket-abstract=no,mac=$client_mac"
    server_dpdk_args=$dpdk_args
    memif_note="reef-echo is the memif server, reef-loadgen the client; both copy every frame"
    [[ $server_zc == 1 ]] && memif_note+=" (zero-copy asked for, but it needs hugepages)"
fi
native_common=(--network-stack native --dpdk-pmd "${huge_opts[@]}" --dpdk-mbufs-per-shard "$mbufs"
    --netmask-ipv4-addr 255.254.0.0 --gw-ipv4-addr "")
# reef-echo's control agent on the native stack: the sampler reads its reactor counters there.
ctl_sock=$work/ctl.sock

# run_one STACK CASE ROUND: one server and one load generator; writes $work/run.STACK.CASE.ROUND.json.
run_one() {
    local stack=$1 name=$2 round=$3 conns size pipeline kind
    read -r conns size pipeline kind <<<"$(case_shape "$name")"
    local tag=$stack.$name.$round
    local slog=$work/$tag.server.log clog=$work/$tag.client.log cjson=$work/$tag.client.json
    local target
    rm -f "$sock" "$ctl_sock"
    local server_mode=() generator=()
    if [[ $kind == sink ]]; then
        server_mode=(--sink-ack "$size")
        generator=(--generator sink)
    fi
    local client_opts=()
    if [[ $stack == native ]]; then
        client_opts=("${native_common[@]}" --ctl-socket none --dpdk-args "$dpdk_args" --vdev "$client_vdev"
            --host-ipv4-addr "$client_ip")
        target=$server_ip:$tcp_port
    else
        client_opts=(--network-stack posix --ctl-socket none)
        target=127.0.0.1:$(free_port)
    fi
    start_server() {
        case $stack in
            native)
                "${rt[@]}" taskset -c "$server_cpu" "$echo_bin" --smp 1 --cpuset "$server_cpu" "${native_common[@]}" \
                    --ctl-socket "$ctl_sock" \
                    --dpdk-args "$server_dpdk_args" --vdev "$server_vdev" \
                    --host-ipv4-addr "$server_ip" --address 0.0.0.0 --port "$tcp_port" --udp-port 0 \
                    "${server_mode[@]}" >"$slog" 2>&1 &
                ;;
            posix)
                "${rt[@]}" taskset -c "$server_cpu" "$echo_bin" --smp 1 --cpuset "$server_cpu" --network-stack posix \
                    --idle-policy sleep --ctl-socket none --address 127.0.0.1 --port "${target##*:}" --udp-port 0 \
                    "${server_mode[@]}" >"$slog" 2>&1 &
                ;;
        esac
        server_pid=$!
    }
    start_client() {
        "${rt[@]}" taskset -c "$client_cpu" "$loadgen_bin" --smp 1 --cpuset "$client_cpu" "${client_opts[@]}" \
            --server "$target" "${generator[@]}" --connections "$conns" --request-size "$size" --pipeline "$pipeline" \
            --warmup "$warmup" --duration "$duration" --timeout 10 --json >"$cjson" 2>"$clog" &
        client_pid=$!
    }
    if [[ $stack == native && $server_vdev == *role=client* ]]; then
        # The memif server (reef-loadgen) goes first: memif's handshake fails when the client
        # connects before the server's port has started, and a DPDK memif client does not try
        # again. reef-loadgen's ARP requests are retried until reef-echo is up, and its window
        # starts once its connections are.
        start_client
        wait_for "$clog" "DPDK port .* started" "$client_pid" "reef-loadgen ($stack)"
        start_server
        wait_for "$slog" "reef-echo listening" "$server_pid" "reef-echo ($stack)"
    else
        start_server
        wait_for "$slog" "reef-echo listening" "$server_pid" "reef-echo ($stack)"
        start_client
    fi
    # The CPU window is timed by a sampler at a higher real-time priority than the programs (a
    # normal process, like this shell, may not run for a long while next to two busy SCHED_RR
    # processes). It starts once the generator's connections are up (its warmup counts from there).
    local ready_pattern="connections set up" agent_sock=
    [[ $stack == native ]] && agent_sock=$ctl_sock
    if [[ -n $perf_dir && $stack == native ]]; then
        # The same window as the sampler's, at its priority (perf must drain its buffers next to
        # two busy real-time processes).
        local p who
        for who in server client; do
            [[ $who == server ]] && p=$server_pid || p=$client_pid
            (wait_for "$clog" "$ready_pattern" "$client_pid" "reef-loadgen" && sleep "$warmup" &&
                exec "${rt_sampler[@]}" perf record -q -e cpu-clock "${perf_args[@]}" -p "$p" -o "$perf_dir/$tag.$who.data" -- sleep "$duration") \
                >/dev/null 2>&1 &
        done
    fi
    local rc=0
    "${rt_sampler[@]}" /usr/bin/python3 "$work/sampler.py" "$clog" "$ready_pattern" "$server_pid" "$client_pid" \
        "$warmup" "$duration" "$ticks_per_s" "$agent_sock" >"$work/cpu.$tag.txt" || rc=$?
    if [[ $rc != 0 ]]; then
        echo "run_tcp_memif.sh: CPU sampling failed ($stack, $name, round $round)" >&2
        tail -n 40 "$clog" "$slog" >&2
        return 1
    fi
    wait "$client_pid" || rc=$?
    client_pid=
    stop_pid "$server_pid"
    server_pid=
    rm -f "$sock" "$ctl_sock"
    if [[ $rc != 0 ]]; then
        echo "run_tcp_memif.sh: reef-loadgen failed ($stack, $name, round $round, exit $rc):" >&2
        echo "--- reef-loadgen stdout:" >&2; cat "$cjson" >&2
        echo "--- reef-loadgen stderr (last 40 lines):" >&2; tail -n 40 "$clog" >&2
        echo "--- reef-echo log (last 40 lines):" >&2; tail -n 40 "$slog" >&2
        return 1
    fi
    /usr/bin/python3 - "$cjson" "$slog" "$stack" "$name" "$kind" "$round" "$work/cpu.$tag.txt" \
        >"$work/run.$tag.json" <<'PY'
import json, re, sys
cjson, slog, stack, name, kind = sys.argv[1:6]
rnd = int(sys.argv[6])
cpu = json.load(open(sys.argv[7]))
lines = [l for l in open(cjson) if l.startswith("{")]
if not lines:
    sys.exit(f"run_tcp_memif.sh: {stack} {name} round {rnd}: no JSON line from reef-loadgen")
lg = json.loads(lines[-1])
window = cpu["window_s"]
util = cpu["server_cpu_s"] / window
client_util = cpu["client_cpu_s"] / window
rps = lg["rps"]
# One way: what came back (bulk: the echoed bytes) or, for sink, what went out (8 bytes come back).
payload = lg["bytes_sent"] if kind == "sink" else lg["bytes_received"]
gbps = payload * 8 / lg["duration_s"] / 1e9 if lg["duration_s"] else 0.0
# Native: the busy fraction from the reactor counters; posix reef-echo sleeps when idle, so its CPU
# utilisation is its busy fraction.
busy = cpu.get("server_busy", util)
stext = open(slog, errors="replace").read()
mtu = re.search(r"mtu (\d+)", stext)
txdrop = re.search(r"reef-echo shard 0: .*tx-dropped (\d+)", stext)
run = {
    "stack": stack, "case": name, "kind": kind, "round": rnd, "rps": rps, "gbps": gbps,
    "requests": lg["requests"], "errors": lg["errors"], "connections_up": lg["connections_up"],
    "latency_us": lg["latency_us"], "server_cpu_util": util, "client_cpu_util": client_util, "window_s": window,
    "server_cpu_us_per_request": util * 1e6 / rps if rps else None,
    "server_cpu_s_per_gbit": util / gbps if gbps else None,
    "rps_per_server_core": rps / util if util else None,
    "gbps_per_server_core": gbps / util if util else None,
    "server_busy": busy,
    "server_busy_from": "reactor counters (control agent, shards.list)" if "server_busy" in cpu else "CPU utilisation",
    "server_reactor": {k: cpu[k] for k in ("server_reactor_window_s", "server_idle_s", "server_idle_poll_s") if k in cpu},
    "rps_per_busy_server_core": rps / busy if busy else None,
    "gbps_per_busy_server_core": gbps / busy if busy else None,
    "device_mtu": int(mtu.group(1)) if mtu else None,
    "server_device_tx_dropped": int(txdrop.group(1)) if txdrop else None,
}
print(json.dumps(run))
PY
    local s
    s=$(cat "$work/run.$tag.json")
    echo "  $stack $name round $round: $s" >&2
}

echo "TCP over memif benchmark: cases ${cases[*]}; $rounds rounds of ${duration} s after ${warmup} s warmup;" \
    "reef-echo on CPU $server_cpu, reef-loadgen on CPU $client_cpu; $huge_note; $memif_note;" \
    "$([[ $rt_used == 1 ]] && echo "SCHED_RR 1" || echo "normal priority")" >&2
for ((r = 1; r <= rounds; r++)); do
    for c in "${cases[@]}"; do
        if ((r % 2)); then
            run_one native "$c" "$r"
            run_one posix "$c" "$r"
        else
            run_one posix "$c" "$r"
            run_one native "$c" "$r"
        fi
    done
done

cat "$work"/run.*.json >"$work/runs.jsonl"
/usr/bin/python3 - "$work/runs.jsonl" "$out/tcp_memif.json" "$out/tcp_memif.txt" "$duration" "$warmup" \
    "$server_cpu" "$client_cpu" "$rt_used" "$huge_note" "$build" "$bulk_size" "$bulk_pipeline" "${cases[*]}" \
    "$dpdk_args" "$memif_note" "$sink_pipeline" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dur, warm, scpu, ccpu, rt, huge_note, build = (float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7],
                                               sys.argv[8] == "1", sys.argv[9], sys.argv[10])
bulk_size, bulk_pipe, cases = int(sys.argv[11]), int(sys.argv[12]), sys.argv[13].split()
dpdk_args = sys.argv[14]
memif_note = sys.argv[15]
sink_pipe = int(sys.argv[16])
shapes = {"rr64": (64, 64, 1), "rr1k": (64, 1024, 1), "bulk1": (1, bulk_size, bulk_pipe), "bulk8": (8, bulk_size, bulk_pipe),
          "sink1": (1, bulk_size, sink_pipe), "sink8": (8, bulk_size, sink_pipe)}
rr_target, bulk_target = 3.0, 20.0
mtus = sorted({r["device_mtu"] for r in runs if r["stack"] == "native" and r["device_mtu"]})

def med(rs, k):
    v = [r[k] for r in rs if r[k] is not None]
    return statistics.median(v) if v else None

summary = {}
for c in cases:
    kind = "rr" if c.startswith("rr") else "bulk"  # sink is judged as bulk: Gbit/s one way
    s = {"kind": kind, "connections": shapes[c][0], "request_size": shapes[c][1], "pipeline": shapes[c][2]}
    for stack in ("native", "posix"):
        rs = [r for r in runs if r["case"] == c and r["stack"] == stack]
        s[stack] = {k: med(rs, k) for k in ("rps", "gbps", "server_cpu_util", "client_cpu_util",
                                            "server_cpu_us_per_request", "server_cpu_s_per_gbit",
                                            "rps_per_server_core", "gbps_per_server_core", "server_busy",
                                            "rps_per_busy_server_core", "gbps_per_busy_server_core")}
        s[stack]["p50_us"] = statistics.median(r["latency_us"]["p50"] for r in rs)
        s[stack]["p99_us"] = statistics.median(r["latency_us"]["p99"] for r in rs)
    key = "rps_per_server_core" if kind == "rr" else "gbps_per_server_core"
    by_round = {}
    for r in runs:
        if r["case"] == c and r[key]:
            by_round.setdefault(r["round"], {})[r["stack"]] = r[key]
    s["per_round_ratios_per_core"] = [v["native"] / v["posix"] for _, v in sorted(by_round.items())
                                      if "native" in v and "posix" in v]
    s["median_round_ratio_per_core"] = (statistics.median(s["per_round_ratios_per_core"])
                                        if s["per_round_ratios_per_core"] else None)
    n, p = s["native"][key], s["posix"][key]
    s["ratio_of_medians_per_core"] = n / p if n and p else None
    bkey = "rps_per_busy_server_core" if kind == "rr" else "gbps_per_busy_server_core"
    by_round_busy = {}
    for r in runs:
        if r["case"] == c and r[bkey]:
            by_round_busy.setdefault(r["round"], {})[r["stack"]] = r[bkey]
    s["per_round_ratios_per_busy_core"] = [v["native"] / v["posix"] for _, v in sorted(by_round_busy.items())
                                           if "native" in v and "posix" in v]
    s["median_round_ratio_per_busy_core"] = (statistics.median(s["per_round_ratios_per_busy_core"])
                                             if s["per_round_ratios_per_busy_core"] else None)
    n, p = s["native"][bkey], s["posix"][bkey]
    s["ratio_of_medians_per_busy_core"] = n / p if n and p else None
    if kind == "rr":
        s["target"] = f"native >= {rr_target:g}x posix requests/s per server core"
        s["target_met"] = s["median_round_ratio_per_core"] is not None and s["median_round_ratio_per_core"] >= rr_target
        s["target_busy"] = f"native >= {rr_target:g}x posix requests/s per busy server core"
        s["target_busy_met"] = (s["median_round_ratio_per_busy_core"] is not None
                                and s["median_round_ratio_per_busy_core"] >= rr_target)
    else:
        s["target"] = f"native >= {bulk_target:g} Gbit/s on one server core"
        s["target_met"] = s["native"]["gbps"] is not None and s["native"]["gbps"] >= bulk_target
        s["target_busy"] = f"native >= {bulk_target:g} Gbit/s per busy server core"
        s["target_busy_met"] = n is not None and n >= bulk_target
    summary[c] = s

result = {
    "config": {"duration_s": dur, "warmup_s": warm, "server_cpu": scpu, "client_cpu": ccpu, "rounds": len(runs) // (2 * len(cases)),
               "build": build, "realtime_priority": rt, "memory": huge_note, "native_device_mtu": mtus, "dpdk_args": dpdk_args,
               "memif": memif_note,
               "native": "reef-echo/reef-loadgen --network-stack native --dpdk-pmd over net_memif (198.18.0.1 <- 198.18.0.2)",
               "posix": "reef-echo/reef-loadgen --network-stack posix over 127.0.0.1 (loopback)"},
    "runs": runs, "cases": summary,
}
json.dump(result, open(sys.argv[2], "w"), indent=1)

def f(x, fmt):
    return "-" if x is None else format(x, fmt)

def pct(x):
    return None if x is None else 100 * x

lines = [
    "Native TCP over net_memif (reef-echo <- reef-loadgen, both DPDK, 1 shard each) against the posix stack on",
    f"loopback (same programs); reef-echo on CPU {scpu}, reef-loadgen on CPU {ccpu}; medians of "
    f"{result['config']['rounds']} interleaved rounds of {dur:g} s after {warm:g} s warmup; build {build};",
    f"{huge_note}; --dpdk-args '{dpdk_args}'; native device MTU {', '.join(map(str, mtus)) or '?'}; "
    + ("processes at SCHED_RR priority 1" if rt else "processes at normal priority") + ";",
    memif_note + ".",
    "",
    "Request/response (pipeline 1; every answer checked byte for byte):",
    "",
    "| case | stack | requests/s | server CPU | server CPU us/request | requests/s per server core | server busy "
    "| requests/s per busy server core | client CPU | p50 us | p99 us |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for c in cases:
    s = summary[c]
    if s["kind"] != "rr":
        continue
    label = f"{s['request_size']} B, {s['connections']} conns"
    for stack in ("native", "posix"):
        m = s[stack]
        lines.append(f"| {label} | {stack} | {f(m['rps'], ',.0f')} | {f(100 * m['server_cpu_util'], '.0f')}% "
                     f"| {f(m['server_cpu_us_per_request'], '.3f')} | {f(m['rps_per_server_core'], ',.0f')} "
                     f"| {f(pct(m['server_busy']), '.0f')}% | {f(m['rps_per_busy_server_core'], ',.0f')} "
                     f"| {f(100 * m['client_cpu_util'], '.0f')}% | {f(m['p50_us'], '.1f')} | {f(m['p99_us'], '.1f')} |")
lines += [
    "",
    f"Bulk ({bulk_size}-byte requests, pipeline {bulk_pipe}, sink {sink_pipe}; Gbit/s of payload one way. bulk: the echo carries the",
    "same bytes back, so the link moves them both ways, every byte checked; sink: one way, reef-echo --sink-ack",
    "answers each request with a byte count, which is checked, the bytes are covered by the TCP checksum):",
    "",
    "| case | stack | Gbit/s | server CPU | server CPU s per Gbit | Gbit/s per server core | server busy "
    "| Gbit/s per busy server core | client CPU |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
]
for c in cases:
    s = summary[c]
    if s["kind"] != "bulk":
        continue
    label = ("sink, " if c.startswith("sink") else "echo, ") + f"{s['connections']} conn" + ("s" if s["connections"] > 1 else "")
    for stack in ("native", "posix"):
        m = s[stack]
        lines.append(f"| {label} | {stack} | {f(m['gbps'], '.2f')} | {f(100 * m['server_cpu_util'], '.0f')}% "
                     f"| {f(m['server_cpu_s_per_gbit'], '.4f')} | {f(m['gbps_per_server_core'], '.2f')} "
                     f"| {f(pct(m['server_busy']), '.0f')}% | {f(m['gbps_per_busy_server_core'], '.2f')} "
                     f"| {f(100 * m['client_cpu_util'], '.0f')}% |")
lines += ["",
          "server busy: native reef-echo polls the NIC, so its CPU stays near 100% whatever the load; its busy fraction is",
          "1 - (time asleep + time polling without finding work) / wall, from its reactor counters (control agent,",
          "shards.list) over the CPU window. On the posix stack it sleeps when idle: busy is its CPU utilisation.",
          "", "Native / posix per server core, and targets:"]
for c in cases:
    s = summary[c]
    rounds_txt = ", ".join(f"{x:.2f}" for x in s["per_round_ratios_per_core"])
    ratio = f"median of per-round ratios {f(s['median_round_ratio_per_core'], '.2f')}x (rounds: {rounds_txt}), " \
            f"ratio of medians {f(s['ratio_of_medians_per_core'], '.2f')}x"
    if s["kind"] == "rr":
        verdict = f"target >= {rr_target:g}x: {'met' if s['target_met'] else 'MISSED'}"
    else:
        verdict = (f"native {f(s['native']['gbps'], '.2f')} Gbit/s, target >= {bulk_target:g} Gbit/s on one server core: "
                   f"{'met' if s['target_met'] else 'MISSED'}")
    lines.append(f"- {c}: {ratio}; {verdict}")
lines += ["", "Native / posix per busy server core, and targets judged on it:"]
for c in cases:
    s = summary[c]
    rounds_txt = ", ".join(f"{x:.2f}" for x in s["per_round_ratios_per_busy_core"])
    ratio = f"median of per-round ratios {f(s['median_round_ratio_per_busy_core'], '.2f')}x (rounds: {rounds_txt}), " \
            f"ratio of medians {f(s['ratio_of_medians_per_busy_core'], '.2f')}x"
    if s["kind"] == "rr":
        verdict = f"target >= {rr_target:g}x: {'met' if s['target_busy_met'] else 'MISSED'}"
    else:
        verdict = (f"native {f(s['native']['gbps_per_busy_server_core'], '.2f')} Gbit/s per busy server core "
                   f"(busy {f(pct(s['native']['server_busy']), '.0f')}%), target >= {bulk_target:g}: "
                   f"{'met' if s['target_busy_met'] else 'MISSED'}")
    lines.append(f"- {c} (per busy server core): {ratio}; {verdict}")
text = "\n".join(lines) + "\n"
open(sys.argv[3], "w").write(text)
print(text, end="")
PY
