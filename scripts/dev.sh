#!/usr/bin/env bash
# Reef's one entry point for developers and CI.
#
#   scripts/dev.sh run [ARGS...]   build, then start the main job: reefd supervising the memcached
#                                  dataplane on the native stack in a demo namespace, or on the
#                                  posix stack with REEF_MAIN_JOB=posix; ARGS go to the dataplane
#   scripts/dev.sh test [STAGE...] unit tests, the same under ASan+UBSan, pytest, then the container
#                                  test (stages: unit asan pytest container)
#   scripts/dev.sh bench           release build, then every benchmark script; results in
#                                  $BENCH_RESULTS_DIR (default build/bench-results)
#   scripts/dev.sh build           install missing packages, configure and build build/
#   scripts/dev.sh deps            install missing Debian packages only
#
# Every subcommand first installs the Debian packages that are missing (apt-get update once,
# noninteractive; nothing is touched when all are present). Environment:
#   REEF_JOBS=N        limit ninja (and meson test) to N parallel jobs
#   REEF_SKIP_DEPS=1   do not check packages (for non-Debian systems with everything installed)
#   BENCH_RESULTS_DIR  where `bench` writes its results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/scripts/dev.sh"
cd "$ROOT"

# ccache (which meson uses when installed): share the cache between checkouts in different folders
# (CI builds a fresh clone elsewhere), so a rebuild of unchanged sources is a cache hit.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"

# The Debian packages Reef builds and tests with. Later issues append to this list.
REEF_PACKAGES="build-essential meson ninja-build ccache pkg-config
    libgtest-dev libgmock-dev libbenchmark-dev libfmt-dev libcli11-dev nlohmann-json3-dev
    libboost-dev liburing-dev libgnutls28-dev libdpdk-dev libdw-dev libnuma-dev
    python3-pytest python3-scapy iproute2 gnutls-bin valgrind dpdk-dev
    curl fio wrk nginx-light memcached libmemcached-tools ethtool nftables
    liblz4-dev collectd-core python3-yaml prometheus
    podman runc debootstrap uidmap slirp4netns fuse-overlayfs"

# Build directories and their options. `build/` keeps assertions (tests want them); benchmarks
# use a separate release tree so `test` and `bench` never reconfigure each other.
BUILD_DIR=build
BUILD_OPTS=(-Dbuildtype=debugoptimized -Dwerror=true -Dallocator=reef)
ASAN_DIR=build-asan
# Line tables for debug info and no PIE keep the ASan tree small (it links the runtime and the
# stack into every test: position-independent, each carried some 40 MB of dynamic relocations).
# shellcheck disable=SC2054  # the comma belongs to the option value
ASAN_OPTS=(-Dbuildtype=debugoptimized -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
    -Dbenchmarks=false -Ddebug_info=lines -Dcpp_link_args=-no-pie)
RELEASE_DIR=build-release
RELEASE_OPTS=(-Dbuildtype=release -Db_ndebug=true -Dwerror=true -Dtests=false -Dbenchmarks=true -Dallocator=reef)

# The main job: reefd supervising the memcached dataplane, from an embedded default config (see
# cmd_run): scripts/main-job/reefd-native.json (native stack on a veth pair in a demo namespace) or
# scripts/main-job/reefd.json (posix stack on 127.0.0.1). Neither needs a NIC or hugepages.
MAIN_JOB_CONFIG="$ROOT/scripts/main-job/reefd.json"

# Debian's interpreter: it is the one python3-pytest and python3-scapy are installed for, whatever
# `python3` a user's PATH (pyenv, venv) resolves to.
PYTHON=/usr/bin/python3

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    # The header comment of this file, without the shebang and the comment markers.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SELF"
}

# --- packages ---------------------------------------------------------------------------------

missing_packages() {
    local p status
    for p in $REEF_PACKAGES; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        case "$status" in
            *" ok installed") ;;
            *) printf '%s\n' "$p" ;;
        esac
    done
}

