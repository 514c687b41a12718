#!/usr/bin/env bash
# reef-memcached on the native stack and its UDP fast path against stock memcached (Debian's
# /usr/bin/memcached, the baseline), same machine, same run (issue 8, benchmarks 2 and 3 and the
# extra figures). Four parts (MCN_BENCH_PARTS, default "tcp udp callgrind memory"):
#
# tcp  Native stack over DPDK net_memif: reef-memcached --smp 1 (CPU MCN_BENCH_SERVER_CPU, 0) with
#      --network-stack native --dpdk-pmd, the memif server, 198.18.0.1/15; load from reef-loadgen
#      (a reef::app, same native/DPDK options, the memif client, 198.18.0.2) on CPU
#      MCN_BENCH_CLIENT_CPU (1): --generator memcached over TCP, 90% gets, 32-byte keys, 100-byte
#      values (every answer checked), after a set phase (see udp). Baseline: memcached -t 1 under taskset on the server CPU, on
#      127.0.0.1, driven by the same reef-loadgen on the posix stack with the same settings.
#      Figure: ops/s per server core = ops/s / server CPU utilisation (utime + stime of the whole
#      server process over a window inside the load generator's measured window). Target: reef >=
#      4x stock, judged on the median of the per-round ratios.
#      reef on the native stack polls the NIC, so its CPU stays near 100% whatever its load. Its
#      busy fraction over the same window comes from its reactor counters, read from its control
#      agent (--ctl-socket in the work directory, JSON-RPC shards.list at the window's start and
#      end): busy = 1 - (delta idle_s + delta idle_poll_s) / delta uptime_s (asleep and polling
#      without finding work are both idle). For stock memcached busy is its CPU utilisation (it
#      sleeps when idle). Second figure: ops/s per busy server core = ops/s / busy, with the same
#      target judged on it as well (reported apart).
# udp  UDP fast path over memif: reef-memcached --udp-fastpath -U 11211 (gets answered from the
#      DPDK packet hook), GET load from reef-loadgen --protocol udp --memcached-get-ratio 1, after
#      a TCP set phase (get ratio 0, MCN_BENCH_PREFILL_FACTOR x keys sets) so the gets mostly hit.
#      Baseline: memcached -t 1 -U on loopback, same set phase and GET load, reef-loadgen posix.
#      Figure: GET ops/s per server core, and per busy server core (as tcp). Target: reef >= 10x
#      stock (median of per-round ratios), judged on both figures.
#      UDP answers that do not come within MCN_BENCH_UDP_TIMEOUT s count as lost (reported; a
#      wrong answer fails the run). The hit ratio of each run comes from the server's counters.
# callgrind
#      valgrind --tool=callgrind instructions (Ir: user space only, every thread) per request of
#      both servers on the posix stack over loopback: the server under callgrind, a set phase, then
#      MCN_BENCH_CG_REQUESTS requests from reef-loadgen (same generator settings); once more with
#      the set phase and no requests; per request = (Ir(N) - Ir(0)) / N, start-up = Ir(0). reef runs
#      --idle-policy sleep there (polling while idle would count instructions that are not work).
#      The reef allocator (-Dallocator=reef, the release build's) reserves 192 GiB of address space
#      or more, which valgrind cannot give its client ("Out of memory allocating bitmask" at
#      start). When BUILD uses it, this part builds reef-memcached from the same sources with the
#      same build type and -Dallocator=system in BUILD-sysalloc (meson + ninja, before any
#      measurement; a no-op when up to date) and measures that binary; MCN_BENCH_CG_REEF names
#      another one. Stock memcached runs as user nobody with a soft open-file limit of 1024 (see
#      cg_one). No target of issue 8 (stock's figure measured earlier: about 3,150 per request).
# memory
#      RSS (VmRSS, /proc/<pid>/status) of each server (posix stack, -m MCN_BENCH_MEMORY_MB, one
#      shard / thread) holding the same items: MCN_BENCH_FILL_MB MiB of value bytes (default 1024)
#      in values of MCN_BENCH_FILL_VALUE bytes (100) under 32-byte keys, written by a Python client
#      (pipelined sets with noreply); then the server's stats must show every item and no
#      eviction, and a sample of 2000 keys must read back byte for byte. Target: reef <= 1.1x
#      stock's RSS.
#
# Isolation: with MCN_BENCH_RT=1 (the default, when chrt works) servers and load generators run
# SCHED_RR priority 1 (see run_memif_echo.sh), the CPU sampler at 2. The tcp and udp rounds are
# interleaved (reef first in odd rounds, stock first in even ones); medians over rounds.
# DPDK: both DPDK processes run --in-memory with their own --file-prefix (reef-<pid>, given by
# dataplane/eal.cc). Hugepages: 2 MiB pages are reserved (MCN_BENCH_HUGEPAGES, default 1024, only if
# fewer are reserved) and a private hugetlbfs is mounted for the run, both restored at exit; without
# root or pages the DPDK processes run --no-huge and the results say so.
#
# Writes $BENCH_RESULTS_DIR/memcached_native.txt (tables, targets) and memcached_native.json
# (every run, medians, ratios). A missed target does not fail the run; a broken run does.
# Usage: tests/bench/run_memcached_native.sh [BUILD_DIR]   (a release build; default build-release)
# Environment: MCN_BENCH_ROUNDS (3), MCN_BENCH_DURATION (8), MCN_BENCH_WARMUP (2), MCN_BENCH_RT (1),
#   MCN_BENCH_PARTS ("tcp udp callgrind memory"), MCN_BENCH_SERVER_CPU (0), MCN_BENCH_CLIENT_CPU (1),
#   MCN_BENCH_KEYS (100000), MCN_BENCH_CONNECTIONS (32), MCN_BENCH_PIPELINE (1),
#   MCN_BENCH_UDP_CONNECTIONS (16), MCN_BENCH_UDP_PIPELINE (4), MCN_BENCH_UDP_TIMEOUT (0.2),
#   MCN_BENCH_PREFILL_FACTOR (3), MCN_BENCH_REEF_IDLE (reef's --idle-policy on the native stack;
#   default: the runtime's adaptive), MCN_BENCH_HUGEPAGES (1024), MCN_BENCH_CG_REQUESTS (50000),
#   MCN_BENCH_CG_KEYS (10000), MCN_BENCH_CG_REEF, MCN_BENCH_FILL_MB (1024), MCN_BENCH_FILL_VALUE
#   (100), MCN_BENCH_MEMORY_MB (4096).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-${BUILD_DIR:-build-release}}
out=${BENCH_RESULTS_DIR:-$build/bench-results}
mkdir -p "$out"

