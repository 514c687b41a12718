"""Addresses and dataplane arguments of the TCP wire tests (a module of its own so tests can import
them: `from conftest import ...` finds whichever suite's conftest.py was imported first)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "dataplane"))

from dataplane_util import QUIET  # noqa: E402

DUT_IP = "198.18.0.1"
PEER_IP = "198.18.0.2"
PEER_MAC = "02:00:c6:12:00:02"
NETMASK = "255.255.0.0"


def native_args(iface, smp=1, ctl_socket="none"):
    return ["--smp", str(smp), *QUIET, "--network-stack", "native", "--host-ipv4-addr", DUT_IP,
            "--netmask-ipv4-addr", NETMASK, "--gw-ipv4-addr", "", "--dpdk-pmd", "--no-huge", "--vdev",
            f"net_af_packet0,iface={iface}", "--ctl-socket", str(ctl_socket)]
