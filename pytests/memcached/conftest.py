"""Fixtures of the reef-memcached tests: the binary, a started server on loopback, and (for the
UDP fast path) the dataplane helpers of pytests/dataplane (veth pair in a namespace, raw sockets)."""

import os
import socket
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "dataplane"))

from dataplane_util import missing_capabilities, raw_ports, veth  # noqa: E402,F401  (fixtures by name)

from mc_util import MEMCACHED, QUIET, free_port  # noqa: E402,F401


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_root: needs CAP_NET_ADMIN and CAP_NET_RAW (namespaces, veth, raw sockets)")


def pytest_collection_modifyitems(config, items):
    missing = missing_capabilities()
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"needs {' and '.join(missing)}: run as root")
    for item in items:
        if "needs_root" in item.keywords and "memcached" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def memcached_bin(reef_binary):
    return reef_binary(MEMCACHED)


class Server:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port

    def connect(self, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s


@pytest.fixture
def start_memcached(processes, memcached_bin):
    """start_memcached(*args, smp=2, udp=True) -> Server listening on 127.0.0.1 (TCP, and UDP on the
    same port unless udp=False), ready; stopped by PID in teardown."""

    def start(*args, smp=2, udp=True):
        port = free_port()
        argv = [memcached_bin, "--smp", str(smp), *QUIET, "-l", "127.0.0.1", "-p", str(port)]
        if udp:
            argv += ["-U", str(port)]
        p = processes.start(argv + list(args))
        p.wait_for(r"reef-memcached listening on", timeout=60)
        return Server(p, port)

    return start
