#!/usr/bin/env bash
# The container test (issue 12): builds docker/Dockerfile with podman, runs the image the way
# docker/compose.yaml's `dev` profile does, and checks it from outside.
#
#   scripts/container_test.sh [OPTIONS]
#
#   --build-dir DIR   host build whose binaries the `runtime-prebuilt` target copies in
#                     (default: $REEF_BUILD_DIR or build); they must exist already
#   --from-source     build the full multi-stage image instead (target `runtime`: Reef compiled
#                     inside the build stage); prints how long the build took
#   --base-only       only make (or reuse) the cached debian:12 base image, then exit
#   --keep-image      keep the image it built (tag reef:test) instead of removing it
#   --image NAME      check an image built earlier (e.g. by --from-source --keep-image) instead
#                     of building one; it is left in place
#   -h, --help        this text
#
# Steps: (1) a `debian:12` base image made with debootstrap from the Debian mirror apt uses,
# cached as a tarball in $REEF_CONTAINER_CACHE (default /var/cache/reef-container) and in podman's
# store, reused when present; (2) `podman build` of docker/Dockerfile, unchanged; (3) bad input: a
# missing, a malformed and a wrong config, missing variables, nic mode without hugepages -> the
# container exits non-zero naming the file or the problem; (4) the dev profile, its settings read
# from docker/compose.yaml: reefd supervising reef-memcached on the native stack over
# net_af_packet, --no-huge, NET_ADMIN/NET_RAW/IPC_LOCK only, on a podman network in 198.19.0.0/16
# the test creates; the processes run as `reef` with exactly those capabilities; (5) memcached
# clients on the host against the dataplane's own address: the text protocol over TCP and UDP
# (Python) and libmemcached's memccp/memccat/memcstat when installed; (6) `reefctl status` in a
# second container through the control-socket volume (as root and as reef; nobody is refused),
# and the image's HEALTHCHECK; (7) posix mode fully non-root (--user 10001, no capabilities) and
# from a config file only root may read; (8) `podman stop`: the entrypoint stops the dataplane
# cleanly and exits 0; (9) everything it created (containers, volumes, network, the image unless
# --keep-image) is removed, also on failure. The base image and podman's layer cache are kept:
# they are the cache.
#
# Podman settings of this kind of machine go in a containers.conf passed with CONTAINERS_CONF:
# runtime "runc" (crun fails on some cgroup v1 layouts) and default_ulimits with nofile and nproc
# limits the host allows (without CAP_SYS_RESOURCE the defaults cannot be set), plus the cgroupfs
# manager and the file events logger where systemd is not running. Needs root (the test network
# and the host-side client), python3-yaml, ethtool; the host's libmemcached-tools are optional.
#
# Exit status: 0 pass, 1 failure, 77 skipped (no container engine that works here; the reason is
# printed on a line starting with "SKIP:").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUILD_DIR=${REEF_BUILD_DIR:-build}
FROM_SOURCE=0
BASE_ONLY=0
KEEP_IMAGE=0
IMAGE=""
CACHE=${REEF_CONTAINER_CACHE:-/var/cache/reef-container}
MIRROR=${REEF_DEBIAN_MIRROR:-}
SUITE=bookworm

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
say() { printf '==> container_test: %s\n' "$*" >&2; }
die() { printf 'container_test: FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'SKIP: container test: %s\n' "$*" >&2; exit 77; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --build-dir) BUILD_DIR=$2; shift 2 ;;
        --build-dir=*) BUILD_DIR=${1#*=}; shift ;;
        --from-source) FROM_SOURCE=1; shift ;;
        --base-only) BASE_ONLY=1; shift ;;
        --keep-image) KEEP_IMAGE=1; shift ;;
        --image) IMAGE=$2; shift 2 ;;
        --image=*) IMAGE=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) printf 'container_test: unknown option %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done

# --- engine -------------------------------------------------------------------------------------

command -v podman >/dev/null 2>&1 ||
    skip "podman is not installed (the test drives podman; Docker users: see docs/deploy.md)"
