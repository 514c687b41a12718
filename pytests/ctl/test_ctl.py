"""End-to-end tests of the control plane (issue 7): reefd supervising two reef-echo dataplanes on
the posix stack, every reefctl subcommand against them with its effect checked, crash restarts,
reefd restarts with re-attachment, bad input to both reefd and a dataplane's agent, and peers
refused by SO_PEERCRED. Everything runs on loopback and unix sockets in a temporary directory."""

import json
import os
import signal
import socket
import threading
import time

import pytest

from ctl_util import RpcClient, echo_once, result_of


@pytest.fixture
def two_echoes(reefd):
    reefd.write_config([reefd.echo_spec("echo0"), reefd.echo_spec("echo1")])
    reefd.start()
    reefd.wait_running(["echo0", "echo1"])
    return reefd


def test_reefd_launches_and_lists_two_dataplanes(two_echoes):
    r = two_echoes
    for name in ("echo0", "echo1"):
        assert echo_once(r.ports[name]) == b"ping\n"
    out = r.ctl("dataplanes", check=0).stdout
    assert "echo0" in out and "echo1" in out and out.count("running") == 2
    st = json.loads(r.ctl("--json", "dataplanes", check=0).stdout)
    assert [d["name"] for d in st["dataplanes"]] == ["echo0", "echo1"]
    assert all(d["restarts"] == 0 and d["pid"] for d in st["dataplanes"])
    status = r.ctl("status", check=0).stdout
    assert "reefd" in status and "echo1" in status
    # The dataplane's own status through `call`, and straight from its socket.
    rs = json.loads(r.ctl("--json", "raw", "call", '{"dataplane":"echo0","method":"runtime.status"}', check=0).stdout)
    assert rs["app"] == "reef-echo" and rs["stack"] == "posix" and rs["state"] == "running"
    direct = json.loads(r.ctl("--json", "status", socket_path=st["dataplanes"][0]["socket"], check=0).stdout)
    assert direct["pid"] == st["dataplanes"][0]["pid"]
    # The socket is 0660.
    assert os.stat(r.socket).st_mode & 0o777 == 0o660
    assert os.stat(st["dataplanes"][0]["socket"]).st_mode & 0o777 == 0o660


