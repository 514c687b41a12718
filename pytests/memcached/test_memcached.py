"""reef-memcached end to end over loopback: real clients (memccapable from libmemcached-tools), and
raw-socket checks of every text, meta and binary command, pipelining, UDP framing, expiry,
eviction under a small -m, stats, bad input and options. Every process is stopped by PID
(`processes`). Expiry uses short TTLs (1-2 s): the clock is the server's."""

import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from client import Text, bin_read, bin_request, stats, udp_request
from mc_util import QUIET, free_port


def text(server):
    return Text(server.connect())


def test_prints_its_addresses_and_stops_on_sigterm(start_memcached):
    srv = start_memcached(smp=2)
    line = srv.proc.wait_for(r"reef-memcached listening on")[0]
    assert f"127.0.0.1:{srv.port} (tcp)" in line and f"127.0.0.1:{srv.port} (udp)" in line and "2 shards" in line
    t = text(srv)
    assert t.set("k", "v") == b"STORED"
    srv.proc.signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=30) == 0, srv.proc.output
    assert "reef-memcached stopped" in srv.proc.output


def test_memcaslap_gets_no_errors(start_memcached):
    """memcaslap (memaslap) with verification: its keys start with control characters (0x10), which
    memcached accepts; every verified get must match, over text, binary and UDP."""
    srv = start_memcached(smp=2)
    for extra in ([], ["-B"], ["-U"]):
        r = subprocess.run(["memcaslap", "-s", f"127.0.0.1:{srv.port}", "-T", "1", "-c", "8", "-t", "2s", "-v", "0.5",
                            "-X", "200", *extra], capture_output=True, text=True, timeout=60)
        out = r.stdout + r.stderr
        # The server's error replies show up in memcaslap's output; lost UDP datagrams on a busy
        # machine are memcaslap's timeouts, not server errors, and are not checked here.
        assert "CLIENT_ERROR" not in out and "SERVER_ERROR" not in out, out
        assert "verify_failed: 0" in out, out
        assert int(re.search(r"Ops: (\d+)", out).group(1)) > 100, out