cmd_deps() {
    if [[ ${REEF_SKIP_DEPS:-0} == 1 || ${REEF_DEPS_DONE:-0} == 1 ]]; then
        return 0
    fi
    if ! command -v dpkg-query >/dev/null; then
        # shellcheck disable=SC2086,SC2116  # collapses the list onto one line
        die "not a Debian-based system; install the equivalents of: $(echo $REEF_PACKAGES) (then set REEF_SKIP_DEPS=1)"
    fi
    local missing
    missing=$(missing_packages | tr '\n' ' ')
    missing=${missing% }
    if [[ -n $missing ]]; then
        local sudo=()
        if [[ $(id -u) != 0 ]]; then
            if command -v sudo >/dev/null; then
                sudo=(sudo)
            else
                printf 'dev.sh: missing Debian packages: %s\n' "$missing" >&2
                printf 'dev.sh: as root, run: apt-get update && apt-get install -y --no-install-recommends %s\n' \
                    "$missing" >&2
                exit 1
            fi
        fi
        say "installing missing packages: $missing"
        "${sudo[@]}" apt-get update
        # shellcheck disable=SC2086  # word splitting of the package list is intended
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends $missing
    fi
    export REEF_DEPS_DONE=1
}

# --- configure and build ----------------------------------------------------------------------

