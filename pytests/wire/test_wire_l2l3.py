"""L2/L3 on the wire (issue 9): ARP, ICMP echo, IPv4 header validation with per-reason drop
counters, IP options, fragment reassembly and its bounds. The dataplane is reef-echo on the native
stack over net_af_packet (wire_util.py); every case ends by checking it still serves."""

import time

from scapy.all import ARP, ICMP, IP, UDP, Ether, IPOption_NOP, IPOption_RR, Raw, fragment

from wire_util import dataplane, peer, wire  # noqa: F401  (fixtures)
from wire_util import (NEEDS_ROOT, HOST_IP, assert_serving, is_arp_reply_from, is_echo_reply, sniffer,
                       wait_until)

pytestmark = NEEDS_ROOT

DROPS = "reef_native_ipv4_rx_dropped_total"
REASM_DROPS = "reef_native_ipv4_reasm_dropped_total"


def inet_checksum_ok(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def collect_datagram(peer, proto, timeout=3.0, src=None):
    """Receive the fragments of one IPv4 datagram of `proto` (or one whole datagram) and return
    (payload bytes after the IP header, number of fragments), or (None, n) on timeout."""
    frags = {}
    end = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = peer.expect(lambda p: IP in p and p[IP].proto == proto and (src is None or p[IP].src == src), 1,
                          deadline - time.monotonic())
        if not got:
            break
        ip = got[0][IP]
        data = bytes(ip.payload)[:ip.len - ip.ihl * 4]
        off = ip.frag * 8
        frags[off] = data
        if not ip.flags.MF:
            end = off + len(data)
        if end is not None and sum(len(d) for d in frags.values()) == end:
            out = b"".join(frags[o] for o in sorted(frags))
            return out, len(frags)
    return None, len(frags)


def test_arp_request_answered_with_our_mac(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    before = dp.counter("reef_native_arp_tx_replies_total")
    r = p.exchange(p.arp_request(), is_arp_reply_from(dp.ip))
    assert r is not None, "no ARP reply"
    assert r[ARP].hwsrc == dp.mac and r[ARP].psrc == dp.ip
    assert r[ARP].hwdst == p.mac and r[ARP].pdst == HOST_IP
    assert r[Ether].dst == p.mac and r[Ether].src == dp.mac
    assert dp.counter("reef_native_arp_tx_replies_total") == before + 1
    assert_serving(dp, p)


def test_arp_for_another_address_ignored(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    before = dp.counter("reef_native_arp_rx_dropped_total", reason="not_for_us")
    replies_before = dp.counter("reef_native_arp_tx_replies_total")
    r = p.exchange(p.arp_request(pdst="198.18.0.99"), lambda x: ARP in x and x[ARP].op == 2, timeout=1.0)
    assert r is None, f"answered an ARP request for another address: {r!r}"
    assert dp.counter("reef_native_arp_rx_dropped_total", reason="not_for_us") == before + 1
    assert dp.counter("reef_native_arp_tx_replies_total") == replies_before
    assert_serving(dp, p)


def test_gratuitous_arp_at_start(dataplane, peer, wire):
    # Listening before the dataplane exists: the announcement is among its first frames.
    cap = sniffer(wire.peer_if, lambda x: ARP in x)
    try:
        dp = dataplane()
        wait_until(lambda: any(x[ARP].psrc == dp.ip for x in cap.frames), timeout=5,
                   what="a gratuitous ARP from the dataplane")
    finally:
        cap.stop()
    x = next(x for x in cap.frames if x[ARP].psrc == wire.dp_ip)
    assert x[Ether].dst == "ff:ff:ff:ff:ff:ff" and x[Ether].src == dp.mac
    assert x[ARP].op == 1 and x[ARP].pdst == dp.ip and x[ARP].hwsrc == dp.mac
    assert dp.counter("reef_native_arp_tx_gratuitous_total") == 1
    assert_serving(dp, peer(dp))


def test_icmp_echo_payloads_from_0_to_mtu(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    sizes = [0, 1, 7, 8, 9, 63, 64, 100, 511, 1000, 1471, 1472]  # 1472 + 28 = 1500, the MTU
    for seq, n in enumerate(sizes, 1):
        payload = bytes((i * 7 + seq) & 0xFF for i in range(n))
        r = p.exchange(p.ping(payload, seq=seq), is_echo_reply(id=0x5eef, seq=seq), timeout=3)
        assert r is not None, f"no echo reply for a {n}-byte payload"
        assert bytes(r[ICMP].payload)[:n] == payload, f"payload of {n} bytes changed"
        assert r[IP].src == dp.ip and r[IP].dst == HOST_IP
        icmp_bytes = bytes(r[IP].payload)[:r[IP].len - 20]
        assert inet_checksum_ok(icmp_bytes), f"bad ICMP checksum in the reply to {n} bytes"
        assert inet_checksum_ok(bytes(r[IP])[:20]), "bad IP header checksum"
    assert dp.counter("reef_native_icmp_tx_echo_replies_total") == len(sizes)
    assert_serving(dp, p)


def malformed_cases(p):
    """(name, frame, counter, labels): frames that would be an echo request if they were valid,
    and the counter that must count their drop."""
    echo = ICMP(type=8, id=0x5eef, seq=77) / Raw(b"x" * 16)
    src, dst = HOST_IP, p.dp_ip
    good = IP(src=src, dst=dst) / echo
    total = len(good)
    cases = [
        ("bad checksum", p.eth() / IP(src=src, dst=dst, chksum=0x1234) / echo, DROPS, {"reason": "bad_checksum"}),
        ("version 6 in an IPv4 frame", p.eth() / IP(src=src, dst=dst, version=6) / echo, DROPS,
         {"reason": "bad_version"}),
        ("version 5", p.eth() / IP(src=src, dst=dst, version=5) / echo, DROPS, {"reason": "bad_version"}),
        ("IHL 4 (shorter than the fixed header)", p.eth() / IP(src=src, dst=dst, ihl=4) / echo, DROPS,
         {"reason": "bad_header_length"}),
        ("IHL 15 past the packet's end",
         p.eth(type=0x0800) / Raw(_with_ihl(bytes(good)[:20], 15) + bytes(echo)[:8]), DROPS,
         {"reason": "bad_header_length"}),
        ("total length beyond the bytes received", p.eth() / IP(src=src, dst=dst, len=total + 100) / echo, DROPS,
         {"reason": "bad_total_length"}),
        ("total length shorter than the header", p.eth() / IP(src=src, dst=dst, len=16) / echo, DROPS,
         {"reason": "bad_total_length"}),
        # Lying the other way: the datagram is cut at the total length (the rest is taken for
        # Ethernet padding) and the ICMP message left is short of its checksum.
        ("total length cutting into the payload", p.eth() / IP(src=src, dst=dst, len=total - 10) / echo,
         "reef_native_icmp_rx_dropped_total", {"reason": "malformed"}),
        ("TTL 0", p.eth() / IP(src=src, dst=dst, ttl=0) / echo, DROPS, {"reason": "ttl_zero"}),
        ("10 bytes of IP", p.eth(type=0x0800) / Raw(bytes(good)[:10]), DROPS, {"reason": "too_short"}),
        ("broadcast source", p.eth() / IP(src="255.255.255.255", dst=dst) / echo, DROPS, {"reason": "bad_source"}),
        ("another host's address", p.eth() / IP(src=src, dst="198.18.0.77") / echo, DROPS,
         {"reason": "not_for_us"}),
    ]
    return cases


def _with_ihl(header20, ihl):
    """A 20-byte IPv4 header with its IHL field set to `ihl` and the checksum fixed."""
    h = bytearray(header20)
    h[0] = 0x40 | ihl
    h[10:12] = b"\0\0"
    s = sum(int.from_bytes(h[i:i + 2], "big") for i in range(0, 20, 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    h[10:12] = (~s & 0xFFFF).to_bytes(2, "big")
    return bytes(h)


# On net_af_packet, which offers no receive checksum offload: with net_tap the PMD checks IPv4
# checksums itself and the device drops bad ones in a counter (dpdk rx_bad_csum) that the control
# socket does not show.
def test_malformed_ipv4_headers_dropped_and_counted_by_reason(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    for name, frame, counter, labels in malformed_cases(p):
        before = dp.counter(counter, **labels)
        # The DPDK device layer refuses frames whose IPv4 version, IHL or total length cannot be
        # right before any stack sees them (its rx_dropped_bad_length); the stack counts the
        # rest by reason. Either way: dropped, and counted exactly once.
        dev_before = dp.device_stats()["rx_dropped_bad_length"]
        replies_before = dp.counter("reef_native_icmp_tx_echo_replies_total")
        r = p.exchange(frame, is_echo_reply(seq=77), timeout=0.5)
        assert r is None, f"{name}: answered"
        by_stack = dp.counter(counter, **labels) - before
        by_device = dp.device_stats()["rx_dropped_bad_length"] - dev_before
        assert by_stack + by_device == 1, \
            f"{name}: counted {by_stack} times in {counter}{labels}, {by_device} times by the device"
        assert dp.counter("reef_native_icmp_tx_echo_replies_total") == replies_before, name
    # And a valid one still goes through.
    assert p.exchange(p.ping(b"after", seq=78), is_echo_reply(seq=78)) is not None
    assert_serving(dp, p)


def test_ip_options_skipped(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    before = dp.counter("reef_native_ipv4_rx_options_skipped_total")
    opts = [IPOption_NOP(), IPOption_RR(routers=["198.18.0.200"]), IPOption_NOP()]
    r = p.exchange(p.ping(b"with options", seq=5, options=opts), is_echo_reply(seq=5))
    assert r is not None, "echo with IP options unanswered"
    assert bytes(r[ICMP].payload)[:12] == b"with options"
    assert dp.counter("reef_native_ipv4_rx_options_skipped_total") == before + 1
    # UDP with options too.
    u = p.ip(options=opts) / UDP(sport=40001, dport=7) / Raw(b"udp with options")
    r = p.exchange(u, lambda x: UDP in x and x[UDP].dport == 40001)
    assert r is not None and bytes(r[UDP].payload) == b"udp with options"
    assert_serving(dp, p)


# On net_tap: net_af_packet's kernel reassembles fragments itself (see the `dataplane` fixture).
def test_fragmented_echo_reassembled(dataplane, peer):
    dp = dataplane(vdev="tap")
    p = peer(dp)
    payload = bytes(i & 0xFF for i in range(4000))
    for order, seq in (("in order", 10), ("reversed", 11)):
        frags = fragment(IP(src=HOST_IP, dst=dp.ip, id=0x4242 + seq) / ICMP(type=8, id=0x5eef, seq=seq) /
                         Raw(payload), fragsize=1024)
        assert len(frags) == 4
        if order == "reversed":
            frags = list(reversed(frags))
        ok_before = dp.counter("reef_native_ipv4_reasm_ok_total")
        p.send([p.eth() / f for f in frags])
        reply, n = collect_datagram(p, 1, src=dp.ip)
        assert reply is not None, f"{order}: no (complete) reply to a fragmented echo"
        assert n >= 3, "a 4028-byte reply over a 1500-byte MTU comes in fragments"
        assert reply[0] == 0 and int.from_bytes(reply[6:8], "big") == seq
        assert reply[8:] == payload, f"{order}: payload changed"
        assert inet_checksum_ok(reply), "bad ICMP checksum in the reassembled reply"
        assert dp.counter("reef_native_ipv4_reasm_ok_total") == ok_before + 1
    assert dp.counter("reef_native_ipv4_frag_datagrams_total") == 2
    assert dp.counter("reef_native_ipv4_reasm_bytes") == 0
    assert_serving(dp, p)


def _frag(p, ident, offset8, data, more):
    flags = "MF" if more else 0
    return p.eth() / IP(src=HOST_IP, dst=p.dp_ip, id=ident, proto=1, frag=offset8, flags=flags) / Raw(data)


def _first_echo_bytes(seq, n):
    """The first n bytes of an ICMP echo request (its checksum need not be right: the datagram
    must never be rebuilt)."""
    return bytes(ICMP(type=8, id=0x5eef, seq=seq, chksum=0) / Raw(b"f" * (n - 8)))


def test_bad_fragments_dropped_and_memory_released(dataplane, peer):
    dp = dataplane(extra=["--ip-reassembly-timeout", "1000"], vdev="tap")
    p = peer(dp)

    def dropped(reason):
        return dp.counter(REASM_DROPS, reason=reason)

    # Overlapping (RFC 5722): 0-15 and 8-23, then the end: nothing rebuilt, counted.
    before = dropped("overlap")
    p.send([_frag(p, 0x100, 0, _first_echo_bytes(20, 16), True), _frag(p, 0x100, 1, b"o" * 16, True),
            _frag(p, 0x100, 3, b"e" * 8, False)])
    assert p.expect_one(is_echo_reply(seq=20), timeout=1.0) is None, "overlapping fragments were answered"
    assert dropped("overlap") == before + 1

    # Oversized: a fragment reaching past 65535 bytes.
    before = dropped("oversize")
    p.send(_frag(p, 0x101, 8189, b"z" * 64, False))  # 65512 + 64 + 20 > 65535
    wait_until(lambda: dropped("oversize") == before + 1, timeout=3, what="the oversized fragment counted")

    # Oversized the other way: past the end the last fragment gave.
    before = dropped("oversize")
    p.send([_frag(p, 0x102, 2, b"l" * 8, False), _frag(p, 0x102, 3, b"p" * 16, True)])
    wait_until(lambda: dropped("oversize") == before + 1, timeout=3, what="the fragment past the end counted")

    # Malformed: not a multiple of 8 bytes before the last.
    before = dropped("malformed")
    p.send(_frag(p, 0x103, 0, _first_echo_bytes(21, 13), True))
    wait_until(lambda: dropped("malformed") == before + 1, timeout=3, what="the odd-sized fragment counted")

    # Never completed: held, then dropped at the timeout.
    before = dropped("timeout")
    p.send(_frag(p, 0x104, 0, _first_echo_bytes(22, 512), True))
    wait_until(lambda: dp.counter("reef_native_ipv4_reasm_bytes") > 512, timeout=3, what="the fragment held")
    wait_until(lambda: dropped("timeout") == before + 1, timeout=5, what="the incomplete datagram timed out")

    # Everything held is released (poisoned datagrams included) once their timeouts pass.
    wait_until(lambda: dp.counter("reef_native_ipv4_reasm_bytes") == 0 and dp.counter(
        "reef_native_ipv4_reasm_datagrams") == 0, timeout=5, what="reassembly memory released")
    assert dp.counter("reef_native_ipv4_reasm_ok_total") == 0
    assert_serving(dp, p)


def test_fragment_flood_bounded_by_reassembly_memory(dataplane, peer):
    limit = 64 * 1024
    dp = dataplane(extra=["--ip-reassembly-timeout", "1000", "--ip-reassembly-memory", str(limit)], vdev="tap")
    p = peer(dp)
    frames = [_frag(p, 0x1000 + i, 0, _first_echo_bytes(30, 1000), True) for i in range(400)]  # ~420 KB
    p.send(frames)
    wait_until(lambda: dp.counter(REASM_DROPS, reason="memory") > 0, timeout=5, what="evictions under the bound")
    held = dp.counter("reef_native_ipv4_reasm_bytes")
    assert 0 < held <= limit
    # A datagram sent whole meanwhile is still rebuilt and answered.
    frags = fragment(IP(src=HOST_IP, dst=dp.ip, id=0x7777) / ICMP(type=8, id=0x5eef, seq=31) / Raw(b"k" * 2000),
                     fragsize=1024)
    p.send([p.eth() / f for f in frags])
    reply, _ = collect_datagram(p, 1, src=dp.ip)
    assert reply is not None and reply[8:] == b"k" * 2000
    wait_until(lambda: dp.counter("reef_native_ipv4_reasm_bytes") == 0, timeout=5, what="reassembly memory released")
    assert_serving(dp, p)