rounds=${MCN_BENCH_ROUNDS:-3}
duration=${MCN_BENCH_DURATION:-8}
warmup=${MCN_BENCH_WARMUP:-2}
read -r -a parts <<<"${MCN_BENCH_PARTS:-tcp udp callgrind memory}"
server_cpu=${MCN_BENCH_SERVER_CPU:-0}
client_cpu=${MCN_BENCH_CLIENT_CPU:-1}
keys=${MCN_BENCH_KEYS:-100000}
conns=${MCN_BENCH_CONNECTIONS:-32}
pipeline=${MCN_BENCH_PIPELINE:-1}
udp_conns=${MCN_BENCH_UDP_CONNECTIONS:-16}
udp_pipeline=${MCN_BENCH_UDP_PIPELINE:-4}
udp_timeout=${MCN_BENCH_UDP_TIMEOUT:-0.2}
prefill_factor=${MCN_BENCH_PREFILL_FACTOR:-3}
reef_idle=${MCN_BENCH_REEF_IDLE:-}
want_pages=${MCN_BENCH_HUGEPAGES:-1024}
cg_requests=${MCN_BENCH_CG_REQUESTS:-50000}
cg_keys=${MCN_BENCH_CG_KEYS:-10000}
fill_mb=${MCN_BENCH_FILL_MB:-1024}
fill_value=${MCN_BENCH_FILL_VALUE:-100}
memory_mb=${MCN_BENCH_MEMORY_MB:-4096}
key_size=32
value_size=100
server_ip=198.18.0.1
client_ip=198.18.0.2
server_mac=02:52:4d:43:00:01
client_mac=02:52:4d:43:00:02
mc_port=11211

me=run_memcached_native.sh
reef_bin=$build/apps/memcached/reef-memcached
loadgen_bin=$build/apps/loadgen/reef-loadgen
stock_bin=${MEMCACHED:-/usr/bin/memcached}
for b in "$reef_bin" "$loadgen_bin" "$stock_bin"; do
    [[ -x $b ]] || { echo "$me: $b is missing (build $build first; stock memcached: apt-get install memcached)" >&2; exit 1; }
done
has_part() {
    local p
    for p in "${parts[@]}"; do [[ $p == "$1" ]] && return 0; done
    return 1
}
if has_part tcp || has_part udp; then
    [[ $("$reef_bin" --help 2>/dev/null) == *--dpdk-pmd* ]] ||
        { echo "$me: $reef_bin has no DPDK options (build with -Ddpdk=enabled)" >&2; exit 1; }
    [[ $("$loadgen_bin" --help 2>/dev/null) == *--host-ipv4-addr* ]] ||
        { echo "$me: $loadgen_bin has no native stack options (it must be a reef::app)" >&2; exit 1; }
fi
if has_part callgrind; then
    command -v valgrind >/dev/null || { echo "$me: valgrind is not installed" >&2; exit 1; }
fi

rt=()
rt_sampler=()
rt_used=0
if [[ ${MCN_BENCH_RT:-1} == 1 ]] && chrt -r 1 true 2>/dev/null; then
    rt=(chrt -r 1)
    rt_sampler=(chrt -r 2)
    rt_used=1
fi
run_as=()
[[ $(id -u) == 0 ]] && run_as=(-u nobody)  # memcached refuses to run as root without -u

ticks_per_s=$(getconf CLK_TCK)
nr_file=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
work=$(mktemp -d /tmp/reef-mcnbench.XXXXXX)
chmod 755 "$work"
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
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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

huge_opts=(--no-huge)
huge_note="no hugepages (--no-huge)"
if has_part tcp || has_part udp; then
    if [[ $(id -u) == 0 && -w $nr_file ]]; then
        old_pages=$(<"$nr_file")
        if ((old_pages < want_pages)); then
            echo "$want_pages" >"$nr_file" 2>/dev/null || true
        else
            old_pages=  # nothing to restore
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
fi

free_port() {
    /usr/bin/python3 - <<'PY'
import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break
PY
}

# wait_for LOG PATTERN PID WHAT: until PATTERN is in LOG (the process must stay alive).
wait_for() {
    local log=$1 pattern=$2 pid=$3 what=$4 i
    for ((i = 0; i < 600; i++)); do
        grep -qs -- "$pattern" "$log" && return 0
        kill -0 "$pid" 2>/dev/null || { echo "$me: $what exited:" >&2; tail -n 40 "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "$me: $what: '$pattern' not seen after 60 s:" >&2
    tail -n 40 "$log" >&2
    return 1
}

# wait_port PORT PID WHAT: until a memcached at 127.0.0.1:PORT answers "version".
wait_port() {
    local port=$1 pid=$2 what=$3 i
    for ((i = 0; i < 600; i++)); do
        if /usr/bin/python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),1); s.settimeout(5); s.sendall(b'version\r\n'); sys.exit(0 if s.recv(100).startswith(b'VERSION') else 1)" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { echo "$me: $what exited" >&2; return 1; }
        sleep 0.1
    done
    echo "$me: $what not ready after 60 s" >&2
    return 1
}

