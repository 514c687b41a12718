"""Harness for tests that put a Reef dataplane on a wire and talk to it with Scapy and the kernel.

Reusable by any suite (pytests/tcp imports it): add this directory to sys.path, then
`from wire_util import *` the pieces (or import wire_util's fixtures in your conftest.py as
pytests/wire/conftest.py does).

Layout of one test (names unique per test, everything removed in teardown whatever the outcome):

    netns <dp_ns>                         netns <peer_ns>
    [dataplane]--<dp_if> ====veth==== <peer_if>  198.18.0.1/24 (the kernel)
     198.18.0.2 (native stack)                   198.18.0.10, .11... (Scapy "hosts")

- The dataplane runs in dp_ns (`ip netns exec`, which execs: the PID is the dataplane's) on the
  veth end through DPDK's net_af_packet (`--vdev net_af_packet0,iface=<dp_if>`, one queue), or on
  a net_tap interface it creates itself in dp_ns (`vdev="tap"`: then the "peer" end is that tap
  interface, in dp_ns).
- The peer end lives in a namespace of its own with the kernel's address (198.18.0.1), so the
  kernel's ping and TCP can be used as real clients (its transmit checksum offload is off: see
  WireNet.create); IPv6 is off and forwarding is off, so the
  kernel never answers or forwards frames meant for the Scapy hosts (other addresses of the
  subnet, sharing the peer end's MAC): Scapy plays those hosts with raw frames.
- The `wire` fixture moves the test's thread into peer_ns for the duration of the test (setns),
  so everything the test opens (Scapy sockets, `socket.create_connection`, subprocesses such as
  `ping`) is on the peer side without further ceremony; teardown moves it back.

Readiness and counters go through the dataplane's control socket (docs/control-protocol.md):
`runtime.status` until it answers "running" (and the app printed its ready line), `metrics.get`
for counters (Dataplane.counter / per_shard / memory_bytes).

Using it from a test module (pytests/wire has no conftest.py on purpose: several suites do
`from conftest import NAME`, which finds whichever conftest.py pytest imported last, so a new one
would shadow theirs):

    from wire_util import dataplane, peer, wire  # noqa: F401  (fixtures, found by name)
    pytestmark = NEEDS_ROOT                       # + [pytest.mark.slow], NEEDS_HUGEPAGES...

Marks (registered in pytests/conftest.py): needs_root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN
for namespaces, veth pairs and raw sockets), needs_hugepages (free hugepages), slow. NEEDS_ROOT and
NEEDS_HUGEPAGES carry the mark and, when the capability is missing, a skip that names it.
"""

import contextlib
import ctypes
import itertools
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

# Scapy is only needed by the tests themselves; importing it costs a second, once.
from scapy.all import (ARP, ICMP, IP, TCP, UDP, AsyncSniffer, Ether, Raw, conf)  # noqa: F401

conf.verb = 0

# Gentle on the shared two-core machine: shards sleep when idle instead of polling.
QUIET = ["--idle-policy", "sleep"]

PREFIX = "198.18.0"
NETMASK = "255.255.255.0"
KERNEL_IP = f"{PREFIX}.1"
DP_IP = f"{PREFIX}.2"
HOST_IP = f"{PREFIX}.10"  # the first Scapy host; host_ip(i) gives others

ECHO = "apps/echo/reef-echo"

_counter = itertools.count()

# ------------------------------------------------------------------------------------------------
# Capabilities


def _cap_eff():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_capabilities():
    """Names of the capabilities the needs_root tests need and this process lacks."""
    caps = _cap_eff()
    need = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SYS_ADMIN": 21}
    return [name for name, bit in need.items() if not caps & (1 << bit)]


