"""reef-echo's UDP fast path end to end over DPDK virtual devices: net_af_packet on a veth pair
whose dataplane end is in a namespace of its own, net_tap, and net_af_xdp where BPF may be loaded.
The test's side sends and receives raw Ethernet frames (AF_PACKET socket on the veth peer or the
tap interface). Also: malformed frames, bad start-up options, shutdown under traffic, and two
shards on a one-queue port (software RSS). Every process is stopped by PID (`processes`), every
namespace and interface removed (`veth`). See conftest.py for the layout."""

import ctypes
import errno
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from dataplane_util import (QUIET, exit_summary, free_port, parse_udp_frame, udp_frame, unique_name, run)

# Tests that make namespaces and interfaces or use raw sockets; the start-up error tests need neither.
needs_root = pytest.mark.needs_root

CLIENT_IP = "198.18.0.2"
SERVER_IP = "198.18.0.1"
ECHO_PORT = 7


def replies_to(port, client_port_range):
    lo, hi = client_port_range

    def match(frame):
        f = parse_udp_frame(frame)
        return f is not None and f["sport"] == port and lo <= f["dport"] < hi

    return match


def echo_round(raw, server_mac, client_mac, n, sport_base=40000, size=32, timeout=10, port=ECHO_PORT):
    """Send n requests (source ports sport_base..sport_base+n-1) and check the n replies: swapped
    addresses and ports, same payload, valid checksums. Returns the replies (parsed)."""
    frames = []
    for i in range(n):
        payload = struct.pack("!I", i) + bytes((i + j) & 0xFF for j in range(size - 4))
        frames.append(udp_frame(server_mac, client_mac, CLIENT_IP, SERVER_IP, sport_base + i, port, payload))
    for fr in frames:
        raw.send(fr)
    got = [parse_udp_frame(f) for f in raw.collect(n, timeout, replies_to(port, (sport_base, sport_base + n)))]
    assert len(got) == n, f"{len(got)} of {n} replies"
    seen = set()
    for r in got:
        i = struct.unpack("!I", r["payload"][:4])[0]
        seen.add(i)
        assert r["dport"] == sport_base + i
        assert r["src_mac"] == server_mac and r["dst_mac"] == client_mac
        assert r["src_ip"] == SERVER_IP and r["dst_ip"] == CLIENT_IP
        assert r["payload"] == frames[i][42:]
        assert r["ip_csum_ok"] and r["udp_csum_ok"], r
    assert seen == set(range(n))
    return got


def stop_and_summary(p):
    p.signal(signal.SIGTERM)
    rc = p.wait(timeout=30)
    assert rc == 0, p.output
    return exit_summary(p.output)


@needs_root
def test_udp_echo_over_af_packet(veth, raw_ports, start_dataplane):
    p, mac = start_dataplane(f"net_af_packet0,iface={veth.dp}", netns=veth.netns)
    assert mac == veth.dp_mac  # af_packet uses the interface's MAC
    raw = raw_ports(veth.peer)
    echo_round(raw, mac, veth.peer_mac, 64)
    s = stop_and_summary(p)
    assert s["answered"] == 64, p.output


@needs_root
def test_udp_echo_over_tap(raw_ports, start_dataplane):
    # In this namespace (the tap interface appears where the process runs), so on a free port.
    tap = unique_name("rftap")
    port = free_port()
    p, mac = start_dataplane(f"net_tap0,iface={tap}", udp_port=port)
    # The tap interface is the kernel's side of the port: frames sent on it reach the PMD.
    run("sysctl", "-q", "-w", f"net.ipv6.conf.{tap}.disable_ipv6=1", check=False)
    run("ip", "link", "set", tap, "up")
    raw = raw_ports(tap)
    tap_mac = re.search(r"link/ether ([0-9a-f:]{17})", run("ip", "-o", "link", "show", tap).stdout).group(1)
    echo_round(raw, mac, tap_mac, 32, port=port)
    s = stop_and_summary(p)
    assert s["answered"] == 32, p.output