# mc_stats PORT: memcached's "stats" at 127.0.0.1:PORT as one JSON object.
mc_stats() {
    /usr/bin/python3 - "$1" <<'PY'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.settimeout(10)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    b = s.recv(65536)
    if not b:
        break
    buf += b
st = {}
for line in buf.decode(errors="replace").split("\r\n"):
    p = line.split(" ")
    if len(p) == 3 and p[0] == "STAT":
        st[p[1]] = int(p[2]) if p[2].isdigit() else p[2]
print(json.dumps(st))
PY
}

# The CPU sampler (see run_tcp_memif.sh): waits for READY_PATTERN in the client's log (if any),
# then WARMUP + 0.25 s, then reads the server's (and the client's) utime + stime over a window that
# ends before the client's measured window does. With CTL_SOCKET (a reef server's control agent)
# it also reads the server's reactor counters at the window's ends and prints its busy fraction.
cat >"$work/sampler.py" <<'PY'
import json, os, re, socket, sys, time
log, pattern, spid, cpid = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
warm, dur, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
ctl = sys.argv[8] if len(sys.argv) > 8 else ""

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime

def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False

if pattern:
    rx = re.compile(pattern)
    deadline = time.monotonic() + 60
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

def resolve(pid):
    # The client runs under timeout(1), which forks it: measure timeout's child.
    try:
        if open(f"/proc/{pid}/comm").read().strip() == "timeout":
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if kids:
                return int(kids[0])
    except OSError:
        pass
    return pid

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

cpid = resolve(cpid)
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

native_common=(--network-stack native --dpdk-pmd "${huge_opts[@]}" --netmask-ipv4-addr 255.254.0.0
    --gw-ipv4-addr "")
# reef's control agent on the native stack: the sampler reads its reactor counters there.
ctl_sock=$work/ctl.sock
gen_common=(--generator memcached --memcached-keys "$keys" --memcached-key-size "$key_size" --request-size "$value_size")

# start_server KIND STACK PORT LOG [EXTRA...]: starts reef-memcached (KIND reef) or memcached
# (stock), sets server_pid and waits until it serves. STACK native: reef on memif (PORT unused).
start_server() {
    local kind=$1 stack=$2 port=$3 log=$4
    shift 4
    case $kind.$stack in
        reef.native)
            local idle=()
            [[ -n $reef_idle ]] && idle=(--idle-policy "$reef_idle")
            rm -f "$sock" "$ctl_sock"
            "${rt[@]}" taskset -c "$server_cpu" "$reef_bin" --smp 1 --cpuset "$server_cpu" "${native_common[@]}" "${idle[@]}" \
                --ctl-socket "$ctl_sock" \
                --vdev "net_memif0,role=server,socket=$sock,socket-abstract=no,mac=$server_mac" \
                --host-ipv4-addr "$server_ip" -p "$mc_port" -m 1024 "$@" >"$log" 2>&1 &
            server_pid=$!
            wait_for "$log" "reef-memcached listening" "$server_pid" "reef-memcached (native)"
            ;;
        stock.posix)
            "${rt[@]}" taskset -c "$server_cpu" "$stock_bin" "${run_as[@]}" -t 1 -l 127.0.0.1 -p "$port" -m 1024 "$@" \
                >"$log" 2>&1 &
            server_pid=$!
            wait_port "$port" "$server_pid" "memcached"
            ;;
        *) echo "$me: start_server $kind.$stack?" >&2; return 1 ;;
    esac
}

# loadgen STACK TARGET OUT_JSON ERR_LOG [ARGS...]: runs reef-loadgen to completion in the
# foreground (prefill phases); prints nothing; fails when it fails.
loadgen() {
    local stack=$1 target=$2 oj=$3 el=$4
    shift 4
    local opts=(--network-stack posix --ctl-socket none)
    [[ $stack == native ]] && opts=("${native_common[@]}" --ctl-socket none
        --vdev "net_memif0,role=client,socket=$sock,socket-abstract=no,mac=$client_mac" --host-ipv4-addr "$client_ip")
    local rc=0
    "${rt[@]}" taskset -c "$client_cpu" timeout -k 5 600 "$loadgen_bin" --smp 1 --cpuset "$client_cpu" "${opts[@]}" \
        --server "$target" "${gen_common[@]}" --json "$@" >"$oj" 2>"$el" || rc=$?
    if [[ $rc != 0 ]]; then
        echo "$me: reef-loadgen ($stack, $*) failed with exit $rc:" >&2
        cat "$oj" >&2
        grep -v '^  #' "$el" | tail -n 20 >&2
        return 1
    fi
}

