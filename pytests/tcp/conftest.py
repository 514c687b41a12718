"""Fixtures of the native-TCP wire tests: a Reef dataplane (reef-echo by default, reef-httpd or
reef-loadgen when a test needs the dataplane to close first or to connect out) on the native stack
over net_af_packet, on the dataplane end of a veth pair in a namespace of its own
(pytests/dataplane/dataplane_util.py makes the pair and documents the layout).

- `tcp_dut` (conformance): the test's end of the pair stays here with no address; a scripted
  `tcp_peer.Peer` with its own MAC and IPv4 address talks to the dataplane through it.
- `kernel_peer` (interop): the test's end goes into a second namespace with an address, so the
  kernel's own TCP is the peer; commands run there with `ip netns exec`.

Addresses are in 198.18.0.0/15 (dataplane 198.18.0.1/16, peer 198.18.0.2). Every process is
stopped by PID (`processes`), every namespace and interface removed, whatever the outcome.
"""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dataplane"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataplane_util import (VethPair, missing_capabilities, run, unique_name)  # noqa: E402
from tcp_peer import Peer  # noqa: E402

from tcp_env import DUT_IP, PEER_IP, PEER_MAC, native_args  # noqa: E402

APPS = {
    "echo": ("apps/echo/reef-echo", ["--port", "7", "--udp-port", "0"], r"reef-echo listening on"),
    "httpd": ("apps/httpd/reef-httpd", ["--port", "80"], r"reef-httpd listening on"),
    "memcached": ("apps/memcached/reef-memcached", ["--port", "11211", "--udp-port", "11211"],
                  r"reef-memcached listening on"),
}


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: needs CAP_NET_ADMIN and CAP_NET_RAW (namespaces, veth, raw sockets)")
    config.addinivalue_line("markers", "slow: takes tens of seconds (kept in CI)")


def pytest_collection_modifyitems(config, items):
    missing = missing_capabilities()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs {' and '.join(missing)} (network namespaces, veth pairs, raw sockets): "
                            "run as root")
    for item in items:
        if "needs_root" in item.keywords and "pytests/tcp/" in str(item.fspath):
            item.add_marker(skip)


def no_offloads(iface, netns=None):
    """Kernel offloads off on a veth end: af_packet would hand the dataplane super-frames (GSO)
    and segments whose checksum is left to hardware that does not exist."""
    pre = ["ip", "netns", "exec", netns] if netns else []
    run(*pre, "ethtool", "-K", iface, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off",
        check=False)


class Dut:
    """A started dataplane: process, mac, ip, the veth pair, and (conformance) the peer."""

    def __init__(self, proc, mac, veth):
        self.proc = proc
        self.mac = mac
        self.ip = DUT_IP
        self.veth = veth
        self.peer = None

    def alive(self):
        return self.proc.proc.poll() is None


@pytest.fixture
def veth_pair():
    pair = VethPair()
    try:
        pair.create()
        no_offloads(pair.peer)
        no_offloads(pair.dp, pair.netns)
    except Exception:
        pair.remove()
        raise
    yield pair
    pair.remove()


def start_app(processes, reef_binary, veth, app="echo", smp=1, extra=(), ctl_socket="none"):
    rel, args, ready = APPS[app]
    argv = ["ip", "netns", "exec", veth.netns, reef_binary(rel), *native_args(veth.dp, smp, ctl_socket), *args,
            *extra]
    p = processes.start(argv)
    p.wait_for(ready, timeout=60)
    m = re.search(r"DPDK port \S+ \(([0-9a-f:]{17})\) started", p.output)
    assert m, p.output
    return Dut(p, m.group(1), veth)


@pytest.fixture
def tcp_dut(processes, reef_binary, veth_pair):
    """tcp_dut(app="echo", smp=1, extra=()) -> Dut with .peer, a tcp_peer.Peer (closed in
    teardown). The dataplane must still run at the end of the test."""
    made = []

    def start(app="echo", smp=1, extra=()):
        d = start_app(processes, reef_binary, veth_pair, app, smp, extra)
        d.peer = Peer(veth_pair.peer, PEER_MAC, PEER_IP, d.mac, d.ip)
        made.append(d)
        return d

    yield start
    for d in made:
        d.peer.close()
    for d in made:
        assert d.alive(), f"the dataplane exited during the test:\n{d.proc.output}"


class KernelSide:
    """The test's veth end in a namespace of its own with PEER_IP: the kernel's TCP is the peer."""

    def __init__(self, veth):
        self.veth = veth
        self.netns = unique_name("rfkn")
        self.ip = PEER_IP

    def create(self):
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "set", self.veth.peer, "netns", self.netns)
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        run("ip", "-n", self.netns, "addr", "add", f"{PEER_IP}/16", "dev", self.veth.peer)
        run("ip", "-n", self.netns, "link", "set", self.veth.peer, "up")
        no_offloads(self.veth.peer, self.netns)

    def remove(self):
        # The veth end goes back to nobody: deleting the namespace deletes it (and its pair).
        run("ip", "netns", "del", self.netns, check=False)

    def argv(self, *cmd):
        return ["ip", "netns", "exec", self.netns, *map(str, cmd)]


@pytest.fixture
def kernel_peer(veth_pair):
    k = KernelSide(veth_pair)
    try:
        k.create()
    except Exception:
        k.remove()
        raise
    yield k
    k.remove()


@pytest.fixture
def start_on_wire(processes, reef_binary, veth_pair):
    """start_on_wire(app, smp=1, extra=(), ctl_socket="none") -> Dut: a dataplane on the pair, no
    scripted peer."""

    def start(app="echo", smp=1, extra=(), ctl_socket="none"):
        return start_app(processes, reef_binary, veth_pair, app, smp, extra, ctl_socket)

    return start


@pytest.fixture(scope="session")
def python3():
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