# configure DIR -Dkey=value...: set up DIR, or bring an existing DIR's options to the given
# values. Options already right are left alone, so an up-to-date tree is not regenerated.
# (Meson picks up ccache by itself when it is installed and CC/CXX are not set.)
configure() {
    local dir=$1
    shift
    if [[ -f $dir/build.ninja && -f $dir/meson-private/coredata.dat ]]; then
        local changed
        changed=$(meson introspect "$dir" --buildoptions | "$PYTHON" -c '
import json, sys
current = {o["name"]: o["value"] for o in json.load(sys.stdin)}
for arg in sys.argv[1:]:
    key, _, want = arg[2:].partition("=")
    have = current.get(key)
    have = ",".join(have) if isinstance(have, list) else str(have).lower() if isinstance(have, bool) else str(have)
    if have != want:
        print(arg)
' "$@")
        if [[ -n $changed ]]; then
            say "reconfiguring $dir: ${changed//$'\n'/ }"
            # shellcheck disable=SC2086
            meson configure "$dir" $changed
        fi
    elif [[ -f $dir/meson-private/coredata.dat ]]; then
        say "configuring $dir again (an earlier setup did not finish)"
        meson setup --reconfigure "$dir" "$@"
    else
        say "configuring $dir"
        meson setup "$dir" "$@"
    fi
}

ninja_build() {
    local dir=$1
    shift
    say "building $dir"
    ninja -C "$dir" ${REEF_JOBS:+-j "$REEF_JOBS"} "$@"
}

build_default() {
    configure "$BUILD_DIR" "${BUILD_OPTS[@]}"
    ninja_build "$BUILD_DIR"
}

cmd_build() {
    cmd_deps
    build_default
}

# --- test ---------------------------------------------------------------------------------------

meson_test() {
    local dir=$1
    meson test -C "$dir" --no-rebuild --print-errorlogs ${REEF_JOBS:+--num-processes "$REEF_JOBS"}
}

stage_unit() {
    build_default
    say "unit tests ($BUILD_DIR)"
    meson_test "$BUILD_DIR"
}

# The executables meson's tests run (and what they depend on), as ninja targets: the ASan tree
# builds those and not the programs no test runs there.
test_targets() {
    local dir=$1
    "$PYTHON" - "$dir" <<'PY'
import json, os, subprocess, sys
d = sys.argv[1]
intro = lambda what: json.loads(subprocess.run(["meson", "introspect", d, what], check=True,
                                               capture_output=True, text=True).stdout)
ids = {dep for t in intro("--tests") for dep in t["depends"]}
for t in intro("--targets"):
    if t["id"] in ids:
        for f in t["filename"]:
            print(os.path.relpath(f, os.path.realpath(d)))
PY
}

stage_asan() {
    configure "$ASAN_DIR" "${ASAN_OPTS[@]}"
    local targets
    targets=$(test_targets "$ASAN_DIR") || die "cannot list the tests of $ASAN_DIR"
    [[ -n $targets ]] || die "meson lists no tests in $ASAN_DIR"
    # shellcheck disable=SC2086  # one target per word
    ninja_build "$ASAN_DIR" $targets
    say "unit tests under ASan+UBSan ($ASAN_DIR)"
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
        UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
        meson_test "$ASAN_DIR"
}

stage_pytest() {
    build_default
    say "pytest (pytests/, REEF_BUILD_DIR=$BUILD_DIR)"
    local rc=0
    REEF_BUILD_DIR="$BUILD_DIR" "$PYTHON" -m pytest pytests/ -v -rs || rc=$?
    if [[ $rc == 5 ]]; then
        printf 'dev.sh: pytest collected no tests: that is a failure, not a pass\n' >&2
    fi
    return "$rc"
}

# The container test (docker/): builds the image from the host build's binaries and runs it the
# way docker/compose.yaml's dev profile does. Exit 77 means no container engine works here: the
# stage is reported as skipped with the script's reason.
stage_container() {
    build_default
    say "container test (scripts/container_test.sh --build-dir $BUILD_DIR)"
    bash scripts/container_test.sh --build-dir "$BUILD_DIR"
}

STAGES=(unit asan pytest container)

cmd_test() {
    local stages=("$@")
    if [[ ${#stages[@]} == 0 ]]; then
        stages=("${STAGES[@]}")
    fi
    local s
    for s in "${stages[@]}"; do
        [[ " ${STAGES[*]} " == *" $s "* ]] || die "unknown test stage '$s' (stages: ${STAGES[*]})"
    done
    cmd_deps
    # Each stage runs in its own shell so that `set -e` holds inside it (bash ignores -e in a
    # function called from an `if`), and a failing stage does not stop the ones after it.
    local summary=() failed=0 rc
    for s in "${stages[@]}"; do
        rc=0
        bash "$SELF" _stage "$s" || rc=$?
        if [[ $rc == 0 ]]; then
            summary+=("$s: ok")
        elif [[ $rc == 77 ]]; then
            summary+=("$s: skipped (see its SKIP: line)")
        else
            summary+=("$s: FAILED")
            failed=1
        fi
    done
    local line=${summary[0]}
    for s in "${summary[@]:1}"; do
        line+=", $s"
    done
    printf '\n%s\n' "$line"
    return "$failed"
}

# --- bench --------------------------------------------------------------------------------------

# Benchmark scripts: tests/perf/run.sh and tests/perf/run_*.sh (microbenchmarks), then
# tests/bench/run_*.sh and tests/bench/*.py (system benchmarks). Found at run time, so a new
# benchmark only has to be dropped into place. Each takes the build directory as its argument.
bench_scripts() {
    local f
    for f in tests/perf/run.sh tests/perf/run_*.sh tests/bench/run_*.sh tests/bench/*.py; do
        [[ -f $f ]] && printf '%s\n' "$f"
    done
    return 0
}

cmd_bench() {
    cmd_deps
    configure "$RELEASE_DIR" "${RELEASE_OPTS[@]}"
    ninja_build "$RELEASE_DIR"
    local out=${BENCH_RESULTS_DIR:-$BUILD_DIR/bench-results}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    local scripts
    mapfile -t scripts < <(bench_scripts)
    [[ ${#scripts[@]} -gt 0 ]] || die "no benchmark scripts found (tests/perf/run*.sh, tests/bench/run_*.sh, tests/bench/*.py)"
    local summary=() failed=0 s rc
    for s in "${scripts[@]}"; do
        say "benchmark $s (results in $out)"
        rc=0
        case "$s" in
            *.py) BENCH_RESULTS_DIR="$out" BUILD_DIR="$RELEASE_DIR" REEF_BUILD_DIR="$RELEASE_DIR" \
                "$PYTHON" "$s" "$RELEASE_DIR" || rc=$? ;;
            *) BENCH_RESULTS_DIR="$out" BUILD_DIR="$RELEASE_DIR" REEF_BUILD_DIR="$RELEASE_DIR" \
                bash "$s" "$RELEASE_DIR" || rc=$? ;;
        esac
        if [[ $rc == 0 ]]; then
            summary+=("$s: ok")
        else
            summary+=("$s: FAILED (exit $rc)")
            failed=1
        fi
    done
    printf '\nresults in %s\n' "$out"
    printf '%s\n' "${summary[@]}"
    return "$failed"
}

# --- run ----------------------------------------------------------------------------------------

# The main job, in the foreground: reefd (from $BUILD_DIR) with an embedded default config that
# launches reef-memcached (2 shards, TCP and UDP on port 11211, Prometheus metrics on port 9180).
#
#  - native (the default as root, with a DPDK build): a demo network namespace ($REEF_DEMO_NETNS,
#    default reef-demo) holding one end of a veth pair (198.18.0.2/15); the dataplane runs Reef's
#    own TCP/IP stack (198.18.0.1) on the other end through DPDK's net_af_packet, with hugepages if
#    reserved, --no-huge otherwise. Config: scripts/main-job/reefd-native.json.
#  - posix (REEF_MAIN_JOB=posix, or when native cannot run here: the reason is printed): the kernel's
#    sockets on 127.0.0.1. Config: scripts/main-job/reefd.json.
#  - a real port: `run --nic PCI_ADDR` (a NIC bound to vfio-pci, EAL allow-list) or `run --nic VDEV`
#    (any DPDK vdev, e.g. net_af_packet0,iface=eth1): native, no demo namespace; give the address
#    with --host-ipv4-addr/--netmask-ipv4-addr/--gw-ipv4-addr (or --dhcp).
#
# Arguments go to the memcached dataplane (e.g. `--memory-limit 1024`); a long option given there
# replaces the config's default for it. Everything lives in $REEF_RUN_DIR (default
# $BUILD_DIR/main-job): sockets, pid files, logs, and a state file that is cleared at each start so
# the embedded config always applies. Ctrl-C or SIGTERM stops the dataplane gracefully through
# reefd, then reefd, then removes the namespace and the veth pair.
main_job_mode() {
    local want=${REEF_MAIN_JOB:-auto}
    case "$want" in
        posix) echo posix; return ;;
        native | auto) ;;
        *) die "REEF_MAIN_JOB must be native, posix or auto, not '$want'" ;;
    esac
    local why=""
    if [[ $(id -u) != 0 ]]; then
        why="not root (a network namespace and a veth pair need CAP_NET_ADMIN)"
    elif [[ $("$BUILD_DIR/apps/memcached/reef-memcached" --help 2>/dev/null) != *--dpdk-pmd* ]]; then
        why="this build has no DPDK (libdpdk-dev missing when it was configured)"
    fi
    if [[ -n $why ]]; then
        [[ $want == native ]] && die "REEF_MAIN_JOB=native: $why"
        say "main job on the posix stack: $why"
        echo posix
        return
    fi
    echo native
}

cmd_run() {
    cmd_deps
    build_default
    local reefd="$BUILD_DIR/ctl/reefd" reefctl="$BUILD_DIR/ctl/reefctl"
    [[ -x $reefd && -x $reefctl ]] || die "$reefd or $reefctl was not built"
    local nic=""
    if [[ ${1:-} == --nic ]]; then
        [[ $# -ge 2 ]] || die "--nic needs a PCI address (0000:01:00.0) or a DPDK vdev (net_...)"
        nic=$2
        shift 2
    elif [[ ${1:-} == --nic=* ]]; then
        nic=${1#--nic=}
        shift
    fi
    local mode
    if [[ -n $nic ]]; then
        mode=$(REEF_MAIN_JOB=native main_job_mode)
    else
        mode=$(main_job_mode)
    fi
    local run_dir=${REEF_RUN_DIR:-$ROOT/$BUILD_DIR/main-job}
    mkdir -p "$run_dir"
    run_dir=$(cd "$run_dir" && pwd)
    local config="$run_dir/reefd.json" sock="$run_dir/reefd.sock"
    rm -f "$run_dir/reefd.state.json"

    local template="$MAIN_JOB_CONFIG" ns="" dp_if="" addr=127.0.0.1 client=() device=""
    if [[ -n $nic ]]; then
        template="$ROOT/scripts/main-job/reefd-native.json"
        addr=198.18.0.1
        if [[ $nic == net_* ]]; then
            device=$nic
        elif [[ $nic =~ ^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
            device="pci:$nic"
        else
            die "--nic $nic: not a PCI address (0000:01:00.0) nor a DPDK vdev (net_...)"
        fi
    elif [[ $mode == native ]]; then
        template="$ROOT/scripts/main-job/reefd-native.json"
        ns=${REEF_DEMO_NETNS:-reef-demo}
        [[ $ns =~ ^[a-z0-9-]{1,13}$ ]] || die "REEF_DEMO_NETNS must be 1-13 of [a-z0-9-] (veth names add 2)"
        dp_if="${ns}-d"
        device="net_af_packet0,iface=$dp_if"
        addr=198.18.0.1
        client=(ip netns exec "$ns")
        if ip netns list | awk '{print $1}' | grep -qxF -- "$ns" || ip link show "$dp_if" >/dev/null 2>&1; then
            die "network namespace $ns or interface $dp_if exists: is another main job running? (if not: ip netns del $ns; ip link del $dp_if)"
        fi
        remove_demo_net() {
            ip netns del "$ns" 2>/dev/null || true
            ip link del "$dp_if" 2>/dev/null || true
        }
        say "creating network namespace $ns (198.18.0.2/15 on ${ns}-c) and veth $dp_if for the dataplane"
        if ! { ip netns add "$ns" &&
            ip link add "$dp_if" type veth peer name "${ns}-c" &&
            ip link set "${ns}-c" netns "$ns" &&
            ip -n "$ns" link set lo up &&
            ip -n "$ns" addr add 198.18.0.2/15 dev "${ns}-c" &&
            ip -n "$ns" link set "${ns}-c" up &&
            sysctl -qw "net.ipv6.conf.$dp_if.disable_ipv6=1" &&
            ip link set "$dp_if" up; }; then
            remove_demo_net
            die "could not create the demo network (see the message above)"
        fi
        # af_packet hands the dataplane what the kernel sends: no GSO super-frames, no checksums
        # left to hardware that does not exist (docs/dataplane.md).
        ethtool -K "$dp_if" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
        ip netns exec "$ns" ethtool -K "${ns}-c" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
    fi

    "$PYTHON" - "$template" "$config" "$run_dir" "$ROOT/$BUILD_DIR" "$device" "$@" <<'PY' || { [[ -n $ns ]] && remove_demo_net; exit 1; }
import json, sys
template, out, run_dir, build_dir, device, *extra = sys.argv[1:]
text = (open(template).read().replace("@RUN_DIR@", run_dir).replace("@BUILD_DIR@", build_dir)
        .replace("@VDEV@", device))
cfg = json.loads(text)
args = cfg["dataplanes"][0]["args"]
if device.startswith("pci:") and "--vdev" in args:
    # A PCI port: no vdev; the EAL's allow-list names the one device to probe.
    i = args.index("--vdev")
    args[i:i + 2] = ["--dpdk-args", "-a " + device[4:]]
# The defaults are options, each followed by its value unless it is a flag (next is an option).
# An option the user gives replaces its default (CLI11 refuses a repeated single-valued option).
given = {a.split("=", 1)[0] for a in extra if a.startswith("--")}
defaults = cfg["dataplanes"][0]["args"]
kept, i = [], 0
while i < len(defaults):
    opt = defaults[i]
    n = 2 if i + 1 < len(defaults) and not defaults[i + 1].startswith("--") else 1
    if opt not in given:
        kept += defaults[i:i + n]
    i += n
cfg["dataplanes"][0]["args"] = kept + extra
with open(out, "w") as f:
    json.dump(cfg, f, indent=2)
PY

    say "starting reefd (config $config): the memcached dataplane mc0 on the $mode stack, $addr:11211"
    "$reefd" --config "$config" &
    local reefd_pid=$!
    stop_main_job() {
        trap - INT TERM
        say "stopping the memcached dataplane, then reefd"
        "$reefctl" --socket "$sock" --timeout 20 stop mc0 || true
        kill -TERM "$reefd_pid" 2>/dev/null || true
        wait "$reefd_pid" 2>/dev/null || true
        [[ -n $ns ]] && remove_demo_net
        exit 0
    }
    trap stop_main_job INT TERM
    # Wait until mc0 serves, then say how to reach it.
    local i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$reefd_pid" 2>/dev/null || break
        if "$reefctl" --socket "$sock" --json dataplanes 2>/dev/null | grep -q '"running"'; then
            "$reefctl" --socket "$sock" dataplanes || true
            say "mc0 serves memcached on $addr:11211 (TCP and UDP), metrics on http://$addr:9180/metrics"
            [[ -n $nic ]] && say "on $nic: its address is --host-ipv4-addr's (default $addr)"
            say "try: ${client[*]}${client:+ }memcstat --servers=$addr:11211"
            say "     $reefctl --socket $sock shards mc0   (also: ports, stats, connections, app mc0 app.stats)"
            break
        fi
        sleep 0.5
    done
    local rc=0
    wait "$reefd_pid" || rc=$?
    # reefd ended by itself (not through the trap): the dataplane must not outlive it unnoticed.
    "$reefctl" --socket "$sock" --timeout 5 stop mc0 >/dev/null 2>&1 || true
    [[ -n $ns ]] && remove_demo_net
    return "$rc"
}

# --- dispatch -----------------------------------------------------------------------------------

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        run) cmd_run "$@" ;;
        test) cmd_test "$@" ;;
        bench) cmd_bench "$@" ;;
        build) cmd_build "$@" ;;
        deps) cmd_deps "$@" ;;
        _stage) "stage_$1" ;;  # internal: one test stage, run by cmd_test in a fresh shell
        "" | help | -h | --help) usage ;;
        *)
            printf 'dev.sh: unknown command "%s"\n\n' "$cmd" >&2
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