# run_one PART STACK ROUND: one measured run (PART tcp or udp; STACK native = reef over memif,
# posix = stock on loopback); writes $work/run.PART.STACK.ROUND.json.
run_one() {
    local part=$1 stack=$2 round=$3
    local tag=$part.$stack.$round kind=stock port target
    local slog=$work/$tag.server.log clog=$work/$tag.client.log cjson=$work/$tag.client.json
    [[ $stack == native ]] && kind=reef
    port=$(free_port)
    local extra=()
    if [[ $part == udp ]]; then
        if [[ $kind == reef ]]; then extra=(-U "$mc_port" --udp-fastpath); else extra=(-U "$port"); fi
    fi
    start_server "$kind" "$stack" "$port" "$slog" "${extra[@]}"
    if [[ $stack == native ]]; then target=$server_ip:$mc_port; else target=127.0.0.1:$port; fi
    # The set phase, over TCP, with a separate reef-loadgen: the gets that follow then mostly hit,
    # from the start and on both servers alike.
    loadgen "$stack" "$target" "$work/$tag.prefill.json" "$work/$tag.prefill.log" --protocol tcp \
        --connections 16 --pipeline 16 --memcached-get-ratio 0 --requests $((keys * prefill_factor)) --timeout 10
    local load=()
    if [[ $part == tcp ]]; then
        load=(--protocol tcp --connections "$conns" --pipeline "$pipeline" --memcached-get-ratio 0.9 --timeout 10)
    else
        load=(--protocol udp --connections "$udp_conns" --pipeline "$udp_pipeline" --memcached-get-ratio 1
            --timeout "$udp_timeout")
    fi
    local copts=(--network-stack posix --ctl-socket none)
    [[ $stack == native ]] && copts=("${native_common[@]}" --ctl-socket none
        --vdev "net_memif0,role=client,socket=$sock,socket-abstract=no,mac=$client_mac" --host-ipv4-addr "$client_ip")
    "${rt[@]}" taskset -c "$client_cpu" timeout -k 5 $((warmup + duration + 120)) "$loadgen_bin" --smp 1 \
        --cpuset "$client_cpu" "${copts[@]}" --server "$target" "${gen_common[@]}" "${load[@]}" \
        --warmup "$warmup" --duration "$duration" --json >"$cjson" 2>"$clog" &
    client_pid=$!
    # The generator's warmup counts from when its stack is up (for DPDK: once the port started).
    local ready_pattern= agent_sock=
    [[ $stack == native ]] && ready_pattern="DPDK port .* started" && agent_sock=$ctl_sock
    local rc=0
    "${rt_sampler[@]}" /usr/bin/python3 "$work/sampler.py" "$clog" "$ready_pattern" "$server_pid" "$client_pid" \
        "$warmup" "$duration" "$ticks_per_s" "$agent_sock" >"$work/cpu.$tag.txt" || rc=$?
    if [[ $rc != 0 ]]; then
        echo "$me: CPU sampling failed ($tag)" >&2
        grep -v '^  #' "$clog" | tail -n 40 >&2
        tail -n 40 "$slog" >&2
        return 1
    fi
    wait "$client_pid" || rc=$?
    client_pid=
    local stats_file=$work/$tag.stats.json
    echo '{}' >"$stats_file"
    [[ $kind == stock ]] && { mc_stats "$port" >"$stats_file" || echo '{}' >"$stats_file"; }
    stop_pid "$server_pid"
    server_pid=
    rm -f "$sock" "$ctl_sock"
    # Exit 1 with only UDP losses (timeouts) is a measured run; anything else is broken.
    /usr/bin/python3 - "$cjson" "$slog" "$clog" "$part" "$stack" "$round" "$work/cpu.$tag.txt" "$stats_file" "$rc" \
        >"$work/run.$tag.json" <<'PY'
import json, re, sys
cjson, slog, clog, part, stack = sys.argv[1:6]
rnd, rc = int(sys.argv[6]), int(sys.argv[9])
cpu = json.load(open(sys.argv[7]))
stats = json.load(open(sys.argv[8]))
lines = [l for l in open(cjson) if l.startswith("{")]
def broken(why):
    err = "".join(l for l in open(clog, errors="replace") if not l.startswith("  #"))[-3000:]
    srv = open(slog, errors="replace").read()[-3000:]
    sys.exit(f"run_memcached_native.sh: {part} {stack} round {rnd}: {why}\n--- reef-loadgen stderr:\n{err}\n--- server log:\n{srv}")
if not lines:
    broken(f"no JSON line from reef-loadgen (exit {rc})")
lg = json.loads(lines[-1])
if lg["mismatches"] or lg["connection_errors"] or not lg["requests"] or (rc != 0 and not (part == "udp" and lg["timeouts"])):
    broken(f"reef-loadgen exit {rc}: {lg['requests']} requests, {lg['mismatches']} wrong answers, "
           f"{lg['connection_errors']} connection errors, {lg['timeouts']} timeouts")
window = cpu["window_s"]
util = cpu["server_cpu_s"] / window
rps = lg["rps"]
# reef's busy fraction from its reactor counters; stock memcached sleeps when idle, so its CPU
# utilisation is its busy fraction.
busy = cpu.get("server_busy", util)
stext = open(slog, errors="replace").read()
gets = hits = fast = None
m = re.search(r"reef-memcached stopped: \d+ connections, (\d+) gets \((\d+) hits\)", stext)
if m:
    gets, hits = int(m.group(1)), int(m.group(2))
m = re.search(r"fast path: (\d+) requests answered", stext)
if m:
    fast = int(m.group(1))
if stats:
    gets, hits = stats.get("cmd_get"), stats.get("get_hits")
print(json.dumps({
    "part": part, "stack": stack, "server": "reef-memcached" if stack == "native" else "memcached", "round": rnd,
    "ops_per_s": rps, "requests": lg["requests"], "timeouts": lg["timeouts"],
    "loss": lg["timeouts"] / (lg["requests"] + lg["timeouts"]) if lg["requests"] + lg["timeouts"] else 0.0,
    "server_cpu_util": util, "client_cpu_util": cpu["client_cpu_s"] / window, "window_s": window,
    "ops_per_s_per_server_core": rps / util if util else None,
    "server_busy": busy,
    "server_busy_from": "reactor counters (control agent, shards.list)" if "server_busy" in cpu else "CPU utilisation",
    "server_reactor": {k: cpu[k] for k in ("server_reactor_window_s", "server_idle_s", "server_idle_poll_s") if k in cpu},
    "ops_per_s_per_busy_server_core": rps / busy if busy else None,
    "server_cpu_us_per_op": util * 1e6 / rps if rps else None,
    "latency_us": lg["latency_us"], "server_gets": gets, "server_get_hits": hits,
    "hit_ratio": hits / gets if gets else None, "fast_path_answered": fast,
}))
PY
    echo "  $tag: $(cat "$work/run.$tag.json")" >&2
}

