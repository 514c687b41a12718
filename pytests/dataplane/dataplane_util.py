"""Helpers and fixtures (conftest.py exposes the fixtures) for the dataplane tests: network
namespaces, veth pairs, raw Ethernet I/O, and reef-echo on a DPDK virtual device.

Layout of a veth test: the pair's "dp" end is moved into a namespace of its own, where reef-echo
runs (`ip netns exec`, which execs, so the PID is reef-echo's) with `--dpdk-pmd --no-huge --vdev
net_af_packet0,iface=<dp end>`; the "peer" end stays in the test's namespace, where the test sends
and receives raw frames with an AF_PACKET socket. Neither end has an IPv4 address, so the kernel
never answers the test's frames itself (only the dataplane does); IPv6 is disabled on both ends so
that no router/neighbour solicitations show up. Names are unique per test (the PID and a counter)
and everything is removed in teardown, whatever the outcome.

Marker `needs_root` (conftest.py): tests that create namespaces and interfaces or use raw sockets
need CAP_NET_ADMIN and CAP_NET_RAW; without them they are skipped saying which is missing.
"""

import itertools
import os
import re
import socket
import struct
import subprocess
import time

import pytest
from netutil import free_port  # noqa: F401  (re-exported to the suite's tests)

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

# Gentle on the shared two-core machine: shards sleep when idle instead of polling.
QUIET = ["--idle-policy", "sleep"]

_counter = itertools.count()


def _cap_eff():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_capabilities():
    """Names of the capabilities these tests need and the process lacks."""
    caps = _cap_eff()
    missing = []
    if not caps & (1 << 12):
        missing.append("CAP_NET_ADMIN")
    if not caps & (1 << 13):
        missing.append("CAP_NET_RAW")
    return missing


def run(*argv, check=True):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def unique_name(prefix):
    """An interface/namespace name unique to this test run (at most 15 characters)."""
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"[:15]