def free_hugepages():
    """Free hugepages of the default size (0 when none are reserved)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("HugePages_Free:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _marks(mark, missing_reason):
    return [mark] + ([pytest.mark.skip(reason=missing_reason)] if missing_reason else [])


_missing = missing_capabilities()
NEEDS_ROOT = _marks(pytest.mark.needs_root, _missing and (
    f"needs {' and '.join(_missing)} (network namespaces, veth pairs, raw sockets): run as root"))
NEEDS_HUGEPAGES = _marks(pytest.mark.needs_hugepages, None if free_hugepages() else (
    "needs free hugepages (HugePages_Free is 0 in /proc/meminfo): reserve some with `sysctl vm.nr_hugepages=256`"))

# ------------------------------------------------------------------------------------------------
# Commands and namespaces


def run(*argv, check=True, timeout=30):
    """Run a command; RuntimeError with its stderr when it fails and `check`."""
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def unique_name(prefix):
    """A name for an interface or namespace unique to this test run (at most 15 characters)."""
    return f"{prefix}{os.getpid() % 100000}x{next(_counter)}"[:15]


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd):
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name):
    """Run the block with the calling thread in network namespace `name` (made by `ip netns add`).
    Sockets opened inside stay in that namespace after the block; threads and processes started
    inside inherit it."""
    with open("/proc/thread-self/ns/net") as home, open(f"/var/run/netns/{name}") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def mac_of(iface, netns=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-o", "link", "show", iface]
    m = re.search(r"link/ether ([0-9a-f:]{17})", run(*cmd).stdout)
    assert m, f"no MAC for {iface}"
    return m.group(1)


def host_ip(i):
    """The address of Scapy host number i (0 = HOST_IP), in 198.18.0.10-250."""
    assert 0 <= i <= 240
    return f"{PREFIX}.{10 + i}"


class WireNet:
    """Two namespaces joined by a veth pair (see the module comment). create() builds it,
    remove() tears down what was built (idempotent)."""

    def __init__(self):
        self.dp_ns = unique_name("rwdp")
        self.peer_ns = unique_name("rwpe")
        self.dp_if = unique_name("rwd")
        self.peer_if = unique_name("rwp")
        self.dp_ip = DP_IP
        self.kernel_ip = KERNEL_IP
        self.host_ip = HOST_IP
        self.netmask = NETMASK
        self.gateway = KERNEL_IP
        self.tap_if = unique_name("rwt")
        self._made = []

    def create(self):
        run("ip", "netns", "add", self.dp_ns)
        self._made.append(("netns", self.dp_ns))
        run("ip", "netns", "add", self.peer_ns)
        self._made.append(("netns", self.peer_ns))
        run("ip", "link", "add", self.peer_if, "netns", self.peer_ns, "type", "veth", "peer", "name", self.dp_if,
            "netns", self.dp_ns)
        for ns, iface in ((self.dp_ns, self.dp_if), (self.peer_ns, self.peer_if)):
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{iface}.disable_ipv6=1", check=False)
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", check=False)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", iface, "up")
        # The kernel leaves TCP/UDP checksums of what it sends over a veth to be completed
        # (CHECKSUM_PARTIAL); an AF_PACKET reader such as DPDK's net_af_packet sees them half
        # done and the stack rightly drops them. Full checksums, and segments of one MTU, then.
        run("ip", "netns", "exec", self.peer_ns, "ethtool", "-K", self.peer_if, "tx", "off", "tso", "off", "gso",
            "off")
        # The kernel must not route what Scapy hosts receive, nor answer ICMP for them.
        run("ip", "netns", "exec", self.peer_ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        run("ip", "-n", self.peer_ns, "addr", "add", f"{self.kernel_ip}/24", "dev", self.peer_if)
        self.dp_mac = mac_of(self.dp_if, self.dp_ns)
        self.peer_mac = mac_of(self.peer_if, self.peer_ns)

    def configure_tap(self):
        """Once a dataplane made its net_tap interface `tap_if` in dp_ns: give the tap the kernel's
        address, as the veth peer end has in peer_ns (which then stays unused). Returns its MAC."""
        ns = self.dp_ns
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{self.tap_if}.disable_ipv6=1",
            check=False)
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0")
        run("ip", "netns", "exec", ns, "ethtool", "-K", self.tap_if, "tx", "off", check=False)
        run("ip", "-n", ns, "link", "set", self.tap_if, "up")
        run("ip", "-n", ns, "addr", "add", f"{self.kernel_ip}/24", "dev", self.tap_if)
        return mac_of(self.tap_if, ns)

    def remove(self):
        for kind, name in reversed(self._made):
            if kind == "netns":
                run("ip", "netns", "del", name, check=False)  # takes its interfaces with it
        self._made.clear()


# ------------------------------------------------------------------------------------------------
# Control socket


class CtlClient:
    """JSON-RPC 2.0 over the dataplane's unix socket, one object per line."""

    def __init__(self, path, timeout=15.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 1

    def call(self, method, params=None):
        """The result, or RuntimeError with the JSON-RPC error."""
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            req["params"] = params
        self.next_id += 1
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError(f"control socket closed during {method}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        resp = json.loads(line)
        if "error" in resp:
            raise RuntimeError(f"{method}: {resp['error']}")
        return resp["result"]

    def close(self):
        self.sock.close()


class Dataplane:
    """A running dataplane (see the `dataplane` fixture): its process, MAC, address and control
    socket."""

    def __init__(self, proc, ctl_path, net, mac, ip):
        self.proc = proc
        self.ctl_path = ctl_path
        self.net = net
        self.mac = mac
        self.ip = ip
        # Where the test's frames and kernel clients reach it from: the veth peer end (peer_ns),
        # or with net_tap the tap interface (dp_ns).
        self.peer_ns, self.peer_if, self.peer_mac = net.peer_ns, net.peer_if, net.peer_mac
        self._ctl = None

    @property
    def output(self):
        return self.proc.output

    def ctl(self):
        if self._ctl is None:
            self._ctl = CtlClient(self.ctl_path)
        return self._ctl

    def call(self, method, params=None):
        return self.ctl().call(method, params)

    def status(self):
        return self.call("runtime.status")

    def metrics(self, prefix=""):
        """metrics.get: the list of families (name, type, help, samples[{labels, value}])."""
        return self.call("metrics.get", {"prefix": prefix})["metrics"]

    def samples(self, name):
        """[(labels, value)] of the metric `name` (every shard)."""
        for fam in self.metrics(name):
            if fam["name"] == name:
                return [(s["labels"], s["value"]) for s in fam["samples"]]
        return []

    def counter(self, name, **labels):
        """The sum over shards (and over labels not given) of the samples of `name` whose labels
        include `labels`; 0 when there are none."""
        want = {k: str(v) for k, v in labels.items()}
        return sum(v for lb, v in self.samples(name) if all(lb.get(k) == x for k, x in want.items()))

    def per_shard(self, name, **labels):
        """{shard: value} of `name` (summed over labels not given)."""
        want = {k: str(v) for k, v in labels.items()}
        out = {}
        for lb, v in self.samples(name):
            if all(lb.get(k) == x for k, x in want.items()):
                s = int(lb["shard"])
                out[s] = out.get(s, 0) + v
        return out

    def counters(self, prefix):
        """{(name, ((label, value)...)): value} of every sample whose name starts with `prefix`:
        take two snapshots and diff them (counter_deltas)."""
        out = {}
        for fam in self.metrics(prefix):
            for s in fam["samples"]:
                out[(fam["name"], tuple(sorted(s["labels"].items())))] = s["value"]
        return out

    def device_stats(self):
        """ports.stats "totals": the device's counters summed over shards (rx_dropped_bad_length:
        frames the DPDK device layer refused before the stack, e.g. IPv4 headers whose version,
        IHL or total length cannot be right)."""
        return self.call("ports.stats")["totals"]

    def memory_bytes(self):
        """Bytes in live blocks, all shards (reef_memory_allocated_bytes)."""
        return self.counter("reef_memory_allocated_bytes")

    def alive(self):
        return self.proc.proc.poll() is None

    def close(self):
        if self._ctl:
            self._ctl.close()
            self._ctl = None


def counter_deltas(before, after):
    """{key: after - before} of the keys whose value changed (see Dataplane.counters)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def wait_until(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it is true; returns its value, or fails the test naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def dataplane_argv(binary, net, ctl_path, smp=1, vdev="af_packet", extra=()):
    """The command line of a dataplane on `net` with the native stack at net.dp_ip."""
    if vdev == "af_packet":
        vdev_arg = f"net_af_packet0,iface={net.dp_if}"
    elif vdev == "tap":
        vdev_arg = f"net_tap0,iface={net.tap_if}"
    else:
        vdev_arg = vdev
    return [
        "ip", "netns", "exec", net.dp_ns, binary, "--smp", str(smp), *QUIET, "--network-stack", "native",
        "--host-ipv4-addr", net.dp_ip, "--netmask-ipv4-addr", net.netmask, "--gw-ipv4-addr", net.gateway,
        "--dpdk-pmd", "--no-huge", "--vdev", vdev_arg, "--ctl-socket", str(ctl_path), *extra
    ]


def start_dataplane(processes, binary, net, ctl_path, smp=1, vdev="af_packet", extra=(), ready=r"listening on",
                    timeout=60.0):
    """Start a dataplane (processes.start: stopped by PID in teardown, its log printed there) and
    wait until its control socket answers runtime.status with state "running" and stack "native"
    and, when `ready` is a regex, it printed a line matching it. Returns a Dataplane; fails the
    test with the log if the process exits or is not ready within `timeout`."""
    proc = processes.start(dataplane_argv(binary, net, ctl_path, smp, vdev, extra))
    deadline = time.monotonic() + timeout
    status = None
    while status is None:
        if proc.proc.poll() is not None:
            proc.wait(5)
            pytest.fail(f"dataplane exited with {proc.proc.returncode} during start-up; output:\n{proc.output}")
        if time.monotonic() > deadline:
            pytest.fail(f"dataplane control socket {ctl_path} not answering within {timeout} s; output:\n"
                        f"{proc.output}")
        try:
            c = CtlClient(ctl_path, timeout=5)
            try:
                st = c.call("runtime.status")
            finally:
                c.close()
            if st.get("state") == "running":
                status = st
        except (OSError, ConnectionError, RuntimeError, ValueError):
            time.sleep(0.1)
    assert status["stack"] == "native", status
    if ready:
        proc.wait_for(ready, timeout=max(1.0, deadline - time.monotonic()))
    m = re.search(r"DPDK port \S+ \(([0-9a-f:]{17})\) started", proc.output)
    assert m, proc.output
    dp = Dataplane(proc, ctl_path, net, m.group(1), net.dp_ip)
    if vdev == "tap":
        dp.peer_ns, dp.peer_if, dp.peer_mac = net.dp_ns, net.tap_if, net.configure_tap()
    return dp


# ------------------------------------------------------------------------------------------------
# Scapy side


class Peer:
    """Scapy on the peer end: one L2 socket (opened in the namespace the caller is in; the `wire`
    fixture puts the test there) for sending batches and receiving, plus frame builders addressed
    to the dataplane. Frames the socket itself sent are never received back."""

    def __init__(self, iface, mac, dp_mac, dp_ip):
        self.iface = iface
        self.mac = mac
        self.dp_mac = dp_mac
        self.dp_ip = dp_ip
        self.sock = conf.L2socket(iface=iface)
        self.arp_answered = 0
        # Teach the dataplane where HOST_IP is (its replies need it); others: announce().
        self.announce(HOST_IP)

    # ---- builders
    def eth(self, **kw):
        """Ether from this end to the dataplane's MAC (override with dst=/src=/type=)."""
        kw.setdefault("dst", self.dp_mac)
        kw.setdefault("src", self.mac)
        return Ether(**kw)

    def ip(self, src=HOST_IP, **kw):
        """Ether/IP from Scapy host `src` to the dataplane."""
        kw.setdefault("dst", self.dp_ip)
        return self.eth() / IP(src=src, **kw)

    def ping(self, payload=b"", src=HOST_IP, id=0x5eef, seq=1, **ip_kw):
        return self.ip(src=src, **ip_kw) / ICMP(type=8, id=id, seq=seq) / Raw(payload)

    def udp(self, payload=b"", sport=40000, dport=7, src=HOST_IP, **ip_kw):
        return self.ip(src=src, **ip_kw) / UDP(sport=sport, dport=dport) / Raw(payload)

    def tcp(self, sport=40000, dport=7, flags="S", seq=1000, ack=0, src=HOST_IP, payload=b"", **tcp_kw):
        return self.ip(src=src) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, **tcp_kw) / Raw(payload)

    def arp_request(self, pdst=None, psrc=HOST_IP, dst="ff:ff:ff:ff:ff:ff"):
        return Ether(dst=dst, src=self.mac) / ARP(op=1, hwsrc=self.mac, psrc=psrc, hwdst="00:00:00:00:00:00",
                                                  pdst=pdst or self.dp_ip)

    # ---- I/O
    def send(self, frames):
        """Send one frame or a list of them (bytes or Scapy packets) on the one socket."""
        if not isinstance(frames, (list, tuple)):
            frames = [frames]
        for f in frames:
            self.sock.send(f)

    def drain(self):
        """Discard what was received so far."""
        while self.sock.select([self.sock], 0):
            self.sock.recv()

    def announce(self, ip, timeout=3.0):
        """Have the dataplane learn that Scapy host `ip` is at this end's MAC (an ARP request
        from `ip`, answered); fails the test when it is not answered."""
        r = self.exchange(self.arp_request(psrc=ip),
                          lambda x: ARP in x and x[ARP].op == 2 and x[ARP].pdst == ip, timeout)
        if r is None:
            pytest.fail(f"the dataplane did not answer an ARP request from {ip}")

    def _answer_arp(self, pkt):
        """Answer the dataplane's ARP requests for the Scapy hosts (198.18.0.10-250) like those
        hosts would; True if `pkt` was one."""
        if ARP not in pkt or pkt[ARP].op != 1 or pkt[ARP].psrc != self.dp_ip:
            return False
        target = pkt[ARP].pdst
        if not target.startswith(PREFIX + ".") or not 10 <= int(target.rsplit(".", 1)[1]) <= 250:
            return False
        self.sock.send(Ether(dst=pkt[ARP].hwsrc, src=self.mac) / ARP(
            op=2, hwsrc=self.mac, psrc=target, hwdst=pkt[ARP].hwsrc, pdst=pkt[ARP].psrc))
        self.arp_answered += 1
        return True

    def expect(self, match, count=1, timeout=3.0):
        """Received frames (Scapy packets) for which match(pkt) holds, until `count` or `timeout`
        seconds; returns the list (possibly shorter: the caller asserts). ARP requests of the
        dataplane for Scapy hosts met meanwhile are answered (and match() sees them too)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready = self.sock.select([self.sock], min(left, 0.2))
            if not ready:
                continue
            pkt = self.sock.recv()
            if pkt is None:
                continue
            self._answer_arp(pkt)
            if match(pkt):
                got.append(pkt)
        return got

    def expect_one(self, match, timeout=3.0):
        """The first received frame for which match(pkt) holds, or None after `timeout` s."""
        got = self.expect(match, 1, timeout)
        return got[0] if got else None

    def exchange(self, frame, match, timeout=3.0):
        """Send `frame`, return the first answer matching match(pkt) (srp1 on this socket)."""
        self.send(frame)
        return self.expect_one(match, timeout)

    def sniffer(self, lfilter=None):
        """sniffer(iface, lfilter) on this end."""
        return sniffer(self.iface, lfilter)

    def close(self):
        self.sock.close()


class Capture:
    """An AsyncSniffer running on an interface: `frames` is the list of what it captured so far
    (readable while it runs); stop() ends it."""

    def __init__(self, iface, lfilter=None):
        self.frames = []
        started = threading.Event()
        self._s = AsyncSniffer(iface=iface, lfilter=lfilter, store=False, prn=self.frames.append,
                               started_callback=started.set)
        self._s.start()
        if not started.wait(5):
            self._s.stop()
            pytest.fail(f"capture on {iface} did not start")

    def stop(self):
        if self._s.running:
            self._s.stop()
        return self.frames


def sniffer(iface, lfilter=None):
    """A started Capture on `iface` (in the calling thread's namespace): its socket is open when
    this returns, so nothing sent afterwards is missed."""
    return Capture(iface, lfilter)


# ---- matchers (predicates on received Scapy packets)


def is_arp_reply_from(ip):
    return lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == ip


def is_echo_reply(id=None, seq=None, dst=None):
    def m(p):
        if ICMP not in p or p[ICMP].type != 0:
            return False
        return (id is None or p[ICMP].id == id) and (seq is None or p[ICMP].seq == seq) and (
            dst is None or p[IP].dst == dst)
    return m


def is_udp_to(dport, dst=None):
    return lambda p: UDP in p and IP in p and p[UDP].dport == dport and (dst is None or p[IP].dst == dst) and (
        ICMP not in p)


def is_icmp_unreachable(code=None):
    return lambda p: ICMP in p and p[ICMP].type == 3 and (code is None or p[ICMP].code == code)


def with_payload(p):
    """The application bytes of a received packet (Raw, or b"")."""
    return bytes(p[Raw].load) if Raw in p else b""


# ------------------------------------------------------------------------------------------------
# Kernel side (the test runs in peer_ns: plain sockets and commands are the kernel's)


def kernel_ping(dst, count=1, size=56, timeout=3.0):
    """True if `count` ICMP echo requests of `size` payload bytes sent by the kernel's raw ICMP
    socket (the kernel writes the IP header, as ping does) to `dst` were each answered with the
    same payload."""
    ident = os.getpid() & 0xFFFF
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout)
        for seq in range(1, count + 1):
            payload = bytes((seq + i) & 0xFF for i in range(size))
            msg = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload)
            msg[2:4] = struct.pack("!H", _inet_checksum(bytes(msg)))
            s.sendto(bytes(msg), (dst, 0))
            deadline = time.monotonic() + timeout
            while True:
                if time.monotonic() > deadline:
                    return False
                try:
                    data, addr = s.recvfrom(65536)
                except socket.timeout:
                    return False
                ihl = (data[0] & 0xF) * 4
                icmp = data[ihl:]
                if addr[0] == dst and len(icmp) >= 8 and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (
                        ident, seq):
                    if icmp[8:] != payload:
                        return False
                    break
    return True


def _inet_checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def kernel_tcp_echo(dst, port=7, payload=b"hello wire\n", timeout=10.0):
    """One TCP echo round trip with the kernel's TCP; returns the bytes read back."""
    with socket.create_connection((dst, port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def kernel_udp_echo(dst, port=7, payload=b"hello udp", timeout=5.0):
    """One UDP echo round trip with the kernel's UDP; returns the datagram read back (or None)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (dst, port))
        try:
            return s.recv(65536)
        except socket.timeout:
            return None


def assert_serving(dp, peer=None):
    """The dataplane still answers: alive, ARP (when a Peer is given), kernel ping, TCP and UDP
    echo through the kernel. Every case ends with it."""
    assert dp.alive(), f"dataplane died; output:\n{dp.output}"
    if peer is not None:
        r = peer.exchange(peer.arp_request(), is_arp_reply_from(dp.ip), timeout=3)
        assert r is not None and r[ARP].hwsrc == dp.mac, "no ARP reply after the test"
    assert kernel_ping(dp.ip), "kernel ping unanswered after the test"
    assert kernel_tcp_echo(dp.ip) == b"hello wire\n", "TCP echo failed after the test"
    assert kernel_udp_echo(dp.ip) == b"hello udp", "UDP echo failed after the test"


# ------------------------------------------------------------------------------------------------
# Fixtures (test modules import them by name)


@pytest.fixture
def wire():
    """A WireNet, created for the test and removed after it; the test's thread runs in its
    peer_ns meanwhile."""
    net = WireNet()
    try:
        net.create()
    except Exception:
        net.remove()
        raise
    try:
        with in_netns(net.peer_ns):
            yield net
    finally:
        net.remove()


@pytest.fixture
def dataplane(processes, reef_binary, wire, tmp_path):
    """dataplane(smp=1, extra=(), binary=ECHO, ready=r"listening on", vdev="af_packet") ->
    Dataplane: reef-echo (by default) with the native stack at wire.dp_ip on the wire, ready
    (control socket answering, app listening). Stopped by PID in teardown, its log printed.

    vdev "af_packet" (one queue on the veth), "tap" (net_tap: the thread then moves to dp_ns,
    where the tap interface is the test's side, with the kernel's address), or a --vdev string.
    DPDK 22.11's net_af_packet always joins a PACKET_FANOUT group with the DEFRAG flag: the
    kernel reassembles IPv4 fragments before the PMD sees them (and truncates datagrams above its
    frame size), so tests of Reef's own reassembly use "tap"."""
    started = []

    def start(smp=1, extra=(), binary=ECHO, ready=r"listening on", vdev="af_packet"):
        ctl = tmp_path / f"ctl{len(started)}.sock"
        dp = start_dataplane(processes, reef_binary(binary), wire, ctl, smp=smp, vdev=vdev, extra=extra, ready=ready)
        started.append(dp)
        if dp.peer_ns != wire.peer_ns:
            # net_tap: the test's side is the tap interface in dp_ns (the `wire` fixture moves
            # the thread back home in teardown).
            with open(f"/var/run/netns/{dp.peer_ns}") as ns:
                _setns(ns.fileno())
        return dp

    yield start
    for dp in started:
        dp.close()
        dp.proc.stop(grace=5.0)


@pytest.fixture
def peer(wire):
    """peer(dp) -> Peer on the wire's peer end, addressed to `dp`; closed in teardown."""
    opened = []

    def make(dp):
        p = Peer(dp.peer_if, dp.peer_mac, dp.mac, dp.ip)
        opened.append(p)
        return p

    yield make
    for p in opened:
        p.close()
