"""The README's main job: `scripts/dev.sh run` starts reefd, which launches the memcached dataplane
from the embedded default config; a real memcached client gets answers; reefctl sees the dataplane
through reefd's socket; SIGTERM to dev.sh stops the dataplane and reefd (checked by their PIDs)."""

import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memcached_call(port, request, timeout=5.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while not data.endswith(b"END\r\n") and not data.endswith(b"STORED\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def alive(pid):
    """True while the process exists and is not a zombie (an orphan's zombie may linger where PID 1
    does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_dev_sh_run_starts_reefd_and_memcached_and_stops_both(reef_build_dir, processes, tmp_path):
    if reef_build_dir != (REPO_ROOT / "build").resolve():
        pytest.skip(f"scripts/dev.sh run uses build/, and this run tests {reef_build_dir}")
    tcp, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    run_dir = tmp_path / "run"
    env = {"REEF_SKIP_DEPS": "1", "REEF_RUN_DIR": str(run_dir)}
    p = processes.start([REPO_ROOT / "scripts/dev.sh", "run", "--port", str(tcp), "--udp-port", str(udp),
                         "--metrics-port", "0"], env=env)
    p.wait_for(r"reefd: listening on", timeout=300)  # a fresh build may run first
    deadline = time.monotonic() + 60
    reply = b""
    while time.monotonic() < deadline:
        try:
            reply = memcached_call(tcp, b"set main-job 0 0 5\r\nhello\r\n")
            break
        except OSError:
            time.sleep(0.2)
    assert reply == b"STORED\r\n", f"{reply!r}\n{p.output}"
    assert memcached_call(tcp, b"get main-job\r\n") == b"VALUE main-job 0 5\r\nhello\r\nEND\r\n"

    reefctl = REPO_ROOT / "build/ctl/reefctl"
    r = subprocess.run([reefctl, "--socket", run_dir / "reefd.sock", "--json", "dataplanes"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"mc0"' in r.stdout and '"running"' in r.stdout, r.stdout
    dp_pid = json.loads((run_dir / "mc0.pid").read_text())["pid"]
    reefd_pid = int(subprocess.run(["pgrep", "-P", str(p.pid), "-x", "reefd"], capture_output=True,
                                   text=True).stdout.split()[0])
    assert alive(dp_pid) and alive(reefd_pid)

    p.signal(signal.SIGTERM)
    assert p.wait(timeout=60) == 0, p.output
    deadline = time.monotonic() + 15
    while (alive(dp_pid) or alive(reefd_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(dp_pid), f"the memcached dataplane (pid {dp_pid}) outlived the main job\n{p.output}"
    assert not alive(reefd_pid), f"reefd (pid {reefd_pid}) outlived the main job\n{p.output}"
