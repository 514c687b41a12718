"""End-to-end tests of reef-echo and reef-loadgen over loopback: the server on two shards, the load
generator's JSON output, UDP echo seen by a plain Python socket, TLS, and the error paths (a closed
port, bad options). Every process is stopped by PID (the `processes` fixture)."""

import json
import signal
import socket
import subprocess
import time

import pytest
from netutil import free_port  # noqa: F401  (re-exported to the suite's tests)

ECHO = "apps/echo/reef-echo"
LOADGEN = "apps/loadgen/reef-loadgen"

# Gentle on the shared two-core CI machine: shards sleep when idle instead of polling.
QUIET = ["--idle-policy", "sleep"]


@pytest.fixture
def echo_bin(reef_binary):
    return reef_binary(ECHO)


@pytest.fixture
def loadgen_bin(reef_binary):
    return reef_binary(LOADGEN)


def start_echo(processes, echo_bin, port, *extra, smp=2):
    p = processes.start([echo_bin, "--smp", str(smp), "--address", "127.0.0.1", "--port", str(port), *QUIET, *extra])
    line = p.wait_for(r"reef-echo listening on", timeout=60)[0]
    return p, line


def run_loadgen(loadgen_bin, *args, timeout=120):
    return subprocess.run([loadgen_bin, *QUIET, *args], capture_output=True, text=True, timeout=timeout)


def json_result(r):
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout; stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return json.loads(lines[0])


def test_echo_prints_its_addresses_and_stops_on_sigterm(echo_bin, processes):
    port = free_port()
    p, line = start_echo(processes, echo_bin, port)
    assert f"127.0.0.1:{port} (tcp)" in line, line
    assert f"127.0.0.1:{port} (udp)" in line, line
    assert "2 shards" in line, line
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.output
    assert "reef-echo stopped" in p.output, p.output


def test_tcp_echo_with_plain_sockets(echo_bin, processes):
    port = free_port()
    p, _ = start_echo(processes, echo_bin, port)
    # Several connections (the kernel spreads them over both shards), each with a large transfer
    # that needs several reads and writes, sent before reading anything back.
    payload = bytes(range(256)) * 1024  # 256 KiB
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            got = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert bytes(got) == payload
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.output
    assert "4 connections (0 ended with an error), 1048576 bytes echoed" in p.output, p.output


def test_udp_echo_with_a_python_socket(echo_bin, processes):
    port = free_port()
    start_echo(processes, echo_bin, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        for i, size in enumerate([1, 64, 1400, 9000, 65507]):
            msg = bytes((i + j) % 256 for j in range(size))
            s.sendto(msg, ("127.0.0.1", port))
            data, addr = s.recvfrom(70000)
            assert data == msg
            assert addr == ("127.0.0.1", port)


def test_loadgen_tcp_against_echo(echo_bin, loadgen_bin, processes):
    port = free_port()
    start_echo(processes, echo_bin, port)
    r = run_loadgen(loadgen_bin, "--smp", "2", "--server", f"127.0.0.1:{port}", "--connections", "4",
                    "--duration", "1", "--json")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["requests"] > 0, j
    assert j["errors"] == 0, j
    assert j["protocol"] == "tcp" and j["shards"] == 2 and j["connections"] == 8, j
    assert j["pipeline"] == 1 and j["request_size"] == 64, j
    assert 0.9 <= j["duration_s"] <= 1.5, j
    assert j["rps"] == pytest.approx(j["requests"] / j["duration_s"], rel=1e-6), j
    assert j["bytes_per_s"] == pytest.approx(2 * 64 * j["rps"], rel=1e-6), j
    lat = j["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], lat


def test_loadgen_pipelined_request_count_and_human_summary(echo_bin, loadgen_bin, processes):
    port = free_port()
    start_echo(processes, echo_bin, port)
    # --requests: exactly that many are measured, spread over shards and connections; pipelined
    # requests of an odd size cross the server's read boundaries.
    r = run_loadgen(loadgen_bin, "--smp", "2", "--server", f"127.0.0.1:{port}", "--connections", "3",
                    "--pipeline", "16", "--request-size", "1000", "--requests", "20001", "--warmup", "0.2")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "requests     20001 (" in r.stdout, r.stdout
    assert "errors       0 " in r.stdout, r.stdout
    assert "latency us   p50 " in r.stdout, r.stdout


def test_loadgen_udp_against_echo(echo_bin, loadgen_bin, processes):
    port = free_port()
    start_echo(processes, echo_bin, port)
    r = run_loadgen(loadgen_bin, "--smp", "2", "--server", f"127.0.0.1:{port}", "--protocol", "udp",
                    "--connections", "2", "--pipeline", "4", "--request-size", "200", "--duration", "1", "--json")
    j = json_result(r)
    assert j["protocol"] == "udp", j
    assert j["requests"] > 0, j
    # Loopback does not lose datagrams at this rate; a loss would be a timeout, and an error.
    assert j["errors"] == 0 and r.returncode == 0, f"{j}\nstderr:\n{r.stderr}"


def test_sink_acknowledges_running_byte_counts(echo_bin, processes):
    port = free_port()
    p, _ = start_echo(processes, echo_bin, port, "--sink-ack", "1000", smp=1)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        # 2500 bytes in uneven pieces: acknowledgements for 1000 and 2000, none for the tail.
        for piece in (b"a" * 300, b"b" * 1500, b"c" * 700):
            s.sendall(piece)
        got = b""
        while len(got) < 16:
            chunk = s.recv(64)
            assert chunk, "the sink closed the connection"
            got += chunk
        assert [int.from_bytes(got[i:i + 8], "little") for i in (0, 8)] == [1000, 2000]
        s.sendall(b"d" * 500)  # 3000 now
        ack = s.recv(64)
        assert int.from_bytes(ack, "little") == 3000 and len(ack) == 8, ack
        s.shutdown(socket.SHUT_WR)
        assert s.recv(64) == b"", "nothing but acknowledgements, then the end"
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.output
    assert "1 connections (0 ended with an error), 3000 bytes received (sink)" in p.output, p.output


def test_loadgen_sink_generator_against_echo_sink(echo_bin, loadgen_bin, processes):
    port = free_port()
    start_echo(processes, echo_bin, port, "--sink-ack", "65536")
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port}", "--generator", "sink",
                    "--connections", "2", "--pipeline", "8", "--request-size", "65536", "--duration", "1", "--json")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["requests"] > 0 and j["errors"] == 0, j
    # The bulk goes one way; 8 bytes come back per request.
    assert j["bytes_per_s"] == pytest.approx((65536 + 8) * j["rps"], rel=1e-6), j
    # Against a plain echo every acknowledgement is wrong (the bytes come back instead of a count).
    port2 = free_port()
    start_echo(processes, echo_bin, port2)
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port2}", "--generator", "sink",
                    "--connections", "1", "--request-size", "64", "--requests", "100", "--json")
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert json_result(r)["errors"] > 0


