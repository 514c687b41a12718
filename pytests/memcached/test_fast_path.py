"""reef-memcached's UDP fast path on the wire: the server in a namespace of its own on a veth pair
through DPDK's net_af_packet (--dpdk-pmd --no-huge), the test sending raw Ethernet frames that
carry memcached UDP requests from the other end. Requests the hook can serve (one get or set of a
key of the receiving shard) are answered from the frame itself, with valid IPv4 and UDP checksums;
the others are passed on (and, with the posix stack behind the port, not answered).
Needs CAP_NET_ADMIN and CAP_NET_RAW (skipped otherwise)."""

import re
import signal
import struct

import pytest

from mc_util import QUIET
from dataplane_util import parse_udp_frame, udp_frame

CLIENT_IP = "198.18.0.2"
SERVER_IP = "198.18.0.1"
PORT = 11211


def mc_frame(server_mac, client_mac, sport, req_id, body, total=1):
    payload = struct.pack(">HHHH", req_id, 0, total, 0) + body
    return udp_frame(server_mac, client_mac, CLIENT_IP, SERVER_IP, sport, PORT, payload)


def reply_to(sport):
    def match(frame):
        f = parse_udp_frame(frame)
        return f is not None and f["sport"] == PORT and f["dport"] == sport

    return match


@pytest.mark.needs_root
def test_get_and_set_answered_by_the_packet_hook(veth, raw_ports, processes, memcached_bin):
    argv = ["ip", "netns", "exec", veth.netns, memcached_bin, "--smp", "1", *QUIET, "-p", str(PORT), "-U", str(PORT),
            "--dpdk-pmd", "--no-huge", "--vdev", f"net_af_packet0,iface={veth.dp}", "--udp-fastpath"]
    p = processes.start(argv)
    p.wait_for(r"reef-memcached listening on", timeout=60)
    m = re.search(r"DPDK port \S+ \(([0-9a-f:]{17})\) started", p.output)
    assert m, p.output
    mac = m.group(1)
    raw = raw_ports(veth.peer)

    def roundtrip(sport, req_id, body):
        raw.send(mc_frame(mac, veth.peer_mac, sport, req_id, body))
        got = raw.collect(1, 5, reply_to(sport))
        assert got, f"no reply to {body!r}"
        f = parse_udp_frame(got[0])
        assert f["ip_csum_ok"] and f["udp_csum_ok"], f
        assert (f["src_mac"], f["dst_mac"], f["src_ip"], f["dst_ip"]) == (mac, veth.peer_mac, SERVER_IP, CLIENT_IP)
        rid, seq, count, _ = struct.unpack(">HHHH", f["payload"][:8])
        assert (rid, seq, count) == (req_id, 0, 1)
        return f["payload"][8:]

    assert roundtrip(40001, 1, b"set fk 5 0 3\r\nabc\r\n") == b"STORED\r\n"
    assert roundtrip(40002, 2, b"get fk\r\n") == b"VALUE fk 5 3\r\nabc\r\nEND\r\n"
    assert roundtrip(40003, 3, b"get nope\r\n") == b"END\r\n"
    # The binary protocol too (get of the same key: flags extras + value).
    binget = struct.pack(">BBHBBHIIQ", 0x80, 0x00, 2, 0, 0, 0, 2, 0x55, 0) + b"fk"
    r = roundtrip(40004, 4, binget)
    assert r[:2] == b"\x81\x00" and r[24:] == struct.pack(">I", 5) + b"abc"
    # A larger reply than the request (value of 1000 bytes) is built in the same buffer.
    assert roundtrip(40005, 5, b"set big 0 0 1000\r\n" + b"b" * 1000 + b"\r\n") == b"STORED\r\n"
    assert roundtrip(40006, 6, b"get big\r\n") == b"VALUE big 0 1000\r\n" + b"b" * 1000 + b"\r\nEND\r\n"
    # Not for the hook: a multi-key get, a multi-datagram request (passed on; the posix stack
    # behind the port does not see them, so no answer).
    raw.send(mc_frame(mac, veth.peer_mac, 40007, 7, b"get fk big\r\n"))
    raw.send(mc_frame(mac, veth.peer_mac, 40008, 8, b"get fk\r\n", total=2))
    assert raw.collect(1, 1.0, reply_to(40007)) == []
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.output
    fp = re.search(r"fast path: (\d+) requests answered, (\d+) malformed, (\d+) passed on", p.output)
    assert fp, p.output
    assert int(fp.group(1)) == 6, p.output
    assert int(fp.group(3)) >= 2, p.output
    s = re.search(r"(\d+) fast-path gets, (\d+) fast-path sets", p.output)
    assert s and (int(s.group(1)), int(s.group(2))) == (4, 2), p.output