def malformed_frames(server_mac, client_mac):
    good = udp_frame(server_mac, client_mac, CLIENT_IP, SERVER_IP, 50000, ECHO_PORT, b"x" * 32)

    def with_ip(frame, offset, data):
        return frame[:14 + offset] + data + frame[14 + offset + len(data):]

    return {
        "runt": good[:10],
        "header only": good[:30],
        "total length beyond frame": with_ip(good, 2, struct.pack("!H", 1400)),
        "IHL 3": with_ip(good, 0, b"\x43"),
        "IHL 15 beyond frame": with_ip(good[:14 + 40], 0, b"\x4f"),
        "truncated UDP": good[:14 + 20 + 4],
        "IP length cuts UDP header": with_ip(good[:14 + 24], 2, struct.pack("!H", 24)),
        "UDP length beyond datagram": good[:38] + struct.pack("!H", 500) + good[40:],
        "UDP length below 8": good[:38] + struct.pack("!H", 4) + good[40:],
        "bad IP checksum": with_ip(good, 10, b"\xde\xad"),
    }


@needs_root
def test_malformed_frames_are_not_answered(veth, raw_ports, start_dataplane):
    p, mac = start_dataplane(f"net_af_packet0,iface={veth.dp}", netns=veth.netns)
    raw = raw_ports(veth.peer)
    bad = malformed_frames(mac, veth.peer_mac)
    for _ in range(3):
        for name, frame in bad.items():
            try:
                raw.send(frame)
            except OSError as e:  # the kernel may refuse a frame shorter than a header
                assert name == "runt", (name, e)
    stray = raw.collect(1, 2.0, replies_to(ECHO_PORT, (50000, 50001)))
    assert stray == [], [parse_udp_frame(f) for f in stray]
    assert p.proc.poll() is None, p.output
    echo_round(raw, mac, veth.peer_mac, 16)  # still answers
    s = stop_and_summary(p)
    assert s["answered"] == 16, p.output
    sh = s["shards"][0]
    # Caught by the device (runts, lengths) or by the fast path (the rest): none answered.
    assert s["malformed"] + sh["runt"] + sh["bad-length"] > 0, p.output


@pytest.mark.parametrize("args, message", [
    (["--vdev", "net_nosuchdriver0"], r"net_nosuchdriver0"),
    (["--vdev", "net_null0", "--dpdk-port-index", "5"], r"(?i)port.*5|5.*port"),
    (["--huge-dir", "/nonexistent"], r"/nonexistent"),
])
def test_bad_startup_exits_2_with_a_message(echo_bin, args, message):
    argv = [echo_bin, "--smp", "1", *QUIET, "--port", str(free_port()), "--dpdk-pmd", *args]
    if "--huge-dir" not in args:
        argv.append("--no-huge")
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert re.search(message, out), out
    assert "PANIC" not in out, out


class Flooder(threading.Thread):
    """Sends the same request frames in a loop until stopped (counts what it sent)."""

    def __init__(self, iface, frames):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sock.bind((iface, 0))
        self.frames = frames
        self.sent = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for f in self.frames:
                try:
                    self.sock.send(f)
                    self.sent += 1
                except OSError as e:
                    if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                        raise

    def stop(self):
        self.done.set()
        self.join(timeout=10)
        self.sock.close()


@needs_root
def test_clean_shutdown_under_traffic(veth, start_dataplane):
    p, mac = start_dataplane(f"net_af_packet0,iface={veth.dp}", netns=veth.netns, smp=2)
    frames = [udp_frame(mac, veth.peer_mac, CLIENT_IP, SERVER_IP, 30000 + i, ECHO_PORT, b"f" * 18) for i in range(64)]
    flood = Flooder(veth.peer, frames)
    flood.start()
    try:
        deadline = time.monotonic() + 10
        while flood.sent < 5000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flood.sent > 0
        p.signal(signal.SIGTERM)
        rc = p.wait(timeout=30)
    finally:
        flood.stop()
    assert rc == 0, p.output
    s = exit_summary(p.output)
    assert s["answered"] and s["answered"] > 0, p.output
    # dpdk_device warns when mbufs or zero-copy frames did not come back.
    assert not re.search(r"(?i)leak|not freed|never completed", p.output), p.output