def test_every_subcommand_and_its_effect(two_echoes):
    r = two_echoes
    # shards: the table, then a live change that shows in the next listing.
    out = r.ctl("shards", "echo0", check=0).stdout
    assert "SHARD" in out and "BUSY%" in out and "sleep" in out
    r.ctl("shards", "echo0", "--set", "task_quota_ms=0.25", "--set", "idle_policy=adaptive", "--set",
          "idle_poll_us=50", check=0)
    sh = json.loads(r.ctl("--json", "shards", "echo0", check=0).stdout)["shards"][0]
    assert sh["task_quota_ms"] == 0.25 and sh["idle_policy"] == "adaptive" and sh["idle_poll_us"] == 50
    other = json.loads(r.ctl("--json", "shards", "echo1", check=0).stdout)["shards"][0]
    assert other["task_quota_ms"] == 0.5 and other["idle_policy"] == "sleep"
    bad = r.ctl("shards", "echo0", "--set", "idle_policy=nap", check=1)
    assert "idle_policy" in bad.stderr
    # Utilization: a polling shard never sleeps, and its idle time shows as empty polling.
    r.ctl("shards", "echo0", "--set", "idle_policy=poll", check=0)
    a = json.loads(r.ctl("--json", "shards", "echo0", check=0).stdout)["shards"][0]
    time.sleep(0.3)
    b = json.loads(r.ctl("--json", "shards", "echo0", check=0).stdout)["shards"][0]
    for s in (a, b):
        assert all(0 <= s[k] <= 100 for k in ("idle_pct", "idle_poll_pct", "busy_pct"))
        assert abs(s["idle_pct"] + s["idle_poll_pct"] + s["busy_pct"] - 100) < 0.01
        assert 0 <= s["idle_s"] + s["idle_poll_s"] <= s["uptime_s"]
    window = b["uptime_s"] - a["uptime_s"]
    assert window >= 0.3
    assert b["idle_s"] == a["idle_s"]
    assert b["idle_poll_s"] - a["idle_poll_s"] > 0.5 * window
    # Back to sleeping (the machine is shared).
    r.ctl("shards", "echo0", "--set", "idle_policy=sleep", check=0)

    # sched-group: the shares change shows in the list.
    r.ctl("sched-group", "echo0", "main", "500", check=0)
    groups = json.loads(r.ctl("--json", "sched-group", "echo0", check=0).stdout)["groups"]
    assert {g["name"]: g["shares"] for g in groups}["main"] == 500
    assert "no scheduling group 'nope'" in r.ctl("sched-group", "echo0", "nope", "10", check=1).stderr

    # metrics: a prefix filter, values that follow events (connections accepted), Prometheus text.
    before = json.loads(r.ctl("--json", "metrics", "echo0", "--prefix", "reef_net_connections_accepted",
                              check=0).stdout)["metrics"]
    assert [m["name"] for m in before] == ["reef_net_connections_accepted_total"]
    n0 = sum(s["value"] for s in before[0]["samples"])
    echo_once(r.ports["echo0"])
    echo_once(r.ports["echo0"])
    after = json.loads(r.ctl("--json", "metrics", "echo0", "--prefix", "reef_net_connections_accepted",
                             check=0).stdout)["metrics"]
    assert sum(s["value"] for s in after[0]["samples"]) == n0 + 2
    text = r.ctl("metrics", "echo0", "--prometheus", "--prefix", "reef_reactor_", check=0).stdout
    assert "# TYPE reef_reactor_tasks_processed_total counter" in text
    assert 'reef_reactor_tasks_processed_total{shard="0"}' in text

    # log-level: shows, sets one logger, and the change shows in the dataplane's output: the
    # echo server's final info line is not printed by the dataplane whose logger was raised.
    assert "reef-echo" in r.ctl("log-level", "echo0", check=0).stdout
    out = r.ctl("log-level", "echo0", "reef-echo", "error", check=0).stdout
    assert "reef-echo" in out and "error" in out
    loggers = {l["name"]: l["level"] for l in json.loads(r.ctl("--json", "log-level", "echo0", check=0).stdout)["loggers"]}
    assert loggers["reef-echo"] == "error" and loggers["bootstrap"] == "info"
    assert "no logger" in r.ctl("log-level", "echo0", "nosuch", "debug", check=1).stderr
    assert "level" in r.ctl("log-level", "echo0", "loud", check=1).stderr

    # logs
    logs = r.ctl("logs", "echo0", "-n", "20", check=0).stdout
    assert "reef-echo listening on 127.0.0.1" in logs and "control socket" in logs

    # ports/stats: no DPDK port here: a remote error naming it, exit 1.
    assert "no port" in r.ctl("ports", "echo0", check=1).stderr
    assert "no port" in r.ctl("stats", "echo0", check=1).stderr
    # io-class, connections, app: answered with errors naming the reason.
    # io-class: the default class, its shares changed and shown, an unknown class refused.
    assert "default" in r.ctl("io-class", "echo0", check=0).stdout
    r.ctl("io-class", "echo0", "default", "250", check=0)
    classes = json.loads(r.ctl("--json", "io-class", "echo0", check=0).stdout)["classes"]
    assert {c["name"]: c["shares"] for c in classes}["default"] == 250
    assert "no I/O class 'nope'" in r.ctl("io-class", "echo0", "nope", "10", check=1).stderr
    assert "shares" in r.ctl("io-class", "echo0", "default", "0", check=1).stderr
    assert 'reef_io_shares{class="default",shard="0"} 250' in r.ctl(
        "metrics", "echo0", "--prometheus", "--prefix", "reef_io_shares", check=0).stdout
    assert "posix" in r.ctl("connections", "echo0", check=1).stderr
    assert "method not found: app.stats" in r.ctl("app", "echo0", "stats", check=1).stderr
    # raw
    assert json.loads(r.ctl("--json", "raw", "reef.version", check=0).stdout)["server"] == "reefd"

    # stop / start / restart
    r.ctl("stop", "echo1", check=0)
    assert r.status("echo1")["state"] == "stopped"
    with pytest.raises(OSError):
        echo_once(r.ports["echo1"], timeout=2)
    r.ctl("start", "echo1", check=0)
    assert echo_once(r.ports["echo1"]) == b"ping\n"
    old = r.status("echo1")["pid"]
    r.ctl("restart", "echo1", check=0)
    assert r.status("echo1")["pid"] != old
    assert echo_once(r.ports["echo1"]) == b"ping\n"

    # The raised logger kept the info line out of echo0's output when it stopped.
    r.ctl("stop", "echo0", check=0)
    r.ctl("stop", "echo1", check=0)
    assert "reef-echo stopped" not in r.ctl("logs", "echo0", "-n", "5", "--stream", "stderr", check=0).stdout
    assert "reef-echo stopped" in r.ctl("logs", "echo1", "-n", "5", "--stream", "stderr", check=0).stdout

    # update: two shards, persisted, and running with them.
    r.ctl("start", "echo0", check=0)
    r.ctl("update", "echo0", "--smp", "2", check=0)
    sh = json.loads(r.ctl("--json", "shards", "echo0", check=0).stdout)["shards"]
    assert len(sh) == 2
    state = json.loads(r.state_file.read_text())
    assert {d["spec"]["name"]: d["spec"]["smp"] for d in state["dataplanes"]}["echo0"] == 2
    assert echo_once(r.ports["echo0"]) == b"ping\n"

    # Usage errors exit 2 with CLI11's message; a missing socket exits 3 naming it.
    assert r.ctl("shards", check=2).stderr
    assert r.ctl("frobnicate", check=2).stderr
    missing = r.ctl("dataplanes", socket_path=r.base / "nope.sock", check=3)
    assert "nope.sock" in missing.stderr