# ---- part 3: callgrind --------------------------------------------------------------------------
cg_reef=${MCN_BENCH_CG_REEF:-}
cg_note=
if has_part callgrind && [[ -z $cg_reef ]]; then
    cg_reef=$reef_bin
    # The reef allocator cannot run under valgrind: build the same sources with the system
    # allocator in a sibling tree (same build type; ninja makes it a no-op when it is up to date).
    # Done before any measurement, so the compiler does not share the machine with one.
    allocator=$(/usr/bin/python3 -c 'import json, sys
o = {x["name"]: x["value"] for x in json.load(open(sys.argv[1]))}
print(o.get("allocator", "?"), o.get("buildtype", "release"), o.get("b_ndebug", "if-release"))' \
        "$build/meson-info/intro-buildoptions.json" 2>/dev/null || echo "? release if-release")
    read -r alloc btype ndebug <<<"$allocator"
    if [[ $alloc == reef ]]; then
        cg_dir=${build%/}-sysalloc
        echo "callgrind: $build uses the reef allocator, which valgrind cannot run (it reserves 192 GiB or more of" \
            "address space); building reef-memcached with -Dallocator=system in $cg_dir" >&2
        if { [[ -f $cg_dir/build.ninja ]] || meson setup "$cg_dir" -Dbuildtype="$btype" -Db_ndebug="$ndebug" \
            -Dallocator=system -Dtests=false -Dbenchmarks=false -Dwerror=true >"$work/cg-setup.log" 2>&1; } &&
            ninja -C "$cg_dir" apps/memcached/reef-memcached >"$work/cg-build.log" 2>&1; then
            cg_reef=$cg_dir/apps/memcached/reef-memcached
            cg_note="reef-memcached for callgrind: $cg_reef (same sources and build type, -Dallocator=system)"
        else
            echo "$me: building $cg_dir failed; trying $reef_bin under valgrind:" >&2
            tail -n 20 "$work/cg-setup.log" "$work/cg-build.log" 2>/dev/null >&2 || true
        fi
    fi
fi
# cg_one KIND N: the server under callgrind, a set phase, N requests (none if 0), stop; writes the
# total Ir to $work/cg.KIND.N.ir. (memcached drops to user nobody: the output directory is open.)
mkdir -p "$work/cg"
chmod 1777 "$work/cg"
cg_one() {
    local kind=$1 n=$2 port tag=cg.$1.$2
    local log=$work/$tag.server.log
    port=$(free_port)
    case $kind in
        reef)
            valgrind --tool=callgrind --callgrind-out-file="$work/cg/$tag.out" "$cg_reef" --smp 1 --cpuset "$server_cpu" \
                --idle-policy sleep --ctl-socket none -l 127.0.0.1 -p "$port" -m 1024 >"$log" 2>&1 &
            ;;
        stock)
            # memcached sets its open-file limit (soft and hard) to -c; valgrind allows that only when
            # the hard limit equals its own, the soft limit less the descriptors it keeps: with a
            # soft limit of 1024 that is memcached's default -c. As root, memcached would switch to
            # user nobody and could not write callgrind's output: it runs as nobody from the start.
            local drop=()
            [[ $(id -u) == 0 ]] && drop=(setpriv --reuid nobody --regid nogroup --clear-groups)
            (
                ulimit -Sn 1024
                exec "${drop[@]}" valgrind --tool=callgrind --callgrind-out-file="$work/cg/$tag.out" "$stock_bin" \
                    -t 1 -c 1024 -l 127.0.0.1 -p "$port" -m 1024
            ) >"$log" 2>&1 &
            ;;
    esac
    server_pid=$!
    if ! wait_port "$port" "$server_pid" "$kind under callgrind"; then
        tail -n 30 "$log" >&2
        stop_pid "$server_pid"
        server_pid=
        return 1
    fi
    local cg_gen=(--generator memcached --memcached-keys "$cg_keys" --memcached-key-size "$key_size"
        --request-size "$value_size" --json --timeout 120)
    local rc=0
    taskset -c "$client_cpu" "$loadgen_bin" --smp 1 --cpuset "$client_cpu" --ctl-socket none --idle-policy sleep \
        --server "127.0.0.1:$port" "${cg_gen[@]}" --connections 16 --pipeline 16 --memcached-get-ratio 0 \
        --requests $((cg_keys * prefill_factor)) >"$work/$tag.prefill.json" 2>"$work/$tag.prefill.log" || rc=$?
    if ((rc == 0 && n > 0)); then
        taskset -c "$client_cpu" "$loadgen_bin" --smp 1 --cpuset "$client_cpu" --ctl-socket none --idle-policy sleep \
            --server "127.0.0.1:$port" "${cg_gen[@]}" --connections "$conns" --pipeline "$pipeline" \
            --memcached-get-ratio 0.9 --requests "$n" >"$work/$tag.json" 2>"$work/$tag.log" || rc=$?
    fi
    stop_pid "$server_pid"
    server_pid=
    if [[ $rc != 0 ]]; then
        echo "$me: reef-loadgen against $kind under callgrind failed (exit $rc)" >&2
        grep -hv '^  #' "$work/$tag.prefill.log" "$work/$tag.log" 2>/dev/null | tail -n 20 >&2
        return 1
    fi
    local ir
    ir=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$work/cg/$tag.out" 2>/dev/null | head -n 1)
    [[ -n $ir ]] || { echo "$me: no callgrind summary for $kind ($tag)" >&2; tail -n 20 "$log" >&2; return 1; }
    echo "$ir" >"$work/$tag.ir"
}
cg_part() {
    : >"$work/callgrind.jsonl"
    local kind ir0 irn bin note
    for kind in reef stock; do
        bin=$stock_bin
        [[ $kind == reef ]] && bin=$cg_reef
        note=
        if cg_one "$kind" 0 && cg_one "$kind" "$cg_requests"; then
            ir0=$(<"$work/cg.$kind.0.ir")
            irn=$(<"$work/cg.$kind.$cg_requests.ir")
            echo "  callgrind $kind: Ir(0) = $ir0, Ir($cg_requests) = $irn" >&2
        else
            ir0=null
            irn=null
            note="failed under valgrind: $(grep -v '^==' "$work/cg.$kind.0.server.log" 2>/dev/null | head -n 3 | tr '\n"' ' _')"
            echo "  callgrind $kind: $note" >&2
        fi
        printf '{"server": "%s", "binary": "%s", "requests": %s, "ir_startup": %s, "ir_with_requests": %s, "note": "%s"}\n' \
            "$kind" "$bin" "$cg_requests" "$ir0" "$irn" "$note" >>"$work/callgrind.jsonl"
    done
}