@needs_root
def test_two_shards_on_one_queue_answer_every_flow(veth, raw_ports, start_dataplane):
    p, mac = start_dataplane(f"net_af_packet0,iface={veth.dp}", netns=veth.netns, smp=2)
    assert "1 queue(s) for 2 shard(s)" in p.output, p.output
    raw = raw_ports(veth.peer)
    n = 256  # distinct source ports: distinct flows, spread over both shards by software RSS
    echo_round(raw, mac, veth.peer_mac, n, sport_base=20000)
    s = stop_and_summary(p)
    assert s["answered"] == n, p.output
    shards = s["shards"]
    assert set(shards) == {0, 1}, p.output
    assert shards[0]["forwarded"] > 0, p.output  # shard 0 polls the only queue and forwards
    assert shards[1]["received-forwarded"] > 0 and shards[1]["hooked"] > 0, p.output
    assert shards[0]["hooked"] > 0, p.output
    assert shards[0]["hooked"] + shards[1]["hooked"] == n, p.output


def bpf_denied_reason():
    """None if this process may load a BPF program (a trivial socket filter), else why not."""
    # struct bpf_insn: code u8, dst_reg:4 src_reg:4, off s16, imm s32. r0 = 0; exit.
    insns = struct.pack("<BBhi", 0xB7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    insn_buf = ctypes.create_string_buffer(insns)
    license_buf = ctypes.create_string_buffer(b"GPL")
    # union bpf_attr for BPF_PROG_LOAD: prog_type u32, insn_cnt u32, insns u64, license u64, ...
    attr = struct.pack("<IIQQ", 1, 2, ctypes.addressof(insn_buf), ctypes.addressof(license_buf)) + bytes(96)
    attr_buf = ctypes.create_string_buffer(attr)
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_bpf, BPF_PROG_LOAD = 321, 5
    fd = libc.syscall(SYS_bpf, BPF_PROG_LOAD, attr_buf, len(attr))
    if fd >= 0:
        os.close(fd)
        return None
    err = ctypes.get_errno()
    return f"loading BPF programs is denied on this machine (bpf(BPF_PROG_LOAD): {os.strerror(err)})"


@needs_root
def test_udp_echo_over_af_xdp(veth, raw_ports, start_dataplane, tmp_path):
    reason = bpf_denied_reason()
    if reason:
        pytest.skip(reason)
    # DPDK 22.11's af_xdp PMD does not give back its umem (libxdp's xsk_umem__create, 80 bytes) nor
    # the mbufs in its fill ring when the port is closed: LeakSanitizer (in sanitizer builds) must
    # not count that against Reef. (dpdk_device then warns that the pool is leaked: expected here.)
    supp = tmp_path / "lsan.supp"
    supp.write_text("leak:xsk_umem__create\n")
    lsan = " ".join(filter(None, [os.environ.get("LSAN_OPTIONS", "").replace(":", " "),
                                  f"suppressions={supp}", "print_suppressions=0"])).replace(" ", ":")
    p, mac = start_dataplane(f"net_af_xdp0,iface={veth.dp}", netns=veth.netns, env={"LSAN_OPTIONS": lsan})
    raw = raw_ports(veth.peer)
    echo_round(raw, mac, veth.peer_mac, 32)
    s = stop_and_summary(p)
    assert s["answered"] == 32, p.output


@pytest.mark.parametrize("args, message", [
    ([], r"--udp-fast-path needs --dpdk-pmd"),
    (["--dpdk-pmd", "--no-huge", "--vdev", "net_null0", "--udp-port", "0"], r"needs a UDP port"),
    (["--dpdk-pmd", "--no-huge", "--vdev", "net_null0", "--address", "::1"], r"IPv4 only"),
])
def test_bad_fast_path_options_exit_2(echo_bin, args, message):
    argv = [echo_bin, "--smp", "1", *QUIET, "--port", str(free_port()), "--udp-fast-path", *args]
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert re.search(message, out), out
