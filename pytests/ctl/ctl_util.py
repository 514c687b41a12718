"""Helpers for the control-plane tests (conftest.py makes the `reefd` fixture from them): a reefd with its own socket, run directory and state file
in a temporary directory, supervising reef-echo dataplanes on the posix stack (loopback only).

Every process is stopped by PID: reefd through the `processes` fixture, the dataplanes it launched
through their pid files (run_dir/<name>.pid) in teardown, whatever the test's outcome.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from netutil import free_port  # noqa: F401  (re-exported to the suite's tests)

ECHO = "apps/echo/reef-echo"
REEFD = "ctl/reefd"
REEFCTL = "ctl/reefctl"

# Gentle on the shared two-core machine: one shard each, sleeping when idle.
QUIET = ["--idle-policy", "sleep"]


def echo_once(port, payload=b"ping\n", timeout=5.0):
    """One TCP echo round trip to 127.0.0.1:port; returns the bytes read back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        return got


class RpcClient:
    """A line-oriented JSON-RPC client on a unix socket (the tests' own, independent of reefctl)."""

    def __init__(self, path, timeout=15.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 1

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, method, params=None):
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        self.next_id += 1
        if params is not None:
            req["params"] = params
        self.send_raw((json.dumps(req) + "\n").encode())
        return self.read_line()

    def close(self):
        self.sock.close()


def result_of(resp):
    assert "result" in resp, f"expected a result, got {resp}"
    return resp["result"]


class Reefd:
    """A reefd under test: its paths, a way to (re)start it, and reefctl/RPC helpers."""

    def __init__(self, processes, reef_binary, base):
        self.processes = processes
        self.reefd_bin = reef_binary(REEFD)
        self.reefctl_bin = reef_binary(REEFCTL)
        self.echo_bin = reef_binary(ECHO)
        self.base = Path(base)
        self.socket = self.base / "reefd.sock"
        self.run_dir = self.base / "run"
        self.state_file = self.base / "state" / "reefd.state.json"
        self.config = self.base / "reefd.json"
        self.proc = None
        self.ports = {}

    def echo_spec(self, name, **extra):
        port = free_port()
        self.ports[name] = port
        spec = {
            "name": name,
            "binary": str(self.echo_bin),
            "args": ["--address", "127.0.0.1", "--port", str(port)] + QUIET,
            "smp": 1,
            "restart": {"backoff_initial_ms": 100, "backoff_max_ms": 2000},
            "stop_timeout_ms": 5000,
        }
        spec.update(extra)
        return spec

    def write_config(self, dataplanes):
        self.config.write_text(json.dumps({
            "socket": str(self.socket),
            "run_dir": str(self.run_dir),
            "state_file": str(self.state_file),
            "dataplanes": dataplanes,
        }))

    def start(self):
        self.proc = self.processes.start([self.reefd_bin, "--config", self.config])
        self.proc.wait_for(r"reefd: listening on", timeout=30)
        return self.proc

    def wait_running(self, names, timeout=30.0):
        """Wait until every named dataplane is running and its agent answers; returns their status."""
        deadline = time.monotonic() + timeout
        while True:
            st = {d["name"]: d for d in self.list()}
            ready = all(n in st and st[n]["state"] == "running" and os.path.exists(st[n]["socket"]) for n in names)
            if ready:
                try:
                    for n in names:
                        self.rpc("call", {"dataplane": n, "method": "reef.version"})
                    return st
                except AssertionError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"dataplanes {names} not running within {timeout} s: {st}\n{self.proc.output}")
            time.sleep(0.1)

    def list(self):
        return self.rpc("dataplanes.list")["dataplanes"]

    def status(self, name):
        return {d["name"]: d for d in self.list()}[name]

    def rpc(self, method, params=None):
        c = RpcClient(self.socket)
        try:
            return result_of(c.call(method, params))
        finally:
            c.close()

    def ctl(self, *args, socket_path=None, check=None, user=None, timeout=60):
        """Run reefctl; returns the CompletedProcess. `check`: the exit code expected."""
        argv = [str(self.reefctl_bin), "--socket", str(socket_path or self.socket)] + [str(a) for a in args]
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert r.returncode == check, f"reefctl {args} exited {r.returncode}, wanted {check}:\n{r.stdout}\n{r.stderr}"
        return r

    def dataplane_pids(self):
        pids = []
        for f in self.run_dir.glob("*.pid"):
            try:
                pids.append(int(json.loads(f.read_text())["pid"]))
            except (ValueError, KeyError, OSError):
                pass
        return pids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (reaped by nobody yet) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids, grace=5.0):
    """SIGTERM each pid, then SIGKILL what is left after `grace` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


