"""The README's main job: `scripts/dev.sh run` starts reefd, which launches the memcached dataplane
from the embedded default config; a real memcached client gets answers (and Prometheus metrics
come back); reefctl sees the dataplane through reefd's socket; SIGTERM to dev.sh stops the
dataplane and reefd (checked by their PIDs) and removes what it created.

Three ways: posix (REEF_MAIN_JOB=posix, the kernel's sockets on 127.0.0.1), native (the default
as root: Reef's TCP/IP over net_af_packet on a veth pair, the client in the demo namespace), and
`--nic VDEV` (a port the user names: here a veth pair the test makes, the client in its own
namespace)."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT = r"""
import socket, sys, urllib.request
host, port, metrics = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def call(req, end):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(req)
        data = b""
        while not data.endswith(end):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
assert call(b"set main-job 0 0 5\r\nhello\r\n", b"\r\n") == b"STORED\r\n"
assert call(b"get main-job\r\n", b"END\r\n") == b"VALUE main-job 0 5\r\nhello\r\nEND\r\n"
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(b"\x00\x07\x00\x00\x00\x01\x00\x00get main-job\r\n", (host, port))
assert u.recv(2048) == b"\x00\x07\x00\x00\x00\x01\x00\x00VALUE main-job 0 5\r\nhello\r\nEND\r\n"
if metrics != "0":
    body = urllib.request.urlopen(f"http://{host}:{metrics}/metrics", timeout=5).read().decode()
    assert "reef_reactor_tasks_processed_total" in body, body[:200]
print("ok")
"""


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    """True while the process exists and is not a zombie (an orphan's zombie may linger where PID 1
    does not reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def netns_exists(name):
    return name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def run(*argv):
    subprocess.run(argv, check=True, capture_output=True, text=True)


@pytest.fixture
def user_port():
    """A veth pair: `dp` in this namespace for the dataplane, the other end in a namespace of its
    own with 198.18.0.2/15 for the client; removed afterwards."""
    ns = f"rfmn{os.getpid() % 100000}"
    dp = f"{ns}-d"
    try:
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", dp, "type", "veth", "peer", "name", f"{ns}-c")
        run("ip", "link", "set", f"{ns}-c", "netns", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", ns, "addr", "add", "198.18.0.2/15", "dev", f"{ns}-c")
        run("ip", "-n", ns, "link", "set", f"{ns}-c", "up")
        run("sysctl", "-qw", f"net.ipv6.conf.{dp}.disable_ipv6=1")
        run("ip", "link", "set", dp, "up")
        for pre in ([], ["ip", "netns", "exec", ns]):
            iface = dp if not pre else f"{ns}-c"
            subprocess.run([*pre, "ethtool", "-K", iface, "tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro",
                            "off"], capture_output=True)
        yield ns, dp
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", dp], capture_output=True)


@pytest.mark.parametrize("mode", ["posix", "native", "nic"])
def test_dev_sh_run_starts_reefd_and_memcached_and_stops_both(reef_build_dir, processes, tmp_path, mode, request):
    if reef_build_dir != (REPO_ROOT / "build").resolve():
        pytest.skip(f"scripts/dev.sh run uses build/, and this run tests {reef_build_dir}")
    if mode != "posix" and os.geteuid() != 0:
        pytest.skip("the native main job makes a network namespace and a veth pair: needs root")
    run_dir = tmp_path / "run"
    env = {"REEF_SKIP_DEPS": "1", "REEF_RUN_DIR": str(run_dir), "REEF_MAIN_JOB": mode}
    if mode == "posix":
        tcp = free_port(socket.SOCK_STREAM)
        args = ["--port", str(tcp), "--udp-port", str(tcp), "--metrics-port", str(free_port(socket.SOCK_STREAM))]
        host, prefix = "127.0.0.1", []
    elif mode == "native":
        ns = f"rfmj{os.getpid() % 100000}"
        env["REEF_DEMO_NETNS"] = ns
        tcp, args, host, prefix = 11211, [], "198.18.0.1", ["ip", "netns", "exec", ns]
    else:
        ns, dp = request.getfixturevalue("user_port")
        tcp, args, host, prefix = 11211, ["--nic", f"net_af_packet0,iface={dp}"], "198.18.0.1", ["ip", "netns", "exec", ns]
    metrics = args[-1] if mode == "posix" else "9180"
    p = processes.start([REPO_ROOT / "scripts/dev.sh", "run", *args], env=env)
    p.wait_for(r"mc0 serves memcached", timeout=300)  # a fresh build may run first

    deadline = time.monotonic() + 30
    while True:
        r = subprocess.run([*prefix, "/usr/bin/python3", "-c", CLIENT, host, str(tcp), metrics], capture_output=True,
                           text=True, timeout=60)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 0 and r.stdout.strip() == "ok", f"{r.stderr}\n{p.output}"

    reefctl = REPO_ROOT / "build/ctl/reefctl"
    r = subprocess.run([reefctl, "--socket", run_dir / "reefd.sock", "--json", "dataplanes"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"mc0"' in r.stdout and '"running"' in r.stdout, r.stdout
    status = subprocess.run([reefctl, "--socket", run_dir / "mc0.sock", "--json", "status"], capture_output=True,
                            text=True, timeout=30)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["stack"] == ("posix" if mode == "posix" else "native"), status.stdout
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
    if mode == "native":
        assert not netns_exists(env["REEF_DEMO_NETNS"]), "the demo namespace outlived the main job"


@pytest.mark.parametrize("args, message", [
    (["--nic", "bogus"], "--nic bogus: not a PCI address"),
    (["--nic"], "--nic needs a PCI address"),
])
def test_dev_sh_run_names_a_bad_nic(reef_build_dir, tmp_path, args, message):
    if reef_build_dir != (REPO_ROOT / "build").resolve():
        pytest.skip(f"scripts/dev.sh run uses build/, and this run tests {reef_build_dir}")
    if os.geteuid() != 0:
        pytest.skip("--nic runs the native main job: needs root")
    r = subprocess.run([REPO_ROOT / "scripts/dev.sh", "run", *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "REEF_SKIP_DEPS": "1", "REEF_RUN_DIR": str(tmp_path / "run")})
    assert r.returncode != 0 and message in r.stderr, r.stderr
