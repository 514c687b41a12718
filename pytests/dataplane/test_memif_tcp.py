"""Native TCP between two Reef processes over net_memif, in both memif layouts the benchmark uses
(tests/bench/run_tcp_memif.sh): reef-echo as the copying memif server, and reef-echo as memif's
zero-copy client, whose peer reads and writes reef-echo's own mbufs (only the first memseg list
may then go out without a copy: dpdk_device::may_zero_copy). reef-loadgen's echo generator
checks every byte of every answer, so a descriptor pointing at the wrong memory shows as errors.

Zero-copy needs hugepages (memory with a file descriptor, --single-file-segments): as root, the
fixture reserves a few 2 MiB pages and mounts a private hugetlbfs for the test, and restores both.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from dataplane_util import exit_summary

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
SERVER_MAC = "02:52:45:46:10:01"
CLIENT_MAC = "02:52:45:46:10:02"
NATIVE = ["--network-stack", "native", "--dpdk-pmd", "--netmask-ipv4-addr", "255.254.0.0", "--gw-ipv4-addr", "",
          "--smp", "1", "--idle-policy", "sleep", "--ctl-socket", "none", "--dpdk-mbufs-per-shard", "4095"]
PAGES_FILE = Path("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
PAGES_NEEDED = 64  # reef-echo's pools and heap with 4095 mbufs fit in a few dozen 2 MiB pages


@pytest.fixture
def hugepage_dir(tmp_path):
    """A private hugetlbfs with at least PAGES_NEEDED free 2 MiB pages reserved for the test."""
    if os.geteuid() != 0:
        pytest.skip("memif zero-copy needs hugepages, and reserving them needs root")
    if not PAGES_FILE.exists():
        pytest.skip(f"this kernel has no 2 MiB hugepages ({PAGES_FILE} is missing)")
    old = int(PAGES_FILE.read_text())
    free_file = PAGES_FILE.with_name("free_hugepages")
    want = old + max(0, PAGES_NEEDED - int(free_file.read_text()))
    if want != old:
        PAGES_FILE.write_text(str(want))
    d = tmp_path / "huge"
    d.mkdir()
    mounted = False
    try:
        if int(free_file.read_text()) < PAGES_NEEDED:
            pytest.skip(f"could not reserve {PAGES_NEEDED} free 2 MiB hugepages (memory too fragmented?)")
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(d)], check=True)
        mounted = True
        yield d
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], check=False)
        if want != old:
            PAGES_FILE.write_text(str(old))


@pytest.fixture
def loadgen_bin(reef_binary):
    return reef_binary("apps/loadgen/reef-loadgen")


def memif_vdev(role, sock, mac, zero_copy=False):
    return f"net_memif0,role={role},{'zero-copy=yes,' if zero_copy else ''}socket={sock},socket-abstract=no,mac={mac}"


def run_pair(processes, echo_bin, loadgen_bin, server_args, client_args, client_first=False):
    """reef-echo on the native stack and reef-loadgen's echo generator against it (2 s, 2
    connections of pipelined 64 KiB requests); returns (loadgen JSON, reef-echo exit summary,
    reef-echo output). The memif server's port must have started before its client starts: with
    `client_first` that is reef-loadgen, whose ARP requests are retried until reef-echo answers."""
    echo_argv = [echo_bin, *NATIVE, *server_args, "--host-ipv4-addr", SERVER_IP, "--address", "0.0.0.0", "--port",
                 "7", "--udp-port", "0"]
    loadgen_argv = [loadgen_bin, *NATIVE, *client_args, "--host-ipv4-addr", CLIENT_IP, "--server", f"{SERVER_IP}:7",
                    "--connections", "2", "--request-size", "65536", "--pipeline", "4", "--warmup", "0.5",
                    "--duration", "2", "--timeout", "10", "--json"]
    if client_first:
        loadgen = processes.start(loadgen_argv)
        # memif's handshake fails when the client connects before the server's port has started
        # (and a DPDK memif client does not try again).
        loadgen.wait_for(r"DPDK port \S+ \(\S+\) started", timeout=60)
        echo = processes.start(echo_argv)
    else:
        echo = processes.start(echo_argv)
        echo.wait_for(r"reef-echo listening on", timeout=60)
        loadgen = processes.start(loadgen_argv)
    rc = loadgen.wait(timeout=120)
    assert rc == 0, f"reef-loadgen failed ({rc}):\n{loadgen.output}\n--- reef-echo:\n{echo.output}"
    lines = [l for l in loadgen.lines() if l.startswith("{")]
    assert lines, loadgen.output
    echo.stop()
    return json.loads(lines[-1]), exit_summary(echo.output), echo.output


def check_echo(j, summary, output):
    assert j["errors"] == 0, j
    assert j["connections_up"] == 2, j
    # Each answer is checked byte for byte by the generator; at least some megabytes crossed.
    assert j["bytes_received"] >= 8 * 65536, j
    shard = summary["shards"].get(0)
    assert shard is not None, output
    assert shard["rx"] > 0 and shard["tx"] > 0, shard
    assert shard["tx-dropped"] == 0, shard


def test_echo_over_memif_with_the_server_copying(processes, echo_bin, loadgen_bin, tmp_path):
    sock = tmp_path / "memif.sock"
    j, summary, output = run_pair(processes, echo_bin, loadgen_bin,
                                  ["--no-huge", "--vdev", memif_vdev("server", sock, SERVER_MAC)],
                                  ["--no-huge", "--vdev", memif_vdev("client", sock, CLIENT_MAC)])
    check_echo(j, summary, output)


def test_echo_over_memif_with_the_server_as_zero_copy_client(processes, echo_bin, loadgen_bin, tmp_path,
                                                             hugepage_dir):
    sock = tmp_path / "memif.sock"
    j, summary, output = run_pair(
        processes, echo_bin, loadgen_bin,
        ["--huge-dir", str(hugepage_dir), "--dpdk-args", "--single-file-segments", "--vdev",
         memif_vdev("client", sock, SERVER_MAC, zero_copy=True)],
        ["--no-huge", "--vdev", memif_vdev("server", sock, CLIENT_MAC)], client_first=True)
    check_echo(j, summary, output)


def test_zero_copy_echo_over_memif_with_the_server_as_zero_copy_client(processes, echo_bin, loadgen_bin, tmp_path,
                                                                       hugepage_dir):
    # reef-echo --zero-copy sends its answers from the received frames, which a memif zero-copy
    # client receives into its own mbufs, in the region it shares: those fragments are the ones
    # dpdk_device::may_zero_copy considers, and attached as external buffers they crashed DPDK
    # 22.11's memif zero-copy TX.
    sock = tmp_path / "memif.sock"
    j, summary, output = run_pair(
        processes, echo_bin, loadgen_bin,
        ["--zero-copy", "--huge-dir", str(hugepage_dir), "--dpdk-args", "--single-file-segments", "--vdev",
         memif_vdev("client", sock, SERVER_MAC, zero_copy=True)],
        ["--no-huge", "--vdev", memif_vdev("server", sock, CLIENT_MAC)], client_first=True)
    check_echo(j, summary, output)


def test_zero_copy_echo_over_memif_with_the_server_copying(processes, echo_bin, loadgen_bin, tmp_path):
    sock = tmp_path / "memif.sock"
    j, summary, output = run_pair(processes, echo_bin, loadgen_bin,
                                  ["--zero-copy", "--no-huge", "--vdev", memif_vdev("server", sock, SERVER_MAC)],
                                  ["--no-huge", "--vdev", memif_vdev("client", sock, CLIENT_MAC)])
    check_echo(j, summary, output)