def test_kill_9_is_restarted_and_counted(two_echoes):
    r = two_echoes
    pid = r.status("echo0")["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        st = r.status("echo0")
        if st["state"] == "running" and st["pid"] != pid:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.05)
    assert st["restarts"] == 1
    assert "signal 9" in st["last_exit"]["description"]
    out = r.ctl("dataplanes", check=0).stdout
    row = next(l for l in out.splitlines() if l.startswith("echo0"))
    assert row.split()[3] == "1"  # RESTARTS column
    r.wait_running(["echo0"])
    assert echo_once(r.ports["echo0"]) == b"ping\n"


def test_reefd_restart_reattaches_and_dataplanes_keep_serving(two_echoes):
    r = two_echoes
    pids = {d["name"]: d["pid"] for d in r.list()}
    r.remember()
    os.kill(r.proc.pid, signal.SIGKILL)
    r.proc.wait(10)
    # reefd is gone; the dataplanes serve on.
    for name in pids:
        assert echo_once(r.ports[name]) == b"ping\n"
    assert r.ctl("dataplanes", check=3)
    r.start()
    st = r.wait_running(["echo0", "echo1"])
    assert {n: st[n]["pid"] for n in pids} == pids
    assert all(st[n]["attached"] for n in pids)
    for name in pids:
        assert echo_once(r.ports[name]) == b"ping\n"
    # A re-attached dataplane is still supervised: killed, it is restarted.
    os.kill(pids["echo1"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while r.status("echo1")["pid"] in (None, pids["echo1"]) or r.status("echo1")["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert r.status("echo1")["restarts"] == 1
    # Runtime changes survive a reefd restart (state file): a stopped dataplane stays stopped.
    r.ctl("stop", "echo0", check=0)
    r.remember()
    r.proc.stop()
    r.start()
    st = r.wait_running(["echo1"])
    assert st["echo0"]["state"] == "stopped"


def bad_input_checks(sock_path):
    """Malformed, unknown, wrong-typed, oversized and silent requests on one server."""
    c = RpcClient(sock_path)
    c.send_raw(b"{this is not json\n")
    e = c.read_line()["error"]
    assert e["code"] == -32700 and "parse error" in e["message"]
    c.send_raw(b'{"jsonrpc":"2.0","id":1}\n')
    e = c.read_line()
    assert e["error"]["code"] == -32600 and e["id"] == 1
    e = c.call("no.such.method")["error"]
    assert e["code"] == -32601 and "no.such.method" in e["message"]
    e = c.call("reef.version", {"unexpected": 1})["error"]
    assert e["code"] == -32602 and "unexpected" in e["message"]
    # Oversized: 2 MiB in one line. The error comes back and the connection stays usable.
    c.send_raw(b'{"jsonrpc":"2.0","id":9,"method":"x","params":{"pad":"' + b"a" * (2 << 20) + b'"}}\n')
    e = c.read_line()["error"]
    assert e["code"] == -32001 and "too large" in e["message"]
    assert "result" in c.call("reef.version")
    c.close()
    # A client that connects and sends nothing does not hold anyone else up.
    silent = RpcClient(sock_path)
    other = RpcClient(sock_path, timeout=5)
    assert "result" in other.call("reef.version")
    other.close()
    # 100 concurrent clients, each with a few requests, all answered.
    errors = []

    def client_thread():
        try:
            cl = RpcClient(sock_path)
            for _ in range(3):
                assert "result" in cl.call("reef.version")
            cl.close()
        except Exception as ex:  # collected and reported below
            errors.append(repr(ex))

    threads = [threading.Thread(target=client_thread) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    silent.close()


def test_bad_input_to_reefd_and_to_an_agent(two_echoes):
    r = two_echoes
    bad_input_checks(r.socket)
    # Wrong param types through reefd's own methods and through `call`.
    c = RpcClient(r.socket)
    e = c.call("dataplane.logs", {"name": 5})["error"]
    assert e["code"] == -32602 and "'name' must be a string" in e["message"]
    e = c.call("dataplane.start", {"name": "ghost"})["error"]
    assert e["code"] == -32002 and "ghost" in e["message"]
    e = c.call("call", {"dataplane": "echo0", "method": "shards.set", "params": {"task_quota_ms": "fast"}})["error"]
    assert e["code"] == -32602 and "task_quota_ms" in e["message"]
    c.close()
    agent_sock = r.status("echo0")["socket"]
    bad_input_checks(agent_sock)
    # Everyone is still served.
    assert echo_once(r.ports["echo0"]) == b"ping\n"
    assert len(r.list()) == 2


def test_bad_binary_is_reported_and_reefd_keeps_running(reefd):
    r = reefd
    r.write_config([r.echo_spec("echo0")])
    r.start()
    r.wait_running(["echo0"])
    c = RpcClient(r.socket)
    res = c.call("dataplane.add", {"dataplane": {
        "name": "ghost", "binary": str(r.base / "no-such-binary"),
        "restart": {"policy": "on-failure", "backoff_initial_ms": 50, "max_restarts": 2}}})
    assert "result" in res, res
    deadline = time.monotonic() + 30
    while r.status("ghost")["state"] != "failed":
        assert time.monotonic() < deadline, r.status("ghost")
        time.sleep(0.05)
    st = r.status("ghost")
    assert st["last_exit"]["code"] == 127
    logs = result_of(c.call("dataplane.logs", {"name": "ghost", "stream": "stderr"}))["stderr"]
    assert "cannot execute" in logs and "no-such-binary" in logs
    # An option the dataplane rejects: exits at once with code 2 and CLI11's message.
    res = c.call("dataplane.add", {"dataplane": {
        "name": "badopt", "binary": str(r.echo_bin), "args": ["--no-such-option"],
        "restart": {"policy": "never"}}})
    assert "result" in res, res
    deadline = time.monotonic() + 30
    while r.status("badopt")["state"] != "failed":
        assert time.monotonic() < deadline, r.status("badopt")
        time.sleep(0.05)
    assert r.status("badopt")["last_exit"]["code"] == 2
    assert "no-such-option" in result_of(c.call("dataplane.logs", {"name": "badopt"}))["stderr"]
    # Bad definitions are refused naming the field.
    e = c.call("dataplane.add", {"dataplane": {"name": "x", "binary": "relative/path"}})["error"]
    assert e["code"] == -32602 and "binary" in e["message"]
    e = c.call("dataplane.add", {"dataplane": {"name": "echo0", "binary": "/bin/true"}})["error"]
    assert e["code"] == -32006
    c.close()
    # reefd and the healthy dataplane are fine.
    assert echo_once(r.ports["echo0"]) == b"ping\n"
    assert r.status("echo0")["state"] == "running"
    r.ctl("remove", "ghost", check=0)
    assert "ghost" not in {d["name"] for d in r.list()}


def test_non_permitted_uid_is_refused(two_echoes):
    r = two_echoes
    nobody = 65534
    agent_sock = r.status("echo0")["socket"]
    # The file mode keeps nobody out already (0660, root's group): reefctl cannot connect.
    denied = r.ctl("dataplanes", user=nobody, check=3)
    assert "Permission denied" in denied.stderr and str(r.socket) in denied.stderr
    # With the mode opened, SO_PEERCRED still refuses: a permission error, and the connection is
    # closed. Root keeps being served.
    for path in (r.socket, agent_sock):
        os.chmod(path, 0o666)
        out = r.ctl("raw", "reef.version", socket_path=path, user=nobody, check=1)
        assert "permission denied" in out.stderr
        os.chmod(path, 0o660)
    assert json.loads(r.ctl("--json", "raw", "reef.version", check=0).stdout)["server"] == "reefd"
    assert r.proc.wait_for("refused a peer")


def test_app_methods_and_sched_group_shares_split_the_cpu(reefd, reef_binary):
    r = reefd
    testapp = reef_binary("tests/unit/reef-ctl-testapp")
    r.write_config([{"name": "t0", "binary": str(testapp), "args": ["--idle-policy", "sleep"], "smp": 1}])
    r.start()
    r.wait_running(["t0"])

    def groups():
        g = json.loads(r.ctl("--json", "sched-group", "t0", check=0).stdout)["groups"]
        return {x["name"]: x for x in g}

    deadline = time.monotonic() + 30
    while "gb" not in groups():  # created by the app's main, just after the agent started
        assert time.monotonic() < deadline
        time.sleep(0.05)

    # app.* methods registered by the app, through reefd's call.
    assert json.loads(r.ctl("--json", "app", "t0", "echo", '{"x": [1, 2]}', check=0).stdout) == {"x": [1, 2]}
    assert "deliberate failure" in r.ctl("app", "t0", "fail", check=1).stderr
    e = r.ctl("app", "t0", "app.fail", '{"kind": "rpc"}', check=1).stderr
    assert "deliberate rpc error" in e and "-32006" in e
    assert "app.spin" in r.rpc("call", {"dataplane": "t0", "method": "reef.methods"})["methods"]
    assert "not valid JSON" in r.ctl("app", "t0", "echo", "{nope", check=2).stderr

    # Shares set through reefctl show in the list, and the CPU time the two busy groups get
    # follows them (CPU time measured by the reactor, both groups on one shard).
    r.ctl("sched-group", "t0", "ga", "100", check=0)
    r.ctl("sched-group", "t0", "gb", "400", check=0)
    before = groups()
    assert before["ga"]["shares"] == 100 and before["gb"]["shares"] == 400
    r.ctl("app", "t0", "spin", '{"seconds": 1.5}', check=0)
    after = groups()
    da = after["ga"]["runtime_s"] - before["ga"]["runtime_s"]
    db = after["gb"]["runtime_s"] - before["gb"]["runtime_s"]
    assert da > 0 and db > 0
    assert 2.0 < db / da < 8.0, (da, db)
    # And the other way round.
    r.ctl("sched-group", "t0", "ga", "400", check=0)
    r.ctl("sched-group", "t0", "gb", "100", check=0)
    before = after
    r.ctl("app", "t0", "spin", '{"seconds": 1.5}', check=0)
    after = groups()
    da = after["ga"]["runtime_s"] - before["ga"]["runtime_s"]
    db = after["gb"]["runtime_s"] - before["gb"]["runtime_s"]
    assert 2.0 < da / db < 8.0, (da, db)


def test_watch_refreshes_until_interrupted(two_echoes):
    import subprocess
    r = two_echoes
    p = subprocess.Popen([str(r.reefctl_bin), "--socket", str(r.socket), "--watch", "0.2", "shards", "echo0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        out = b""
        os.set_blocking(p.stdout.fileno(), False)
        while out.count(b"SHARD") < 3:
            assert time.monotonic() < deadline, out
            out += p.stdout.read() or b""
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