# ---- part 4: memory -----------------------------------------------------------------------------
cat >"$work/fill.py" <<'PY'
# fill.py PORT ITEMS VALUE_SIZE KEY_SIZE: sets ITEMS items (noreply, pipelined), then checks the
# stats and a sample; prints one JSON line.
import json, random, socket, sys, time
port, items, vsize, ksize = (int(x) for x in sys.argv[1:5])
s = socket.create_connection(("127.0.0.1", port), 5)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
s.settimeout(120)
pad = b"v" * vsize
def key(i):
    k = b"key:%d" % i
    return k[:4] + b"0" * (ksize - len(k)) + k[4:]
def value(i):
    v = b"%d:" % i
    return (v + pad)[:vsize]
kfmt = b"set key:%0" + str(ksize - 4).encode() + b"d 0 0 " + str(vsize).encode() + b" noreply\r\n"
t0 = time.monotonic()
batch = 20000
for b in range(0, items, batch):
    s.sendall(b"".join(kfmt % i + (b"%d:" % i + pad)[:vsize] + b"\r\n" for i in range(b, min(items, b + batch))))
def roundtrip(cmd, end):
    s.sendall(cmd)
    buf = b""
    while not buf.endswith(end):
        chunk = s.recv(1 << 20)
        if not chunk:
            sys.exit("fill.py: the server closed the connection")
        buf += chunk
    return buf
roundtrip(b"version\r\n", b"\r\n")  # every set before it was processed
fill_s = time.monotonic() - t0
st = {}
for line in roundtrip(b"stats\r\n", b"END\r\n").decode().split("\r\n"):
    p = line.split(" ")
    if len(p) == 3 and p[0] == "STAT":
        st[p[1]] = p[2]
rng = random.Random(1)
sample = sorted(rng.sample(range(items), min(items, 2000)))
bad = 0
for c in range(0, len(sample), 100):
    ks = sample[c:c + 100]
    buf = roundtrip(b"get " + b" ".join(key(i) for i in ks) + b"\r\n", b"END\r\n")
    want = b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (key(i), vsize, value(i)) for i in ks) + b"END\r\n"
    if buf != want:
        bad += sum(1 for i in ks if b"VALUE %s 0 %d\r\n%s\r\n" % (key(i), vsize, value(i)) not in buf)
print(json.dumps({"items": items, "fill_s": fill_s, "curr_items": int(st.get("curr_items", -1)),
                  "evictions": int(st.get("evictions", -1)), "bytes": int(st.get("bytes", -1)),
                  "sample": len(sample), "sample_bad": bad}))
PY
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
mem_one() {
    local kind=$1 port log=$work/mem.$1.server.log items=$((fill_mb * 1048576 / fill_value))
    port=$(free_port)
    case $kind in
        reef)
            taskset -c "$server_cpu" "$reef_bin" --smp 1 --cpuset "$server_cpu" --ctl-socket none -l 127.0.0.1 \
                -p "$port" -m "$memory_mb" >"$log" 2>&1 &
            ;;
        stock)
            taskset -c "$server_cpu" "$stock_bin" "${run_as[@]}" -t 1 -l 127.0.0.1 -p "$port" -m "$memory_mb" >"$log" 2>&1 &
            ;;
    esac
    server_pid=$!
    wait_port "$port" "$server_pid" "$kind (memory)"
    local rss0 rss1 rc=0
    rss0=$(rss_kb "$server_pid")
    taskset -c "$client_cpu" /usr/bin/python3 "$work/fill.py" "$port" "$items" "$fill_value" "$key_size" \
        >"$work/mem.$kind.fill.json" || rc=$?
    sleep 1
    rss1=$(rss_kb "$server_pid")
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status")
    stop_pid "$server_pid"
    server_pid=
    [[ $rc == 0 ]] || { echo "$me: filling $kind failed" >&2; tail -n 20 "$log" >&2; return 1; }
    /usr/bin/python3 - "$work/mem.$kind.fill.json" "$kind" "$rss0" "$rss1" "$hwm" >>"$work/memory.jsonl" <<'PY'
import json, sys
f = json.load(open(sys.argv[1]))
f.update({"server": sys.argv[2], "rss_start_kb": int(sys.argv[3]), "rss_kb": int(sys.argv[4]), "hwm_kb": int(sys.argv[5])})
f["all_items_held"] = f["curr_items"] == f["items"] and f["evictions"] == 0 and f["sample_bad"] == 0
print(json.dumps(f))
PY
    echo "  memory $kind: $(tail -n 1 "$work/memory.jsonl")" >&2
}

# ---- the run ------------------------------------------------------------------------------------
echo "memcached native benchmark ($build): parts ${parts[*]}; $rounds interleaved rounds of ${duration} s after" \
    "${warmup} s warmup; servers on CPU $server_cpu, reef-loadgen on CPU $client_cpu; $huge_note;" \
    "$([[ $rt_used == 1 ]] && echo "SCHED_RR 1" || echo "normal priority")" >&2
for ((r = 1; r <= rounds; r++)); do
    for part in tcp udp; do
        has_part "$part" || continue
        if ((r % 2)); then
            run_one "$part" native "$r"
            run_one "$part" posix "$r"
        else
            run_one "$part" posix "$r"
            run_one "$part" native "$r"
        fi
    done