def mac_of(iface, netns=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-o", "link", "show", iface]
    m = re.search(r"link/ether ([0-9a-f:]{17})", run(*cmd).stdout)
    assert m, f"no MAC for {iface}"
    return m.group(1)


class VethPair:
    """`dp` (in namespace `netns`, for the dataplane) and `peer` (here, for the test's raw socket)."""

    def __init__(self):
        self.netns = unique_name("rfns")
        self.dp = unique_name("rfdp")
        self.peer = unique_name("rfpe")
        self._made_ns = False
        self._made_link = False

    def create(self):
        run("ip", "netns", "add", self.netns)
        self._made_ns = True
        run("ip", "link", "add", self.peer, "type", "veth", "peer", "name", self.dp)
        self._made_link = True
        for iface in (self.peer, self.dp):
            run("sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1", check=False)
        run("ip", "link", "set", self.dp, "netns", self.netns)
        run("ip", "-n", self.netns, "link", "set", self.dp, "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        run("ip", "link", "set", self.peer, "up")
        self.dp_mac = mac_of(self.dp, self.netns)
        self.peer_mac = mac_of(self.peer)

    def remove(self):
        if self._made_link:
            run("ip", "link", "del", self.peer, check=False)  # takes the other end with it
        if self._made_ns:
            run("ip", "netns", "del", self.netns, check=False)


@pytest.fixture
def veth():
    """A VethPair, created for the test and always removed."""
    pair = VethPair()
    try:
        pair.create()
    except Exception:
        pair.remove()
        raise
    yield pair
    pair.remove()


# ---- frames

def mac_bytes(mac):
    return bytes(int(x, 16) for x in mac.split(":"))


def ip_bytes(ip):
    return socket.inet_aton(ip)


def inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp_frame(dst_mac, src_mac, src_ip, dst_ip, sport, dport, payload, ttl=64):
    """An Ethernet/IPv4/UDP frame with valid checksums."""
    udp_len = 8 + len(payload)
    ip_hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0x1234, 0x4000, ttl, 17, 0, ip_bytes(src_ip),
                         ip_bytes(dst_ip))
    ip_hdr = ip_hdr[:10] + struct.pack("!H", inet_checksum(ip_hdr)) + ip_hdr[12:]
    pseudo = ip_bytes(src_ip) + ip_bytes(dst_ip) + struct.pack("!BBH", 0, 17, udp_len)
    udp_hdr = struct.pack("!HHHH", sport, dport, udp_len, 0)
    csum = inet_checksum(pseudo + udp_hdr + payload) or 0xFFFF
    udp_hdr = udp_hdr[:6] + struct.pack("!H", csum)
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + ip_hdr + udp_hdr + payload


def parse_udp_frame(frame):
    """dict of the frame's Ethernet/IPv4/UDP fields and checksum verdicts, or None if it is not
    an IPv4 UDP frame."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0xF) * 4
    ip = frame[14:14 + ihl]
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[9] != 17 or len(frame) < 14 + total:
        return None
    udp = frame[14 + ihl:14 + total]
    sport, dport, ulen, ucsum = struct.unpack("!HHHH", udp[:8])
    src_ip, dst_ip = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    return {
        "dst_mac": ":".join(f"{b:02x}" for b in frame[0:6]),
        "src_mac": ":".join(f"{b:02x}" for b in frame[6:12]),
        "src_ip": src_ip,
        "dst_ip": dst_ip,
        "sport": sport,
        "dport": dport,
        "payload": bytes(udp[8:ulen]),
        "ip_csum_ok": inet_checksum(bytes(ip)) == 0,
        "udp_csum_ok": ucsum == 0 or inet_checksum(pseudo + bytes(udp[:ulen])) == 0,
    }


class RawPort:
    """An AF_PACKET socket on one interface: send() whole frames, collect() received ones (frames
    this socket or the kernel sent out are ignored)."""

    def __init__(self, iface):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((iface, 0))

    def send(self, frame):
        self.sock.send(frame)

    def collect(self, want, timeout, match=lambda f: True):
        """Received frames for which match(frame) holds, until `want` of them or `timeout` s."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            if match(data):
                got.append(data)
        return got

    def close(self):
        self.sock.close()


@pytest.fixture
def raw_ports():
    """raw_ports(iface) -> RawPort, closed in teardown."""
    opened = []

    def open_port(iface):
        p = RawPort(iface)
        opened.append(p)
        return p

    yield open_port
    for p in opened:
        p.close()


# ---- reef-echo on a DPDK vdev


@pytest.fixture
def echo_bin(reef_binary):
    return reef_binary("apps/echo/reef-echo")


@pytest.fixture
def start_dataplane(processes, echo_bin):
    """start_dataplane(vdev, netns=None, smp=1, udp_port=7, extra=(), env=None) -> (process, MAC):
    reef-echo with --dpdk-pmd --no-huge --vdev <vdev> --udp-fast-path, in `netns` when given; waits
    for its ready line. Stopped by PID in teardown (the `processes` fixture). Its TCP listener and
    UDP socket (posix stack: the kernel) bind 0.0.0.0 on port 7 in a namespace of its own, else on
    a free TCP port and `udp_port` (the caller picks a free one)."""

    def start(vdev, netns=None, smp=1, udp_port=7, extra=(), env=None):
        argv = ([] if netns is None else ["ip", "netns", "exec", netns]) + [
            echo_bin, "--smp", str(smp), *QUIET, "--port", str(free_port() if netns is None else 7), "--udp-port",
            str(udp_port), "--dpdk-pmd", "--no-huge", "--vdev", vdev, "--udp-fast-path", *extra
        ]
        p = processes.start(argv, env=env)
        p.wait_for(r"reef-echo listening on", timeout=60)
        m = re.search(r"DPDK port \S+ \(([0-9a-f:]{17})\) started", p.output)
        assert m, p.output
        return p, m.group(1)

    return start


def exit_summary(output):
    """The exit log of reef-echo: fast path totals and per-shard device counters."""
    fp = re.search(r"fast path: (\d+) frames answered, (\d+) malformed, (\d+) passed on", output)
    shards = {}
    for m in re.finditer(r"reef-echo shard (\d+): (.*)", output):
        fields = m.group(2).split()
        shards[int(m.group(1))] = {fields[i]: int(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    return {
        "answered": int(fp.group(1)) if fp else None,
        "malformed": int(fp.group(2)) if fp else None,
        "passed": int(fp.group(3)) if fp else None,
        "shards": shards,
    }
