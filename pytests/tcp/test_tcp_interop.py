"""Interop of Reef's native TCP with the Linux kernel's (issue 6 "Interop", issue 9): a dataplane
on net_af_packet in one namespace, the kernel's TCP in another (kernel_tcp.py, curl), a veth pair
between them, 198.18.0.1 (Reef) and 198.18.0.2 (kernel).

- the kernel connects to reef-echo and sends 100 MiB while reading the echo: both directions
  byte-exact (SHA-256 of what was sent and what came back);
- the same with 2% loss each way (nftables in the kernel's namespace; `tc netem` with reordering
  too where the kernel has sch_netem);
- Reef connects out: reef-loadgen on the native stack against the kernel's echo server, 100 MiB
  each way, every response checked by the loadgen and hashed by the server;
- curl against reef-httpd; memccapable (libmemcached-tools) against reef-memcached on two shards;
- the control agent's `stack.connections` lists the kernel's connection as `ss` would.
"""

import json
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tcp_env import DUT_IP, PEER_IP, native_args
from dataplane_util import run

pytestmark = pytest.mark.needs_root

HERE = Path(__file__).resolve().parent
MIB = 1 << 20


def kernel_client(kernel_peer, python3, nbytes, port=7, timeout=150):
    r = subprocess.run(kernel_peer.argv(python3, HERE / "kernel_tcp.py", "client", DUT_IP, port, nbytes),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"kernel client failed ({r.returncode}): {r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_echo(res, nbytes):
    assert res["sent"] == nbytes
    assert res["received"] == nbytes, res
    assert res["received_sha256"] == res["sent_sha256"], res


def add_loss(kernel_peer, one_in=50):
    """Drop one packet in `one_in` at random, both ways, in the kernel's namespace (before its TCP
    sees an incoming one, after it sent an outgoing one)."""
    ns = ["ip", "netns", "exec", kernel_peer.netns, "nft"]
    run(*ns, "add", "table", "inet", "rfloss")
    run(*ns, "add chain inet rfloss in { type filter hook prerouting priority 0 ; }")
    run(*ns, "add chain inet rfloss out { type filter hook output priority 0 ; }")
    for chain in ("in", "out"):
        run(*ns, f"add rule inet rfloss {chain} ip protocol tcp numgen random mod {one_in} == 0 drop")


def has_netem(kernel_peer):
    r = run("ip", "netns", "exec", kernel_peer.netns, "tc", "qdisc", "add", "dev", kernel_peer.veth.peer, "root",
            "netem", "delay", "1ms", "reorder", "10%", "50%", check=False)
    return r.returncode == 0


@pytest.mark.slow
def test_kernel_client_100mib_each_way(kernel_peer, start_on_wire, python3):
    dut = start_on_wire("echo")
    res = kernel_client(kernel_peer, python3, 100 * MIB)
    check_echo(res, 100 * MIB)
    assert dut.alive()


@pytest.mark.slow
def test_kernel_client_with_loss(kernel_peer, start_on_wire, python3):
    dut = start_on_wire("echo")
    add_loss(kernel_peer, 50)
    res = kernel_client(kernel_peer, python3, 20 * MIB, timeout=170)
    check_echo(res, 20 * MIB)
    assert dut.alive()


@pytest.mark.slow
def test_kernel_client_with_reordering(kernel_peer, start_on_wire, python3):
    if not has_netem(kernel_peer):
        pytest.skip("this kernel has no sch_netem (tc qdisc netem): reordering cannot be injected")
    dut = start_on_wire("echo")
    res = kernel_client(kernel_peer, python3, 20 * MIB, timeout=170)
    check_echo(res, 20 * MIB)
    assert dut.alive()


def test_many_short_kernel_connections(kernel_peer, start_on_wire, python3):
    dut = start_on_wire("echo")
    script = ("import socket\n"
              "for i in range(200):\n"
              f"    s = socket.create_connection(('{DUT_IP}', 7), timeout=10)\n"
              "    m = b'msg %d ' % i * 50\n"
              "    s.sendall(m)\n"
              "    got = b''\n"
              "    while len(got) < len(m):\n"
              "        got += s.recv(65536)\n"
              "    assert got == m, (i, got[:40])\n"
              "    s.close()\n"
              "print('ok')\n")
    r = subprocess.run(kernel_peer.argv(python3, "-c", script), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    assert dut.alive()


def _reef_connects_out(kernel_peer, processes, reef_binary, python3, veth_pair, nbytes, loss):
    loadgen = reef_binary("apps/loadgen/reef-loadgen")
    helptext = subprocess.run([str(loadgen), "--help"], capture_output=True, text=True).stdout
    if "--dpdk-pmd" not in helptext or "--host-ipv4-addr" not in helptext:
        pytest.skip("reef-loadgen is built on app_template, not reef::app: it has no native stack "
                    "(--network-stack native, --dpdk-pmd) to connect out with")
    server = processes.start(kernel_peer.argv(python3, HERE / "kernel_tcp.py", "server", 9000))
    server.wait_for(r'"listening"', timeout=20)
    if loss:
        add_loss(kernel_peer, 50)
    size = 64 * 1024
    argv = ["ip", "netns", "exec", veth_pair.netns, loadgen,
            *native_args(veth_pair.dp), "--server", f"{PEER_IP}:9000", "--protocol", "tcp", "--connections", "1",
            "--request-size", str(size), "--pipeline", "4", "--requests", str(nbytes // size), "--timeout", "60",
            "--warmup", "0", "--json"]
    lg = processes.start(argv)
    rc = lg.wait(timeout=170)
    assert rc == 0, lg.output
    line = next(ln for ln in lg.lines() if ln.startswith("{"))
    summary = json.loads(line)
    assert summary.get("requests", summary.get("stats", {}).get("requests")) in (nbytes // size, None), summary
    # The server saw every byte, once, and the connection ended cleanly.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and '"received_sha256"' not in server.output:
        time.sleep(0.1)
    done = [json.loads(ln) for ln in server.lines() if '"received_sha256"' in ln]
    assert done and done[-1]["received"] == nbytes, server.output
    assert "error" not in server.output, server.output


@pytest.mark.slow
def test_reef_connects_out_to_kernel_server(kernel_peer, processes, reef_binary, python3, veth_pair):
    _reef_connects_out(kernel_peer, processes, reef_binary, python3, veth_pair, 100 * MIB, loss=False)


@pytest.mark.slow
def test_reef_connects_out_with_loss(kernel_peer, processes, reef_binary, python3, veth_pair):
    _reef_connects_out(kernel_peer, processes, reef_binary, python3, veth_pair, 20 * MIB, loss=True)


def test_curl_against_httpd(kernel_peer, start_on_wire):
    dut = start_on_wire("httpd")
    for _ in range(5):
        r = subprocess.run(kernel_peer.argv("curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                                            f"http://{DUT_IP}/api/status"), capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and r.stdout == "200", (r.stdout, r.stderr)
    assert dut.alive()


@pytest.mark.parametrize("smp", [1, 2])
def test_memccapable_against_memcached_on_the_native_stack(kernel_peer, start_on_wire, smp):
    dut = start_on_wire("memcached", smp=smp)
    r = subprocess.run(kernel_peer.argv("memccapable", "-h", DUT_IP, "-p", "11211", "-t", "10"), capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert "[FAIL]" not in out, out
    assert out.count("[pass]") == 54, out
    assert r.returncode == 0, out
    assert dut.alive()


def _rpc(path, method, params=None):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(15)
        s.connect(str(path))
        req = {"jsonrpc": "2.0", "id": 1, "method": method}
        if params is not None:
            req["params"] = params
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk, f"agent closed the connection after {buf!r}"
            buf += chunk
    return json.loads(buf)


def test_stack_connections_lists_the_kernels_connection(kernel_peer, start_on_wire, python3):
    with tempfile.TemporaryDirectory(prefix="reef-sc-") as d:
        ctl = Path(d) / "echo.sock"
        dut = start_on_wire("echo", smp=2, ctl_socket=ctl)
        # The kernel opens a connection, checks one echo, and keeps it open until told to stop.
        holder = subprocess.Popen(kernel_peer.argv(python3, "-c", (
            "import socket, sys\n"
            f"s = socket.create_connection(('{DUT_IP}', 7), timeout=10)\n"
            "s.sendall(b'ping'); assert s.recv(16) == b'ping'\n"
            "print(s.getsockname()[1], flush=True)\n"
            "sys.stdin.read()\n")), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(holder.stdout.readline())
            res = _rpc(ctl, "stack.connections")["result"]
            mine = [c for c in res["connections"] if c["remote"] == f"{PEER_IP}:{port}"]
            assert len(mine) == 1, res
            c = mine[0]
            assert c["local"] == f"{DUT_IP}:7" and c["state"] == "ESTABLISHED", c
            assert c["shard"] in (0, 1) and c["mss"] > 0 and c["bytes_received"] == 4 and c["bytes_acked"] <= 4, c
            assert res["count"] == len(res["connections"])
            # Filters: by state and by shard; a state that does not exist is invalid params.
            est = _rpc(ctl, "stack.connections", {"state": "ESTABLISHED"})["result"]["connections"]
            assert any(x["remote"] == c["remote"] for x in est)
            assert _rpc(ctl, "stack.connections", {"state": "TIME_WAIT"})["result"]["count"] == 0
            other = _rpc(ctl, "stack.connections", {"shard": 1 - c["shard"]})["result"]["connections"]
            assert all(x["remote"] != c["remote"] for x in other)
            err = _rpc(ctl, "stack.connections", {"state": "ESTABLISHD"})["error"]
            assert err["code"] == -32602 and "ESTABLISHD" in err["message"], err
        finally:
            holder.stdin.close()
            holder.wait(timeout=15)
        # After the kernel closed, the dataplane's end is gone or in TIME_WAIT/LAST_ACK/CLOSED.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            res = _rpc(ctl, "stack.connections", {"state": "ESTABLISHED"})["result"]
            if res["count"] == 0:
                break
            time.sleep(0.1)
        assert res["count"] == 0, res
        assert dut.alive()