done
cat "$work"/run.*.json >"$work/runs.jsonl" 2>/dev/null || : >"$work/runs.jsonl"
: >"$work/callgrind.jsonl"
has_part callgrind && cg_part
: >"$work/memory.jsonl"
if has_part memory; then
    mem_one reef
    mem_one stock
fi

/usr/bin/python3 - "$work/runs.jsonl" "$work/callgrind.jsonl" "$work/memory.jsonl" "$out/memcached_native.json" \
    "$out/memcached_native.txt" "$duration" "$warmup" "$server_cpu" "$client_cpu" "$rt_used" "$huge_note" "$build" \
    "$conns" "$pipeline" "$udp_conns" "$udp_pipeline" "$keys" "$fill_mb" "$fill_value" "$memory_mb" "$cg_keys" \
    "$cg_note" <<'PY'
import json, statistics, sys
def load(p):
    return [json.loads(l) for l in open(p) if l.strip()]
runs, cg, mem = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
(dur, warm, scpu, ccpu, rt, huge_note, build, conns, pipe, uconns, upipe, keys, fill_mb, fill_value, memory_mb,
 cg_keys) = (float(sys.argv[6]), float(sys.argv[7]), sys.argv[8], sys.argv[9], sys.argv[10] == "1", sys.argv[11],
             sys.argv[12], int(sys.argv[13]), int(sys.argv[14]), int(sys.argv[15]), int(sys.argv[16]),
             int(sys.argv[17]), int(sys.argv[18]), int(sys.argv[19]), int(sys.argv[20]), int(sys.argv[21]))
cg_note = sys.argv[22]
targets = {"tcp": 4.0, "udp": 10.0}

def med(rs, k):
    v = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(v) if v else None

def f(x, fmt):
    return "-" if x is None else format(x, fmt)

result = {"config": {"build": build, "duration_s": dur, "warmup_s": warm, "server_cpu": scpu, "client_cpu": ccpu,
                     "realtime_priority": rt, "memory": huge_note, "key_size": 32, "value_size": 100, "keys": keys,
                     "tcp": {"connections": conns, "pipeline": pipe, "get_ratio": 0.9},
                     "udp": {"connections": uconns, "pipeline": upipe, "get_ratio": 1.0}},
          "runs": runs, "parts": {}}
lines = [f"reef-memcached vs memcached 1.6 (Debian), one server core each (CPU {scpu}), reef-loadgen on CPU {ccpu};",
         f"build {build}; {huge_note}; " + ("SCHED_RR priority 1" if rt else "normal priority"), ""]