@pytest.mark.parametrize("smp", [1, 2])
def test_memccapable_passes_every_test(start_memcached, smp):
    srv = start_memcached(smp=smp)
    r = subprocess.run(["memccapable", "-h", "127.0.0.1", "-p", str(srv.port), "-t", "10"], capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert "[FAIL]" not in out, out
    assert out.count("[pass]") == 54, out
    assert "All tests passed" in out, out
    assert r.returncode == 0, out


def test_text_commands_across_shards(start_memcached):
    srv = start_memcached(smp=2)
    t = text(srv)
    keys = [f"key:{i}" for i in range(200)]  # spread over both shards
    for i, k in enumerate(keys):
        assert t.set(k, f"value-{i}", flags=i) == b"STORED"
    got = t.get(*keys)
    assert got == {k: (i, f"value-{i}".encode()) for i, k in enumerate(keys)}
    # Missing keys are left out; duplicates are answered each time.
    t.send("get key:1 nope key:1\r\n")
    assert t.line() == b"VALUE key:1 1 7"
    assert t.exactly(9) == b"value-1\r\n"
    assert t.line() == b"VALUE key:1 1 7"
    assert t.exactly(9) == b"value-1\r\n"
    assert t.line() == b"END"
    # cas
    _, _, cas = t.get("key:5", verb="gets")["key:5"]
    assert t.set("key:5", "x", extra=f" {cas + 1}", verb="cas") == b"EXISTS"
    assert t.set("key:5", "x", extra=f" {cas}", verb="cas") == b"STORED"
    assert t.set("key:5", "y", extra=f" {cas}", verb="cas") == b"EXISTS"
    assert t.set("nope", "y", extra=" 1", verb="cas") == b"NOT_FOUND"
    # add/replace/append/prepend
    assert t.set("key:5", "z", verb="add") == b"NOT_STORED"
    assert t.set("new", "z", verb="replace") == b"NOT_STORED"
    assert t.set("new", "z", verb="append") == b"NOT_STORED"
    assert t.set("new", "mid", verb="add") == b"STORED"
    assert t.set("new", ">", verb="append") == b"STORED"
    assert t.set("new", "<", verb="prepend") == b"STORED"
    assert t.get("new") == {"new": (0, b"<mid>")}
    # incr/decr: 64-bit wrap, floor at 0, non-numeric values, bad deltas
    assert t.set("n", "18446744073709551614") == b"STORED"
    assert t.cmd("incr n 3\r\n") == b"1"
    assert t.cmd("decr n 5\r\n") == b"0"
    assert t.cmd("incr n 100\r\n") == b"100"
    assert t.cmd("decr n 1\r\n") == b"99"
    assert t.get("n") == {"n": (0, b"99")}
    assert t.cmd("incr nope 1\r\n") == b"NOT_FOUND"
    assert t.cmd("incr new 1\r\n") == b"CLIENT_ERROR cannot increment or decrement non-numeric value"
    assert t.cmd("incr n -1\r\n") == b"CLIENT_ERROR invalid numeric delta argument"
    # touch, gat, gats, delete
    assert t.cmd("touch n 100\r\n") == b"TOUCHED"
    assert t.cmd("touch nope 100\r\n") == b"NOT_FOUND"
    assert t.get("n", verb="gat 100") == {"n": (0, b"99")}
    assert len(t.get("n", verb="gats 100")["n"]) == 3
    assert t.cmd("delete n\r\n") == b"DELETED"
    assert t.cmd("delete n\r\n") == b"NOT_FOUND"
    assert t.cmd("delete new 0\r\n") == b"DELETED"
    # noreply: nothing comes back, the effect is there
    t.send("set q 0 0 1 noreply\r\nq\r\nadd q 0 0 1 noreply\r\nr\r\nincr nope 1 noreply\r\ndelete nope noreply\r\n"
           "touch q 10 noreply\r\nappend q 0 0 1 noreply\r\n!\r\n")
    assert t.get("q") == {"q": (0, b"q!")}
    assert t.cmd("version\r\n").startswith(b"VERSION ")
    assert t.cmd("verbosity 1\r\n") == b"OK"
    assert t.cmd("flush_all\r\n") == b"OK"
    assert t.get(*keys[:20]) == {}
    t.send("quit\r\n")
    assert t.closed()


def test_pipelined_requests_are_answered_in_order(start_memcached):
    srv = start_memcached(smp=2)
    t = text(srv)
    req = b""
    expect = []
    for i in range(500):
        v = f"v{i}".encode()
        req += f"set p{i} {i} 0 {len(v)}\r\n".encode() + v + b"\r\n"
        expect.append(b"STORED")
        req += f"get p{i} p{i + 1000}\r\n".encode()
        expect += [f"VALUE p{i} {i} {len(v)}".encode(), v, b"END"]
        req += f"incr p{i} 1\r\n".encode()
        expect.append(b"CLIENT_ERROR cannot increment or decrement non-numeric value")
        if i % 50 == 0:
            req += b"mn\r\n" + bin_request(0x0a, opaque=i)  # meta and binary in the same stream
            expect.append(b"MN")
    t.send(req)
    for i, e in enumerate(expect):
        got = t.line()
        assert got == e, f"reply {i}: {got!r} != {e!r}"
        if e == b"MN":
            op, status, _, opaque, *_ = bin_read(t)
            assert (op, status) == (0x0a, 0)


def test_expiry_rules(start_memcached):
    srv = start_memcached(smp=2)
    t = text(srv)
    now = int(time.time())
    assert t.set("ttl1", "a", exptime=1) == b"STORED"
    assert t.set("neg", "a", exptime=-1) == b"STORED"
    assert t.set("past", "a", exptime=now - 100) == b"STORED"       # absolute, in the past
    assert t.set("future", "a", exptime=now + 3600) == b"STORED"    # absolute, in the future
    assert t.set("forever", "a", exptime=0) == b"STORED"
    assert t.get("neg", "past") == {}
    assert set(t.get("ttl1", "future", "forever")) == {"ttl1", "future", "forever"}
    time.sleep(2.5)
    assert set(t.get("ttl1", "future", "forever")) == {"future", "forever"}
    # touch extends, gat shortens
    assert t.set("t", "a", exptime=1) == b"STORED"
    assert t.cmd("touch t 100\r\n") == b"TOUCHED"
    assert t.get("forever", verb="gat 1") == {"forever": (0, b"a")}
    time.sleep(2.5)
    assert set(t.get("t", "forever")) == {"t"}
    s = stats(t)
    assert int(s["get_expired"]) >= 2, s
    # flush_all with a delay: items stay until then.
    assert t.set("f", "a") == b"STORED"
    assert t.cmd("flush_all 2\r\n") == b"OK"
    assert set(t.get("f")) == {"f"}
    time.sleep(3.5)
    assert t.get("f") == {}
    assert t.set("g", "after") == b"STORED"
    assert set(t.get("g")) == {"g"}


@pytest.mark.parametrize("request_bytes,reply", [
    (b"bogus\r\n", b"ERROR"),
    (b"\r\n", b"ERROR"),
    (b"get\r\n", b"ERROR"),
    (b"set k 0 0\r\n", b"ERROR"),
    (b"set k abc 0 1\r\n", b"CLIENT_ERROR bad command line format"),
    (b"set k 0 0 -1\r\n", b"CLIENT_ERROR bad command line format"),
    (b"set k 0 0 1\r\nxyz\r\n", b"CLIENT_ERROR bad data chunk"),
    (b"get " + b"k" * 251 + b"\r\n", b"CLIENT_ERROR bad command line format"),
    (b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\n", b"CLIENT_ERROR bad command line format"),
    (b"incr k abc\r\n", b"CLIENT_ERROR invalid numeric delta argument"),
    (b"touch k abc\r\n", b"CLIENT_ERROR invalid exptime argument"),
    (b"delete k 5\r\n", b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]"),
    (b"flush_all abc\r\n", b"CLIENT_ERROR invalid exptime argument"),
    (b"verbosity abc\r\n", b"CLIENT_ERROR bad command line format"),
    (b"shutdown\r\n", b"ERROR: shutdown not enabled"),
    (b"mg k zz\r\n", b"CLIENT_ERROR invalid flag"),
    (b"stats nonsense\r\n", b"ERROR"),
])
def test_bad_input_gets_memcacheds_error_and_the_connection_stays(start_memcached, request_bytes, reply):
    srv = start_memcached(smp=1, udp=False)
    t = text(srv)
    t.send(request_bytes)
    assert t.line() == reply
    # Whatever followed the bad line is taken as the next command; the connection still works.
    t.buf = b""
    t.s.settimeout(0.3)
    try:
        while t.s.recv(4096):
            pass
    except socket.timeout:
        pass
    t.s.settimeout(10)
    assert t.cmd("version\r\n").startswith(b"VERSION")


def test_bounds_on_lines_and_values(start_memcached):
    srv = start_memcached("-I", "64k", smp=1, udp=False)
    t = text(srv)
    # A value over -I: refused, its data skipped, the connection kept; the old value is gone.
    assert t.set("big", "old") == b"STORED"
    assert t.set("big", b"x" * 100000) == b"SERVER_ERROR object too large for cache"
    assert t.get("big") == {}
    assert t.set("ok", b"y" * 60000) == b"STORED"
    assert t.get("ok")["ok"][1] == b"y" * 60000
    # A line with no newline: refused and closed once it passes the limit, memory bounded.
    t.send(b"x" * 10000)
    assert t.line() == b"CLIENT_ERROR line too long"
    assert t.closed()
    # Binary garbage: unknown opcode answered; wrong lengths close; a bad magic after binary closes.
    b = text(srv)
    b.send(bin_request(0x77))
    assert bin_read(b)[1] == 0x81
    b.send(bin_request(0x00, b"k", extras=b"xxxx"))
    assert bin_read(b)[1] == 4
    assert b.closed()
    c = text(srv)
    c.send(bin_request(0x0a) + b"\x81" + b"\0" * 23)
    assert bin_read(c)[1] == 0
    assert c.closed()
    # The server is fine.
    assert text(srv).cmd("version\r\n").startswith(b"VERSION")


def test_meta_commands(start_memcached):
    srv = start_memcached(smp=2)
    t = text(srv)
    assert t.cmd("ms mk 2 T0 F7\r\nhi\r\n") == b"HD"
    assert t.cmd("mg mk v f t s k Oxyz\r\n") == b"VA 2 f7 t-1 s2 kmk Oxyz"
    assert t.exactly(4) == b"hi\r\n"
    assert t.cmd("mg nope v\r\n") == b"EN"
    line = t.cmd("mg mk c\r\n")
    cas = int(line.split()[1][1:])
    assert t.cmd(f"ms mk 1 C{cas + 1}\r\nx\r\n") == b"EX"
    assert t.cmd(f"ms mk 1 C{cas}\r\nx\r\n") == b"HD"
    assert t.cmd("ms mk 1 ME\r\ny\r\n") == b"NS"
    assert t.cmd("ms mk 1 MA\r\ny\r\nmg mk v\r\n") == b"HD"
    assert t.line() == b"VA 2" and t.exactly(4) == b"xy\r\n"
    assert t.cmd("mg nope v q\r\nmn\r\n") == b"MN"
    assert t.cmd("md mk q\r\nmd mk\r\n") == b"NF"
    assert t.cmd("ma cnt\r\n") == b"NF"
    assert t.cmd("ma cnt N0 J10 v\r\n") == b"VA 2" and t.exactly(4) == b"10\r\n"
    assert t.cmd("ma cnt MD D3 v\r\n") == b"VA 1" and t.exactly(3) == b"7\r\n"
    assert t.cmd("mg cnt T30 t\r\n") == b"HD t30"
    assert t.cmd("me cnt\r\n").startswith(b"ME cnt exp=30 ")
    assert t.cmd("ms Zm9vYmFy 1 b\r\nz\r\nmg foobar v\r\n") == b"HD"
    assert t.line() == b"VA 1" and t.exactly(3) == b"z\r\n"


def test_binary_commands(start_memcached):
    srv = start_memcached(smp=2)
    t = text(srv)
    flags_exp = struct.pack(">II", 0xCAFE, 0)
    t.send(bin_request(0x01, b"bk", flags_exp, b"bvalue", opaque=11))
    op, status, cas, opaque, *_ = bin_read(t)
    assert (op, status, opaque) == (0x01, 0, 11) and cas
    t.send(bin_request(0x0C, b"bk"))  # getk
    _, status, cas2, _, extras, key, value = bin_read(t)
    assert (status, extras, key, value, cas2) == (0, struct.pack(">I", 0xCAFE), b"bk", b"bvalue", cas)
    # Quiet gets: only hits answer; noop closes the batch.
    t.send(bin_request(0x09, b"nope") + bin_request(0x0D, b"bk") + bin_request(0x0A))
    assert bin_read(t)[5] == b"bk"
    assert bin_read(t)[0] == 0x0A
    t.send(bin_request(0x01, b"bk", flags_exp, b"new", cas=cas + 1))
    assert bin_read(t)[1] == 2
    incr = struct.pack(">QQI", 5, 100, 0)
    t.send(bin_request(0x05, b"ctr", incr) + bin_request(0x05, b"ctr", incr))
    assert bin_read(t)[6] == struct.pack(">Q", 100)
    assert bin_read(t)[6] == struct.pack(">Q", 105)
    t.send(bin_request(0x10))  # stats
    names = set()
    while True:
        _, status, _, _, _, key, value = bin_read(t)
        if not key:
            break
        names.add(key.decode())
    assert {"curr_items", "get_hits", "evictions"} <= names
    t.send(bin_request(0x04, b"bk") + bin_request(0x04, b"bk"))
    assert bin_read(t)[1] == 0
    assert bin_read(t)[1] == 1
    t.send(bin_request(0x07))
    assert bin_read(t)[1] == 0
    assert t.closed()


def test_udp_requests_and_multi_datagram_replies(start_memcached):
    srv = start_memcached(smp=2)
    addr = ("127.0.0.1", srv.port)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reply, n = udp_request(u, addr, b"set u1 3 0 5\r\nhello\r\n", 1)
    assert (reply, n) == (b"STORED\r\n", 1)
    reply, _ = udp_request(u, addr, b"get u1 nope\r\n", 2)
    assert reply == b"VALUE u1 3 5\r\nhello\r\nEND\r\n"
    # A value larger than a datagram comes back in several, in sequence, each <= 1400 bytes.
    t = text(srv)
    big = bytes(range(256)) * 200  # 51200 bytes
    assert t.set("big", big) == b"STORED"
    reply, n = udp_request(u, addr, b"get big\r\n", 3)
    assert n > 30
    assert reply == b"VALUE big 0 51200\r\n" + big + b"\r\nEND\r\n"
    assert udp_request(u, addr, bytes([0x80, 0x0a]) + b"\0" * 22, 4)[0][:2] == b"\x81\x0a"  # binary noop
    # Bad frame headers (too short; a multi-datagram request) are dropped and counted.
    u.sendto(b"\x00\x05", addr)
    u.sendto(struct.pack(">HHHH", 6, 0, 2, 0) + b"get u1\r\n", addr)
    u.settimeout(0.5)
    with pytest.raises(socket.timeout):
        u.recv(65536)
    assert int(stats(t)["udp_bad_frames"]) == 2


def test_eviction_under_a_small_memory_limit(start_memcached):
    srv = start_memcached("-m", "2", "-I", "64k", smp=2)
    t = text(srv)
    value = b"v" * 1000
    req = b"".join(f"set e{i} 0 0 1000 noreply\r\n".encode() + value + b"\r\n" for i in range(8000))
    t.send(req)
    s = stats(t)
    assert int(s["evictions"]) > 4000, s
    assert int(s["curr_items"]) + int(s["evictions"]) == 8000
    assert int(s["bytes"]) <= 2 << 20
    # The most recent ones are there; the oldest went.
    assert set(t.get("e7999", "e7998")) == {"e7999", "e7998"}
    assert t.get("e0", "e1") == {}
    assert t.set("after", "x") == b"STORED"


def test_stats_groups(start_memcached):
    srv = start_memcached("-m", "32", "-c", "100", smp=2)
    t = text(srv)
    t.set("a", "b")
    t.get("a", "missing")
    s = stats(t)
    for name in ["pid", "uptime", "time", "version", "curr_connections", "total_connections", "cmd_get", "cmd_set",
                 "get_hits", "get_misses", "curr_items", "total_items", "bytes", "evictions", "limit_maxbytes",
                 "threads", "bytes_read", "bytes_written"]:
        assert name in s, name
    assert (s["get_hits"], s["get_misses"], s["curr_items"], s["threads"]) == ("1", "1", "1", "2")
    assert s["limit_maxbytes"] == str(32 << 20)
    assert int(s["curr_connections"]) >= 1
    settings = stats(t, "settings")
    assert settings["maxbytes"] == str(32 << 20) and settings["maxconns"] == "100"
    assert settings["item_size_max"] == str(1 << 20)
    assert stats(t, "items")["items:1:number"] == "1"
    assert "1:total_pages" in stats(t, "slabs")
    assert t.cmd("stats reset\r\n") == b"RESET"
    assert stats(t)["get_hits"] == "0"


def test_connection_limit(start_memcached):
    srv = start_memcached("-c", "2", smp=1, udp=False)
    a, b = text(srv), text(srv)
    assert a.cmd("version\r\n").startswith(b"VERSION") and b.cmd("version\r\n").startswith(b"VERSION")
    c = text(srv)
    assert c.line() == b"ERROR Too many open connections"
    assert c.closed()
    a.s.close()
    time.sleep(0.5)
    d = text(srv)
    assert d.cmd("version\r\n").startswith(b"VERSION")


def test_threads_option_is_smp(processes, memcached_bin):
    port = free_port()
    p = processes.start([memcached_bin, "-t", "2", *QUIET, "-l", "127.0.0.1", "-p", str(port)])
    assert "2 shards" in p.wait_for(r"reef-memcached listening on", timeout=60)[0]


@pytest.mark.parametrize("args,message", [
    (["-I", "bogus"], r"max-item-size"),
    (["-I", "100"], r"max-item-size"),
    (["-m", "1", "-I", "1m"], r"more than half"),
    (["--udp-fastpath"], r"needs --dpdk-pmd"),
    (["-l", "not-an-address"], r"listen"),
])
def test_bad_options_exit_2(memcached_bin, args, message):
    argv = [memcached_bin, "--smp", "1", *QUIET, "-p", str(free_port()), *args]
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r
    assert re.search(message, r.stdout + r.stderr), r.stdout + r.stderr


def ctl_call(path, method, params=None, req_id=1):
    """One JSON-RPC 2.0 request on the dataplane's control socket; returns the decoded response."""
    import json
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        msg = {"jsonrpc": "2.0", "id": req_id, "method": method}
        if params is not None:
            msg["params"] = params
        s.sendall((json.dumps(msg) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            d = s.recv(65536)
            assert d, "control socket closed"
            buf += d
        return json.loads(buf)


def test_control_plane_app_stats_and_flush(start_memcached, tmp_path):
    sock = tmp_path / "mc.sock"
    srv = start_memcached("--ctl-socket", str(sock), smp=2)
    t = text(srv)
    for i in range(50):
        t.set(f"c{i}", "v")
    t.get("c1", "nope")
    r = ctl_call(sock, "app.stats", {"per_shard": True})
    st = r["result"]["stats"]
    assert (st["curr_items"], st["get_hits"], st["get_misses"], st["threads"]) == (50, 1, 1, 2), r
    shards = r["result"]["shards"]
    assert len(shards) == 2 and sum(s["curr_items"] for s in shards) == 50, r
    assert all(s["curr_items"] > 0 for s in shards), "keys spread over both shards"
    assert ctl_call(sock, "app.stats", {"group": "settings"})["result"]["stats"]["item_size_max"] == 1 << 20
    assert ctl_call(sock, "app.stats", {"group": "bogus"})["error"]["code"] == -32602
    assert ctl_call(sock, "app.flush", {"delay": -1})["error"]["code"] == -32602
    assert ctl_call(sock, "app.flush")["result"]["flushed"] is True
    assert t.get("c1", "c2") == {}
    r = ctl_call(sock, "metrics.get", {"prefix": "memcached_"})
    assert "error" not in r, r
    assert "memcached_get_hits_total" in str(r["result"]), r


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_reef_loadgen_memcached_generator(start_memcached, reef_binary, protocol):
    """reef-loadgen's memcached generator (used by the benchmarks) gets only right answers: every
    get's value is checked byte for byte against what the sets stored."""
    import json
    srv = start_memcached(smp=2)
    loadgen = reef_binary("apps/loadgen/reef-loadgen")
    r = subprocess.run([str(loadgen), "--smp", "1", *QUIET, "--server", f"127.0.0.1:{srv.port}", "--generator",
                        "memcached", "--protocol", protocol, "--connections", "4", "--pipeline", "4",
                        "--request-size", "100", "--memcached-keys", "500", "--warmup", "0.5", "--requests", "20000",
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["errors"] == 0 and res["mismatches"] == 0, res
    assert res["requests"] >= 20000, res
    s = stats(text(srv))
    assert int(s["get_hits"]) > 10000, s


def test_large_multiget_is_streamed_in_order(start_memcached):
    srv = start_memcached("-m", "256", smp=2, udp=False)
    t = text(srv)
    keys = [f"mg{i}" for i in range(300)]
    for i, k in enumerate(keys):
        t.send(f"set {k} {i} 0 50000 noreply\r\n".encode() + bytes([i % 251]) * 50000 + b"\r\n")
    t.send(f"get {' '.join(keys + keys)}\r\n")
    for k in keys + keys:
        i = int(k[2:])
        assert t.line() == f"VALUE {k} {i} 50000".encode()
        assert t.exactly(50002) == bytes([i % 251]) * 50000 + b"\r\n"
    assert t.line() == b"END"
