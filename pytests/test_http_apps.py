"""reef-httpd end to end (static files, the JSON API, bad requests, SIGTERM), and the --metrics-port
endpoint every reef::app has (Prometheus text, checked with promtool when it is installed).
Every process is stopped by PID (the `processes` fixture)."""
import json
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

HTTPD = "apps/httpd/reef-httpd"
ECHO = "apps/echo/reef-echo"
QUIET = ["--ctl-socket", "none"]


def get(url, data=None, method=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def start_httpd(processes, reef_binary, root, smp=2):
    p = processes.start([reef_binary(HTTPD), "--smp", str(smp), "--address", "127.0.0.1", "--port", "0",
                         "--root", str(root), *QUIET])
    line = p.wait_for(r"reef-httpd listening on", timeout=60)[0]
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    return p, f"http://127.0.0.1:{port}"


def test_httpd_files_api_and_shutdown(processes, reef_binary, tmp_path):
    (tmp_path / "hello.txt").write_text("hello, reef\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "index.html").write_text("<p>sub</p>")
    p, base = start_httpd(processes, reef_binary, tmp_path)
    st, hdr, body = get(base + "/hello.txt")
    assert (st, body) == (200, b"hello, reef\n")
    assert hdr["Content-Type"].startswith("text/plain")
    st, _, body = get(base + "/hello.txt", headers={"Range": "bytes=0-4"})
    assert (st, body) == (206, b"hello")
    st, _, _ = get(base + "/hello.txt", headers={"If-None-Match": hdr["ETag"]})
    assert st == 304
    assert get(base + "/sub/")[2] == b"<p>sub</p>"
    assert get(base + "/nothing")[0] == 404
    # The key-value API: keys live on the shard their hash names, whichever shard is asked.
    for i in range(20):
        assert get(f"{base}/api/kv/k{i}", data=json.dumps({"i": i}).encode(), method="PUT")[0] == 201
    for i in range(20):
        st, _, body = get(f"{base}/api/kv/k{i}")
        assert st == 200 and json.loads(body) == {"i": i}
    assert get(base + "/api/kv/k0", data=b"not json", method="PUT")[0] == 400
    assert get(base + "/api/kv/k0", method="DELETE")[0] == 204
    assert get(base + "/api/kv/k0")[0] == 404
    assert get(base + "/api/kv/k0", method="POST", data=b"{}")[0] == 405
    status = json.loads(get(base + "/api/status")[2])
    assert status["shards"] == 2
    # A malformed request line gets 400 and the server keeps serving.
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"BROKEN\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    assert get(base + "/hello.txt")[0] == 200
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0


def test_bad_httpd_options_exit_nonzero(reef_binary, tmp_path):
    r = subprocess.run([reef_binary(HTTPD), "--root", str(tmp_path / "missing"), *QUIET], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert "missing" in r.stderr + r.stdout


def test_metrics_endpoint_serves_prometheus_text(processes, reef_binary):
    p = processes.start([reef_binary(ECHO), "--smp", "2", "--address", "127.0.0.1", "--port", "0",
                         "--udp-port", "0", "--metrics-port", "0", "--metrics-address", "127.0.0.1", *QUIET])
    line = p.wait_for(r"metrics at http://", timeout=60)[0]
    p.wait_for(r"reef-echo listening on", timeout=60)
    url = re.search(r"(http://\S+/metrics)", line).group(1)
    st, hdr, body = get(url)
    assert st == 200
    assert hdr["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert re.search(r'^reef_reactor_\w+\{[^}]*shard="1"', text, re.M), text[:2000]
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0
    if not promtool:
        pytest.skip("promtool (Debian package prometheus) is not installed: the format was not validated")