verdicts = []
for part in ("tcp", "udp"):
    prs = [r for r in runs if r["part"] == part]
    if not prs:
        continue
    s = {}
    for stack in ("native", "posix"):
        rs = [r for r in prs if r["stack"] == stack]
        s[stack] = {k: med(rs, k) for k in ("ops_per_s", "server_cpu_util", "client_cpu_util", "ops_per_s_per_server_core",
                                            "server_busy", "ops_per_s_per_busy_server_core", "server_cpu_us_per_op",
                                            "loss", "hit_ratio")}
        s[stack]["p50_us"] = statistics.median(r["latency_us"]["p50"] for r in rs)
        s[stack]["p99_us"] = statistics.median(r["latency_us"]["p99"] for r in rs)
    by_round = {}
    for r in prs:
        by_round.setdefault(r["round"], {})[r["stack"]] = r["ops_per_s_per_server_core"]
    ratios = [v["native"] / v["posix"] for _, v in sorted(by_round.items())
              if v.get("native") and v.get("posix")]
    s["per_round_ratios_per_core"] = ratios
    s["median_round_ratio_per_core"] = statistics.median(ratios) if ratios else None
    n, p = s["native"]["ops_per_s_per_server_core"], s["posix"]["ops_per_s_per_server_core"]
    s["ratio_of_medians_per_core"] = n / p if n and p else None
    t = targets[part]
    s["target"] = f"reef >= {t:g}x stock ops/s per server core"
    s["target_met"] = s["median_round_ratio_per_core"] is not None and s["median_round_ratio_per_core"] >= t
    by_round_busy = {}
    for r in prs:
        by_round_busy.setdefault(r["round"], {})[r["stack"]] = r["ops_per_s_per_busy_server_core"]
    busy_ratios = [v["native"] / v["posix"] for _, v in sorted(by_round_busy.items())
                   if v.get("native") and v.get("posix")]
    s["per_round_ratios_per_busy_core"] = busy_ratios
    s["median_round_ratio_per_busy_core"] = statistics.median(busy_ratios) if busy_ratios else None
    n, p = s["native"]["ops_per_s_per_busy_server_core"], s["posix"]["ops_per_s_per_busy_server_core"]
    s["ratio_of_medians_per_busy_core"] = n / p if n and p else None
    s["target_busy"] = f"reef >= {t:g}x stock ops/s per busy server core"
    s["target_busy_met"] = (s["median_round_ratio_per_busy_core"] is not None
                            and s["median_round_ratio_per_busy_core"] >= t)
    result["parts"][part] = s
    if part == "tcp":
        lines += ["1. TCP, 90% get / 10% set, 32-byte keys, 100-byte values, "
                  f"{conns} connections x pipeline {pipe} (reef-loadgen checks every answer):", ""]
        labels = {"native": "reef-memcached, native stack over net_memif", "posix": "memcached -t 1, loopback"}
    else:
        lines += [f"2. UDP GET (after a set phase), {uconns} channels x pipeline {upipe}, 32-byte keys, 100-byte values:", ""]
        labels = {"native": "reef-memcached --udp-fastpath over net_memif", "posix": "memcached -t 1 -U, loopback"}
    lines += ["| server | ops/s | server CPU | ops/s per server core | server busy | ops/s per busy server core "
              "| server CPU us/op | client CPU | p50 us | p99 us | lost | hit ratio |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for stack in ("native", "posix"):
        m = s[stack]
        lines.append(f"| {labels[stack]} | {f(m['ops_per_s'], ',.0f')} | {f(m['server_cpu_util'] and 100 * m['server_cpu_util'], '.0f')}% "
                     f"| {f(m['ops_per_s_per_server_core'], ',.0f')} "
                     f"| {f(None if m['server_busy'] is None else 100 * m['server_busy'], '.0f')}% "
                     f"| {f(m['ops_per_s_per_busy_server_core'], ',.0f')} | {f(m['server_cpu_us_per_op'], '.2f')} "
                     f"| {f(m['client_cpu_util'] and 100 * m['client_cpu_util'], '.0f')}% | {f(m['p50_us'], '.1f')} "
                     f"| {f(m['p99_us'], '.1f')} | {f(m['loss'] is not None and 100 * m['loss'], '.3f')}% "
                     f"| {f(m['hit_ratio'], '.3f')} |")
    v = (f"{part}: reef / stock ops/s per server core, median of per-round ratios "
         f"{f(s['median_round_ratio_per_core'], '.2f')}x (target >= {t:g}x: {'met' if s['target_met'] else 'MISSED'}); "
         f"ratio of the medians {f(s['ratio_of_medians_per_core'], '.2f')}x; per round: "
         + ", ".join(f"{x:.2f}" for x in ratios))
    vb = (f"{part}: reef / stock ops/s per busy server core, median of per-round ratios "
          f"{f(s['median_round_ratio_per_busy_core'], '.2f')}x (target >= {t:g}x: "
          f"{'met' if s['target_busy_met'] else 'MISSED'}); ratio of the medians "
          f"{f(s['ratio_of_medians_per_busy_core'], '.2f')}x; per round: " + ", ".join(f"{x:.2f}" for x in busy_ratios))
    lines += ["", "server busy: reef-memcached polls the NIC, so its CPU stays near 100% whatever the load; its busy",
              "fraction is 1 - (time asleep + time polling without finding work) / wall, from its reactor counters",
              "(control agent, shards.list) over the CPU window. memcached sleeps when idle: its busy fraction is its",
              "CPU utilisation.", "", v, vb, ""]
    verdicts += [v, vb]

if cg:
    res = []
    for c in cg:
        e = dict(c)
        if c["ir_startup"] is not None and c["ir_with_requests"] is not None:
            e["ir_per_request"] = (c["ir_with_requests"] - c["ir_startup"]) / c["requests"]
        else:
            e["ir_per_request"] = None
        res.append(e)
    result["parts"]["callgrind"] = {"results": res, "keys": cg_keys, "note": cg_note,
                                    "method": "Ir(set phase + N requests) - Ir(set phase only), divided by N"}
    lines += [f"3. Instructions per request (valgrind --tool=callgrind, user space, posix stack on loopback; "
              f"{cg_keys} keys set first, then N requests at 90% get; {conns} connections x pipeline {pipe}):", "",
              "| server | binary | N | Ir start-up + set phase | Ir with N requests | Ir per request |", "|---|---|---:|---:|---:|---:|"]
    for e in res:
        name = "reef-memcached --smp 1" if e["server"] == "reef" else "memcached -t 1"
        lines.append(f"| {name} | {e['binary']} | {e['requests']} | {f(e['ir_startup'], ',')} | {f(e['ir_with_requests'], ',')} "
                     f"| {f(e['ir_per_request'], ',.0f')} |" + (f" {e['note']}" if e["note"] else ""))
    if cg_note:
        lines += ["", cg_note]
    per = {e["server"]: e["ir_per_request"] for e in res}
    if per.get("reef") and per.get("stock"):
        v = f"callgrind: reef / stock instructions per request {per['reef'] / per['stock']:.2f}x (no target)"
        result["parts"]["callgrind"]["ratio"] = per["reef"] / per["stock"]
    else:
        v = "callgrind: no ratio (a server could not be measured)"
    lines += ["", v, ""]
    verdicts.append(v)

if mem:
    by = {m["server"]: m for m in mem}
    ratio = by["reef"]["rss_kb"] / by["stock"]["rss_kb"] if "reef" in by and "stock" in by else None
    held = all(m["all_items_held"] for m in mem)
    met = ratio is not None and ratio <= 1.1 and held
    result["parts"]["memory"] = {"results": mem, "fill_mb": fill_mb, "value_size": fill_value, "memory_limit_mb": memory_mb,
                                 "ratio_rss": ratio, "target": "reef RSS <= 1.1x stock", "target_met": met}
    lines += [f"4. Memory: {fill_mb} MiB of values ({fill_value}-byte values, 32-byte keys) in each server, -m {memory_mb}, "
              "posix stack:", "",
              "| server | items | curr_items | evictions | sample bad | RSS empty MiB | RSS full MiB | peak MiB |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k in ("reef", "stock"):
        if k in by:
            m = by[k]
            name = "reef-memcached --smp 1" if k == "reef" else "memcached -t 1"
            lines.append(f"| {name} | {m['items']:,} | {m['curr_items']:,} | {m['evictions']} | {m['sample_bad']} "
                         f"| {m['rss_start_kb'] / 1024:,.1f} | {m['rss_kb'] / 1024:,.1f} | {m['hwm_kb'] / 1024:,.1f} |")
    v = (f"memory: reef / stock RSS {f(ratio, '.3f')}x (target <= 1.1x: {'met' if met else 'MISSED'}"
         + ("" if held else "; NOT every item held by both servers") + ")")
    lines += ["", v, ""]
    verdicts.append(v)

json.dump(result, open(sys.argv[4], "w"), indent=1)
lines += ["Summary:"] + ["  " + v for v in verdicts]
text = "\n".join(lines) + "\n"
open(sys.argv[5], "w").write(text)
print(text, end="")
PY