[[ $(id -u) == 0 ]] ||
    skip "needs root: the dev profile's test network and the host-side client need it (rootless podman cannot attach the host to a container network)"

WORK=$(mktemp -d /tmp/reef-container-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CONF=$WORK/containers.conf
# Limits a container may have here: what this shell may have (without CAP_SYS_RESOURCE nothing can
# be raised above it), and for nproc at most the 32768 podman gives conmon, the parent of the
# container's init.
nofile=$(ulimit -Hn)
[[ $nofile == unlimited ]] && nofile=1048576
nproc=$(ulimit -Hu)
[[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768
{
    printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc"
    printf '[engine]\nruntime = "runc"\n'
    if [[ ! -d /run/systemd/system ]]; then
        # Without systemd as init, podman's systemd cgroup manager and journald logger fail.
        printf 'cgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
    fi
} >"$CONF"
export CONTAINERS_CONF=$CONF

if ! out=$(podman info 2>&1); then
    rm -rf "$WORK"
    skip "podman info fails: ${out##*$'\n'}"
fi

# --- base image ---------------------------------------------------------------------------------

debian_mirror() {
    # The mirror apt already uses (deb822 sources first, then one-line sources).
    local m
    m=$(awk '/^URIs:/ && $2 ~ /debian\/?$/ && $2 !~ /security/ { print $2; exit }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [[ -z $m ]]; then
        m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

make_base() {
    local tarball=$CACHE/debian-12-rootfs.tar
    if podman image exists docker.io/library/debian:12; then
        say "base image debian:12: cached in podman's store"
        return 0
    fi
    mkdir -p "$CACHE"
    if [[ ! -s $tarball ]]; then
        command -v debootstrap >/dev/null 2>&1 ||
            skip "no debian:12 image, no registry, and debootstrap is not installed to make one"
        local mirror=${MIRROR:-$(debian_mirror)} rootfs
        say "making the debian:12 base with debootstrap ($SUITE from $mirror; cached in $CACHE)"
        rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
        if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
            tail -n 20 "$WORK/debootstrap.log" >&2
            rm -rf "$rootfs"
            die "debootstrap failed (log above)"
        fi
        # What the official image has and debootstrap does not: apt sources in deb822 form with
        # the updates and security suites, and no package caches.
        rm -f "$rootfs/etc/apt/sources.list"
        cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${mirror%/}
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian*}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    else
        say "base image debian:12: importing the cached $tarball"
    fi
    podman import --change 'CMD ["bash"]' "$tarball" docker.io/library/debian:12 >/dev/null
}

make_base
# A first container proves that the engine works here (runtime, cgroups, limits).
if ! out=$(podman run --rm --network none docker.io/library/debian:12 true 2>&1); then
    rm -rf "$WORK"
    skip "podman cannot run a container here: $(grep -m1 -i error <<<"$out")"
fi
if [[ $BASE_ONLY == 1 ]]; then
    rm -rf "$WORK"
    exit 0
fi

# --- cleanup ------------------------------------------------------------------------------------

TAG=localhost/reef:test-$$
NAME=reef-ct-$$
NET=""
VOL=$NAME-run
CREATED_CTRS=()
cleanup() {
    local rc=$?
    set +e
    for c in "${CREATED_CTRS[@]}"; do
        podman rm -f -v -t 5 "$c" >/dev/null 2>&1
    done
    podman volume rm -f "$VOL" >/dev/null 2>&1
    [[ -n $NET ]] && podman network rm -f "$NET" >/dev/null 2>&1
    if [[ -z $IMAGE ]]; then
        if [[ $KEEP_IMAGE == 1 ]]; then
            podman tag "$TAG" localhost/reef:test >/dev/null 2>&1
        fi
        # --no-prune: the untagged parent layers are podman's layer cache (runtime-base with its
        # apt packages, the build stage); the next run reuses them instead of downloading again.
        podman rmi -f --no-prune "$TAG" >/dev/null 2>&1
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- image --------------------------------------------------------------------------------------

BUILD_ARGS=(--format docker --pull=never --layers -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore
    -t "$TAG")
if [[ -n $IMAGE ]]; then
    podman image exists "$IMAGE" || die "no image $IMAGE"
    TAG=$IMAGE
    say "checking the image $IMAGE (no build)"
elif [[ $FROM_SOURCE == 1 ]]; then
    say "podman build, target runtime (Reef compiled in the build stage; this takes a while)"
    start=$(date +%s)
    podman build "${BUILD_ARGS[@]}" --target runtime . >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "podman build --target runtime failed (log above)"; }
    say "full multi-stage build from source: $(($(date +%s) - start)) s"
else
    # The programs of the host build, stripped of their debug info (they are several times
    # smaller), laid out as they are installed.
    PRE=$WORK/prebuilt
    mkdir -p "$PRE/usr/bin" "$PRE/usr/sbin" "$PRE/usr/share/bash-completion/completions"
    for p in ctl/reefd:usr/sbin ctl/reefctl:usr/bin apps/memcached/reef-memcached:usr/bin; do
        [[ -x $BUILD_DIR/${p%%:*} ]] ||
            die "$BUILD_DIR/${p%%:*} is missing: build it first (ninja -C $BUILD_DIR ctl/reefd ctl/reefctl apps/memcached/reef-memcached), or use --from-source"
    done
    for p in ctl/reefd:usr/sbin ctl/reefctl:usr/bin apps/memcached/reef-memcached:usr/bin apps/echo/reef-echo:usr/bin \
        apps/httpd/reef-httpd:usr/bin apps/loadgen/reef-loadgen:usr/bin apps/iotune/iotune:usr/bin \
        apps/demo/reef-demo:usr/bin; do
        src=$BUILD_DIR/${p%%:*}
        [[ -x $src ]] && strip --strip-debug -o "$PRE/${p#*:}/${src##*/}" "$src"
    done
    cp ctl/reefctl/reefctl.bash-completion "$PRE/usr/share/bash-completion/completions/reefctl"
    say "podman build, target runtime-prebuilt (programs from $BUILD_DIR)"
    start=$(date +%s)
    podman build "${BUILD_ARGS[@]}" --target runtime-prebuilt --build-context prebuilt="$PRE" . \
        >"$WORK/build.log" 2>&1 ||
        { tail -n 40 "$WORK/build.log" >&2; die "podman build --target runtime-prebuilt failed (log above)"; }
    say "image built in $(($(date +%s) - start)) s"
fi

# --- bad input ----------------------------------------------------------------------------------

IMG=$TAG
# run_expect_fail CODE PATTERN... -- PODMAN-RUN-ARGS: the container must exit with CODE and print
# every PATTERN (extended regular expressions) on stderr.
run_expect_fail() {
    local code=$1 pats=() out rc=0
    shift
    while [[ $1 != -- ]]; do pats+=("$1"); shift; done
    shift
    out=$(podman run --rm --network none "$@" 2>&1) || rc=$?
    out=$(grep -v -e 'systemd' -e 'syslog' <<<"$out" || true)
    [[ $rc == "$code" ]] || die "expected exit $code, got $rc from: podman run $* -- output: $out"
    for p in "${pats[@]}"; do
        grep -Eq -- "$p" <<<"$out" || die "expected /$p/ in the output of: podman run $* -- output: $out"
    done
    say "bad input ok (exit $code): $(tail -n 1 <<<"$out" | cut -c 1-150)"
}

printf '{"dataplanes": [\n  {"name": "mc0", "binary": "/usr/bin/reef-memcached"\n' >"$WORK/malformed.json"
printf '{"dataplanes": [{"name": "mc0", "binary": "/usr/bin/reef-memcached", "smp": "two"}]}\n' >"$WORK/badfield.json"
chmod 0644 "$WORK"/*.json
run_expect_fail 2 '/etc/reef/reefd.json' 'no such file' -- "$IMG"
run_expect_fail 2 '/etc/reef/other.json' 'no such file' -- -e REEF_CONFIG=/etc/reef/other.json "$IMG"
run_expect_fail 2 '/etc/reef/reefd.json' 'malformed JSON' 'line [0-9]+' -- \
    -v "$WORK/malformed.json:/etc/reef/reefd.json:ro,Z" "$IMG"
run_expect_fail 2 '/etc/reef/reefd.json' "'smp'" -- -v "$WORK/badfield.json:/etc/reef/reefd.json:ro,Z" "$IMG"
run_expect_fail 2 'REEF_IPV4' -- -e REEF_MODE=dev -e REEF_APP=memcached "$IMG"
# nic mode without hugepages in the container (none mounted here, whatever the host has).
run_expect_fail 1 'hugepages' 'nr_hugepages|/dev/hugepages' 'docs/deploy.md' -- \
    -e REEF_MODE=nic -e REEF_APP=memcached -e REEF_PCI=0000:00:00.0 -e REEF_IPV4=198.18.0.10/24 "$IMG"

# --- dev profile --------------------------------------------------------------------------------

command -v ethtool >/dev/null 2>&1 || die "ethtool is needed on the host (apt-get install ethtool)"
# A /24 of 198.19.0.0/16 that no route of this host covers yet.
subnet=""
for _ in $(seq 1 50); do
    n=$((RANDOM % 250 + 2))
    routes=$(ip -4 route show to match "198.19.$n.1" | grep -v '^default' || true)
    if [[ -z $routes ]]; then
        subnet=198.19.$n
        break
    fi
done
[[ -n $subnet ]] || die "no free /24 in 198.19.0.0/16 for the test network"
NET=$NAME-net
podman network create --subnet "$subnet.0/24" --gateway "$subnet.1" "$NET" >/dev/null
BRIDGE=$(podman network inspect -f '{{.NetworkInterface}}' "$NET")
podman volume create "$VOL" >/dev/null

# docker/compose.yaml's memcached-dev service as `podman run` options, read from the file so the
# test runs what the compose file says: capabilities, sysctls, environment, the socket volume.
# Only the addresses move to the test's own subnet (same host parts, same prefix).
mapfile -d '' RUN_OPTS < <(/usr/bin/python3 - docker/compose.yaml "$subnet" "$VOL" <<'PYEOF'
import ipaddress, sys, yaml

path, subnet, vol = sys.argv[1:]
svc = yaml.safe_load(open(path))["services"]["memcached-dev"]
opts = []
for cap in svc.get("cap_add", []):
    opts += ["--cap-add", cap]
for k, v in (svc.get("sysctls") or {}).items():
    opts += ["--sysctl", f"{k}={v}"]
if svc.get("privileged") or svc.get("devices"):
    sys.exit("compose.yaml: the dev profile must not need privileged mode or devices")

def moved(ip):
    host = int(ipaddress.ip_address(ip)) & 0xFF
    return f"{subnet}.{host}"

for k, v in (svc.get("environment") or {}).items():
    if k == "REEF_IPV4":
        addr, prefix = v.split("/")
        v = f"{moved(addr)}/{prefix}"
    opts += ["-e", f"{k}={v}"]
for m in svc.get("volumes", []):
    src, dst = m.split(":")[:2]
    if src == "reef-run":
        opts += ["-v", f"{vol}:{dst}"]
for net in (svc.get("networks") or {}).values():
    if net and "ipv4_address" in net:
        opts += ["--ip", moved(net["ipv4_address"])]
sys.stdout.write("".join(o + "\0" for o in opts))
PYEOF
)
[[ ${#RUN_OPTS[@]} -gt 0 ]] || die "could not read the dev profile from docker/compose.yaml"
say "dev profile from docker/compose.yaml: ${RUN_OPTS[*]}"
DP_IP=$(printf '%s\n' "${RUN_OPTS[@]}" | sed -n 's|^REEF_IPV4=\(.*\)/.*|\1|p')
DP_NAME=$(printf '%s\n' "${RUN_OPTS[@]}" | sed -n 's|^REEF_NAME=||p')
DP_PORT=$(printf '%s\n' "${RUN_OPTS[@]}" | sed -n 's|^REEF_ARGS=.*-p \([0-9]*\).*|\1|p')
[[ -n $DP_IP && -n $DP_NAME && -n $DP_PORT ]] ||
    die "docker/compose.yaml's memcached-dev lacks REEF_IPV4, REEF_NAME or a -p port in REEF_ARGS"
CREATED_CTRS+=("$NAME")
podman run -d --name "$NAME" --network "$NET" "${RUN_OPTS[@]}" "$IMG" >/dev/null \
    2> >(grep -v -e systemd -e syslog >&2)
# The compose file's one host step (see there): checksums of frames towards the dataplane.
ethtool -K "$BRIDGE" tx off >/dev/null

dump_logs() {
    say "container logs:"
    podman logs "$NAME" 2>&1 | tail -n 30 >&2
    podman exec "$NAME" reefctl logs "$DP_NAME" -n 30 2>&1 | tail -n 40 >&2 || true
}

# wait_running CONTAINER DATAPLANE: until reefd in CONTAINER reports DATAPLANE running (60 s).
wait_running() {
    local ctr=$1 dp=$2 state="" _
    for _ in $(seq 1 60); do
        state=$(podman exec "$ctr" sh -c 'reefctl --json dataplanes 2>/dev/null |
            jq -r --arg n "$1" ".dataplanes[] | select(.name == \$n) | .state"' sh "$dp" 2>/dev/null || true)
        [[ $state == running ]] && return 0
        [[ $(podman inspect -f '{{.State.Running}}' "$ctr" 2>/dev/null) == true ]] ||
            { podman logs "$ctr" 2>&1 | tail -n 20 >&2; die "container $ctr exited"; }
        sleep 1
    done
    podman logs "$ctr" 2>&1 | tail -n 20 >&2
    podman exec "$ctr" reefctl logs "$dp" -n 30 2>&1 | tail -n 40 >&2 || true
    die "dataplane $dp in $ctr is not running after 60 s (state: ${state:-none})"
}
wait_running "$NAME" "$DP_NAME"
say "dev profile up: reefd and $DP_NAME (reef-memcached, native stack on net_af_packet) at $DP_IP"

# reefd and the dataplane run as reef, with only the capabilities of the compose file.
ids=$(podman exec "$NAME" sh -c 'for p in /proc/[0-9]*; do
        c=$(tr "\0" " " <"$p/cmdline" 2>/dev/null); case "$c" in reefd*|/usr/bin/reef-memcached*)
        echo "$(awk "/^Uid:/ {print \$2}" "$p/status") $(awk "/^CapEff:/ {print \$2}" "$p/status")";; esac; done')
[[ -n $ids ]] || die "no reefd or reef-memcached process found in the container"
while read -r uid capeff; do
    [[ $uid == 10001 ]] || die "a Reef process runs as uid $uid, not reef (10001)"
    # NET_ADMIN (12), NET_RAW (13), IPC_LOCK (14) and nothing else.
    [[ $((16#$capeff)) == $(((1 << 12) | (1 << 13) | (1 << 14))) ]] ||
        die "a Reef process has capabilities $capeff, not exactly NET_ADMIN, NET_RAW, IPC_LOCK"
done <<<"$ids"
say "reefd and reef-memcached run as reef with NET_ADMIN, NET_RAW, IPC_LOCK only"

# --- a memcached client from the host -----------------------------------------------------------

/usr/bin/python3 - "$DP_IP" "$DP_PORT" <<'PYEOF' || { dump_logs; die "memcached text protocol over TCP from the host failed"; }
import socket, sys, time

addr = (sys.argv[1], int(sys.argv[2]))
deadline = time.time() + 20
while True:
    try:
        s = socket.create_connection(addr, timeout=5)
        break
    except OSError as e:
        if time.time() > deadline:
            sys.exit(f"cannot connect to {addr}: {e}")
        time.sleep(0.5)
s.settimeout(10)
f = s.makefile("rwb")

def call(req, end):
    f.write(req)
    f.flush()
    out = b""
    while not out.endswith(end):
        line = f.readline()
        if not line:
            sys.exit(f"connection closed after {out!r}")
        out += line
    return out

value = b"x" * 3000  # more than one segment's worth
assert call(b"set greeting 5 0 %d\r\n%s\r\n" % (len(value), value), b"\r\n") == b"STORED\r\n"
got = call(b"get greeting\r\n", b"END\r\n")
assert got == b"VALUE greeting 5 %d\r\n%s\r\nEND\r\n" % (len(value), value), got[:80]
assert call(b"set n 0 0 1\r\n7\r\n", b"\r\n") == b"STORED\r\n"
assert call(b"incr n 35\r\n", b"\r\n") == b"42\r\n"
assert call(b"delete n\r\n", b"\r\n") == b"DELETED\r\n"
assert call(b"get n\r\n", b"END\r\n") == b"END\r\n"
assert call(b"version\r\n", b"\r\n").startswith(b"VERSION ")
print("text protocol over TCP: set/get/incr/delete/version ok")

# UDP (-U in the compose file): memcached's 8-byte frame header, then a text request.
import struct
assert call(b"set small 0 0 2\r\nhi\r\n", b"\r\n") == b"STORED\r\n"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(2)
for attempt in range(5):
    u.sendto(struct.pack("!HHHH", 7 + attempt, 0, 1, 0) + b"get small\r\n", addr)
    try:
        data, _ = u.recvfrom(2048)
    except socket.timeout:
        continue
    rid, seq, count, _ = struct.unpack("!HHHH", data[:8])
    assert (rid, seq, count) == (7 + attempt, 0, 1), (rid, seq, count)
    assert data[8:] == b"VALUE small 0 2\r\nhi\r\nEND\r\n", data
    print("text protocol over UDP: get ok")
    break
else:
    sys.exit("no UDP answer from memcached")
PYEOF
if command -v memccp >/dev/null 2>&1; then
    # libmemcached's own client tools (libmemcached-tools), over the binary protocol too.
    printf 'from a file\n' >"$WORK/item"
    memccp --servers="$DP_IP:$DP_PORT" "$WORK/item" >/dev/null || { dump_logs; die "memccp failed"; }
    [[ $(memccat --servers="$DP_IP:$DP_PORT" item) == "from a file" ]] || die "memccat did not read back the item"
    [[ $(memccat --binary --servers="$DP_IP:$DP_PORT" item) == "from a file" ]] ||
        die "memccat --binary did not read back the item"
    # (grep -q on a pipe would fail the pipeline under pipefail when it stops reading early)
    grep -q curr_items <<<"$(memcstat --servers="$DP_IP:$DP_PORT")" || die "memcstat shows no curr_items"
    say "libmemcached client (memccp, memccat, memcstat) ok"
else
    say "libmemcached-tools not installed: the Python text-protocol client alone checked memcached"
fi

# --- reefctl from a second container, through the socket volume ----------------------------------

for user in 0:0 10001:10001; do
    out=$(podman run --rm --network none --user "$user" -v "$VOL:/run/reef" "$IMG" reefctl status 2>&1 |
        grep -v -e systemd -e syslog) || die "reefctl status (as $user) in a second container failed: $out"
    grep -Eq "^$DP_NAME +running" <<<"$out" || die "reefctl status (as $user) does not list $DP_NAME running: $out"
done
say "reefctl status in a second container (as root and as reef) lists $DP_NAME running"
out=$(podman run --rm --network none -v "$VOL:/run/reef" "$IMG" reefctl stats "$DP_NAME" 2>&1) ||
    die "reefctl stats $DP_NAME failed: $out"
# A uid outside root, reef and its group is refused by reefd (SO_PEERCRED).
rc=0
out=$(podman run --rm --network none --user 65534:65534 -v "$VOL:/run/reef" "$IMG" reefctl status 2>&1) || rc=$?
[[ $rc != 0 ]] || die "reefctl as nobody was not refused: $out"
say "reefctl as nobody refused (exit $rc)"
podman healthcheck run "$NAME" >/dev/null 2>&1 || die "the image's HEALTHCHECK (reefctl status) fails"
say "HEALTHCHECK passes"

# --- posix mode: no privilege at all, and a config file only root may read ---------------------

# memcached_in CONTAINER: a set and a get over the container's loopback, with bash's /dev/tcp.
memcached_in() {
    podman exec "$1" timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/11211
        printf "set k 0 0 2\r\nok\r\nget k\r\n" >&3
        while read -r line <&3; do printf "%s\n" "$line"; [[ $line == END* ]] && break; done | tr -d "\r"'
}
printf '{"dataplanes": [{"name": "mc1", "binary": "/usr/bin/reef-memcached", "smp": 1,
  "args": ["-p", "11211", "-l", "127.0.0.1", "-m", "64"]}]}\n' >"$WORK/private.json"
chmod 0600 "$WORK/private.json"
CREATED_CTRS+=("$NAME-user" "$NAME-file")
podman run -d --name "$NAME-user" --network none --user 10001:10001 --cap-drop all \
    -e REEF_APP=memcached -e REEF_NAME=mc1 -e REEF_SMP=1 -e REEF_ARGS="-p 11211 -l 127.0.0.1 -m 64" \
    "$IMG" >/dev/null 2> >(grep -v -e systemd -e syslog >&2)
podman run -d --name "$NAME-file" --network none -v "$WORK/private.json:/etc/reef/reefd.json:ro,Z" \
    "$IMG" >/dev/null 2> >(grep -v -e systemd -e syslog >&2)
for c in "$NAME-user" "$NAME-file"; do
    wait_running "$c" mc1
    out=$(memcached_in "$c" 2>&1) || die "memcached over loopback in $c failed: $out"
    [[ $out == $'STORED\nVALUE k 0 2\nok\nEND' ]] || die "memcached over loopback in $c answered: $out"
done
uid=$(podman exec "$NAME-user" sh -c 'for p in /proc/[0-9]*; do
        case "$(tr "\0" " " <"$p/cmdline" 2>/dev/null)" in /usr/bin/reef-memcached*) awk "/^Uid:/ {print \$2}" "$p/status";; esac
    done')
[[ $uid == 10001 ]] || die "posix mode with --user 10001: reef-memcached runs as uid '$uid'"
grep -q 'not readable by reef: reefd reads a copy' <<<"$(podman logs "$NAME-file" 2>&1)" ||
    die "a 0600 config file: the entrypoint did not say that reefd reads a copy"
say "posix mode: fully non-root (--user 10001, no capabilities) and from a root-only config file: ok"

# --- stop ---------------------------------------------------------------------------------------

podman stop -t 30 "$NAME" >/dev/null 2>&1
code=$(podman inspect -f '{{.State.ExitCode}}' "$NAME")
logs=$(podman logs "$NAME" 2>&1)
grep -q 'stopping: the dataplanes first' <<<"$logs" || die "the entrypoint did not stop the dataplanes: $logs"
[[ $code == 0 ]] || die "the container exited with $code after podman stop: $(tail -n 5 <<<"$logs")"
# reefd keeps the dataplane's output in the run directory, which is the volume.
vol_dir=$(podman volume inspect -f '{{.Mountpoint}}' "$VOL")
if ! grep -qs 'reef-memcached stopped' "$vol_dir/$DP_NAME".*.log; then
    tail -n 5 "$vol_dir/$DP_NAME".*.log >&2
    printf '%s\n' "$logs" | tail -n 5 >&2
    die "reef-memcached did not stop cleanly (no 'reef-memcached stopped' in its log)"
fi
say "podman stop: dataplane stopped cleanly, container exit 0"
say "PASS"