def test_sink_generator_is_tcp_only(loadgen_bin):
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{free_port()}", "--generator", "sink",
                    "--protocol", "udp", "--duration", "0.5")
    assert r.returncode == 2, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "--generator sink does not support --protocol udp" in r.stderr, r.stderr


def test_loadgen_udp_without_a_server_counts_timeouts_and_ends(loadgen_bin):
    port = free_port()  # nobody listens there
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port}", "--protocol", "udp",
                    "--connections", "1", "--pipeline", "2", "--duration", "0.5", "--timeout", "0.2", "--json")
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["requests"] == 0 and j["timeouts"] > 0 and j["errors"] == j["timeouts"], j
    assert "no answer within" in r.stderr, r.stderr


def test_loadgen_reports_connection_refused(loadgen_bin):
    port = free_port()  # nobody listens there
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port}", "--connections", "2",
                    "--duration", "1", "--json")
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "Connection refused" in r.stderr, r.stderr
    j = json_result(r)
    assert j["connection_errors"] == 2 and j["requests"] == 0, j
    assert any("Connection refused" in m["message"] for m in j["error_messages"]), j


def test_loadgen_stops_when_the_server_goes_away(echo_bin, loadgen_bin, processes):
    port = free_port()
    echo, _ = start_echo(processes, echo_bin, port)
    lg = processes.start([loadgen_bin, *QUIET, "--smp", "1", "--server", f"127.0.0.1:{port}", "--connections", "2",
                          "--duration", "60", "--json"])
    time.sleep(1)  # the load is on
    echo.signal(signal.SIGTERM)
    assert echo.wait(timeout=30) == 0, echo.output
    rc = lg.wait(timeout=30)  # well before --duration: the connections ended
    assert rc == 1, lg.output
    assert "server closed the connection" in lg.output or "Connection reset" in lg.output, lg.output


def test_loadgen_tcp_timeout_when_the_server_never_answers(loadgen_bin):
    # A listening socket nobody accepts from: connections complete in the kernel's backlog, the
    # requests are never answered.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        port = mute.getsockname()[1]
        r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port}", "--connections", "2",
                        "--pipeline", "2", "--duration", "30", "--timeout", "0.3", "--json", timeout=60)
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["connection_errors"] == 2 and j["requests"] == 0, j
    assert f"no answer from 127.0.0.1:{port} within 0.3 s" in r.stderr, r.stderr
    assert j["duration_s"] < 10, j  # the run ended with its connections, not after --duration


def test_ipv6_loopback(echo_bin, loadgen_bin, processes):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as t:
            t.bind(("::1", 0))
            port = t.getsockname()[1]
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    p = processes.start([echo_bin, "--smp", "1", "--address", "::1", "--port", str(port), "--udp-port", "0", *QUIET])
    line = p.wait_for(r"reef-echo listening on", timeout=60)[0]
    assert f"[::1]:{port} (tcp)" in line and "(udp)" not in line, line
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"[::1]:{port}", "--connections", "2", "--duration", "0.5",
                    "--json")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["requests"] > 0 and j["errors"] == 0 and j["server"] == f"[::1]:{port}", j


@pytest.mark.parametrize("args, complaint", [
    (["--protocol", "sctp"], "--protocol"),
    (["--pipeline", "0"], "--pipeline"),
    (["--generator", "nope"], "--generator"),
    (["--duration", "1", "--requests", "5"], "--requests"),
    (["--protocol", "udp", "--request-size", "4"], "--request-size"),
    (["--tls-ca", "/etc/hostname"], "--tls"),
])
def test_loadgen_bad_options_exit_2(loadgen_bin, args, complaint):
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", "127.0.0.1:7", *args, timeout=60)
    assert r.returncode == 2, f"{args}: exit {r.returncode}; stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert complaint in r.stderr, r.stderr


def test_loadgen_requires_server(loadgen_bin):
    r = subprocess.run([loadgen_bin, "--smp", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--server" in r.stderr, r.stderr


def test_echo_bad_options_exit_2(echo_bin):
    for args in (["--port", "70000"], ["--address", "not-an-ip"], ["--tls-cert", "/etc/hostname"]):
        r = subprocess.run([echo_bin, "--smp", "1", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, f"{args}: exit {r.returncode}; stderr:\n{r.stderr}"


def test_echo_reports_a_busy_port(echo_bin, processes):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([echo_bin, "--smp", "1", "--address", "127.0.0.1", "--port", str(port), "--udp-port", "0"],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, f"exit {r.returncode}; stderr:\n{r.stderr}"
    assert f"127.0.0.1:{port}" in r.stderr and "Address already in use" in r.stderr, r.stderr


def make_certificates(d):
    """A CA and a server certificate for "localhost" signed by it, made with certtool."""
    def certtool(*args):
        subprocess.run(["certtool", *args], check=True, capture_output=True, timeout=60)

    (d / "ca.tmpl").write_text('cn = "Reef test CA"\nca\ncert_signing_key\nexpiration_days = 2\n')
    (d / "server.tmpl").write_text('cn = "localhost"\ndns_name = "localhost"\ntls_www_server\n'
                                   'encryption_key\nsigning_key\nexpiration_days = 2\n')
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "ca.key"))
    certtool("--generate-self-signed", "--load-privkey", str(d / "ca.key"), "--template", str(d / "ca.tmpl"),
             "--outfile", str(d / "ca.pem"))
    certtool("--generate-privkey", "--key-type", "ecdsa", "--outfile", str(d / "server.key"))
    certtool("--generate-certificate", "--load-privkey", str(d / "server.key"), "--load-ca-certificate",
             str(d / "ca.pem"), "--load-ca-privkey", str(d / "ca.key"), "--template", str(d / "server.tmpl"),
             "--outfile", str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem", d / "server.key"


def test_tls_echo_and_loadgen(echo_bin, loadgen_bin, processes, tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    port = free_port()
    _, line = start_echo(processes, echo_bin, port, "--tls-cert", cert, "--tls-key", key)
    assert "(tcp+tls)" in line, line
    r = run_loadgen(loadgen_bin, "--smp", "2", "--server", f"127.0.0.1:{port}", "--connections", "2",
                    "--pipeline", "4", "--duration", "1", "--tls", "--tls-ca", ca, "--tls-server-name", "localhost",
                    "--json")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    j = json_result(r)
    assert j["requests"] > 0 and j["errors"] == 0 and j["tls"] is True, j
    # The certificate names localhost, not 127.0.0.1: verification must fail, with the reason.
    r = run_loadgen(loadgen_bin, "--smp", "1", "--server", f"127.0.0.1:{port}", "--connections", "1",
                    "--duration", "0.5", "--tls", "--tls-ca", ca, "--tls-server-name", "wrong.example", "--json")
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "verification failed" in r.stderr, r.stderr


def test_collectd_export_pushes_every_shards_metrics(processes, echo_bin):
    """--collectd-address: the dataplane pushes collectd binary-protocol packets; the plugin
    instance is the app's name ('-' is collectd's identifier separator, so reef_echo) and every
    shard's counters are in them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as coll:
        coll.bind(("127.0.0.1", 0))
        coll.settimeout(20)
        p, _ = start_echo(processes, echo_bin, free_port(), "--collectd-address",
                          f"127.0.0.1:{coll.getsockname()[1]}", "--collectd-period", "0.2")
        seen = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (b"shard_0" in seen and b"shard_1" in seen):
            pkt = coll.recv(2048)
            assert len(pkt) <= 1452
            seen += pkt
        # Parts 0x0002 (plugin) "reef" and 0x0003 (plugin instance) "reef_echo", NUL-terminated.
        assert b"\x00\x02\x00\x09reef\x00" in seen and b"\x00\x03\x00\x0ereef_echo\x00" in seen, seen[:200]
        assert b"shard_0" in seen and b"shard_1" in seen, seen[:400]
    assert p.proc.poll() is None


@pytest.mark.parametrize("args, message", [
    (["--collectd-address", "no-port-here"], "no-port-here"),
    (["--collectd-address", "127.0.0.1:9", "--collectd-period", "0"], "collectd-period"),
])
def test_collectd_bad_options_are_named(echo_bin, args, message):
    r = subprocess.run([echo_bin, "--smp", "1", *QUIET, "--port", "0", *args], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0, r.stderr
    assert message in r.stderr, r.stderr
