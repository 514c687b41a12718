"""UDP on the wire (issue 9): echo (also fragmented), bad checksum dropped and counted, zero
checksum accepted, a lying length dropped, closed port answered with a rate-limited ICMP port
unreachable. reef-echo on the native stack over net_af_packet; each case ends by checking that
the dataplane still serves."""

import time

from scapy.all import ICMP, IP, UDP, IPerror, Raw, UDPerror, fragment

from wire_util import dataplane, peer, wire  # noqa: F401  (fixtures)
from wire_util import (NEEDS_ROOT, HOST_IP, assert_serving, is_icmp_unreachable, kernel_udp_echo,
                       wait_until)

pytestmark = NEEDS_ROOT

DROPS = "reef_native_udp_rx_dropped_total"


def udp_checksum_ok(ip_pkt):
    """The UDP checksum of a received IP/UDP packet verifies (or is absent)."""
    raw = bytes(ip_pkt[UDP])[:ip_pkt[UDP].len]
    if ip_pkt[UDP].chksum == 0:
        return True
    pseudo = (bytes(map(int, ip_pkt[IP].src.split("."))) + bytes(map(int, ip_pkt[IP].dst.split("."))) +
              bytes([0, 17]) + len(raw).to_bytes(2, "big"))
    data = pseudo + raw
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def echo_reply_to(sport):
    return lambda p: UDP in p and ICMP not in p and p[UDP].sport == 7 and p[UDP].dport == sport


def test_udp_echo(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    for i, n in enumerate([0, 1, 100, 1472]):
        payload = bytes((j + i) & 0xFF for j in range(n))
        r = p.exchange(p.udp(payload, sport=41000 + i), echo_reply_to(41000 + i))
        assert r is not None, f"no echo of {n} bytes"
        assert bytes(r[UDP].payload)[:n] == payload and r[UDP].len == 8 + n
        assert r[IP].src == dp.ip and r[IP].dst == HOST_IP
        assert udp_checksum_ok(r[IP]), f"bad UDP checksum in the echo of {n} bytes"
    assert kernel_udp_echo(dp.ip, payload=b"k" * 1000) == b"k" * 1000
    assert dp.counter("reef_native_udp_rx_datagrams_total") == 5
    assert_serving(dp, p)


def test_fragmented_udp_echo(dataplane, peer):
    dp = dataplane(vdev="tap")  # net_af_packet's kernel would reassemble the fragments itself
    p = peer(dp)
    payload = bytes(range(256)) * 16  # 4096 bytes
    frags = fragment(IP(src=HOST_IP, dst=dp.ip, id=0x5151) / UDP(sport=41100, dport=7) / Raw(payload), fragsize=1200)
    p.send([p.eth() / f for f in frags])
    # The echo is fragmented too: rebuild it from its fragments.
    parts, end = {}, None
    deadline = time.monotonic() + 5
    while (end is None or sum(map(len, parts.values())) < end) and time.monotonic() < deadline:
        got = p.expect(lambda x: IP in x and x[IP].proto == 17 and x[IP].src == dp.ip, 1, deadline - time.monotonic())
        if not got:
            break
        ip = got[0][IP]
        data = bytes(ip.payload)[:ip.len - ip.ihl * 4]
        parts[ip.frag * 8] = data
        if not ip.flags.MF:
            end = ip.frag * 8 + len(data)
    assert end is not None and sum(map(len, parts.values())) == end, "no complete fragmented echo"
    whole = b"".join(parts[o] for o in sorted(parts))
    assert whole[8:] == payload
    assert int.from_bytes(whole[2:4], "big") == 41100
    assert dp.counter("reef_native_ipv4_reasm_ok_total") == 1
    assert_serving(dp, p)


def test_bad_checksum_dropped_and_counted(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    before = dp.counter(DROPS, reason="bad_checksum")
    frame = p.ip() / UDP(sport=41200, dport=7, chksum=0xBEEF) / Raw(b"corrupt")
    assert p.exchange(frame, echo_reply_to(41200), timeout=0.7) is None, "a bad checksum was echoed"
    assert dp.counter(DROPS, reason="bad_checksum") == before + 1
    assert dp.counter("reef_native_udp_rx_datagrams_total") == 0
    assert_serving(dp, p)


def test_zero_checksum_accepted(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    frame = p.ip() / UDP(sport=41300, dport=7, chksum=0) / Raw(b"no checksum")
    r = p.exchange(frame, echo_reply_to(41300))
    assert r is not None and bytes(r[UDP].payload) == b"no checksum"
    assert udp_checksum_ok(r[IP])
    assert dp.counter("reef_native_udp_rx_zero_checksum_total") == 1
    assert_serving(dp, p)


def test_lying_udp_length_dropped(dataplane, peer):
    dp = dataplane()
    p = peer(dp)
    for name, ln in (("longer than the datagram", 100), ("shorter than the header", 4)):
        before = dp.counter(DROPS, reason="short")
        frame = p.ip() / UDP(sport=41400, dport=7, len=ln, chksum=0) / Raw(b"0123456789")
        assert p.exchange(frame, echo_reply_to(41400), timeout=0.5) is None, name
        assert dp.counter(DROPS, reason="short") == before + 1, name
    assert_serving(dp, p)


def test_closed_port_gets_port_unreachable_rate_limited(dataplane, peer):
    # A burst of 5 errors, then 5 per second.
    dp = dataplane(extra=["--icmp-error-rate", "5", "--icmp-error-burst", "5"])
    p = peer(dp)
    r = p.exchange(p.udp(b"anyone?", sport=41500, dport=9999), is_icmp_unreachable())
    assert r is not None, "no ICMP for a closed port"
    assert r[ICMP].code == 3, "port unreachable is code 3"
    assert r[IP].src == dp.ip and r[IP].dst == HOST_IP
    quoted = r[ICMP].payload
    assert IPerror in quoted and UDPerror in quoted, "the error quotes the datagram"
    assert quoted[IPerror].dst == dp.ip and quoted[UDPerror].sport == 41500 and quoted[UDPerror].dport == 9999

    sent = 200
    start = time.monotonic()
    p.send([p.udp(b"x", sport=42000 + i, dport=9999) for i in range(sent)])
    elapsed = time.monotonic() - start
    got = p.expect(is_icmp_unreachable(3), count=sent, timeout=1.0)
    # The bucket held at most 4 tokens after the first error, then refills at 5/s.
    allowed = 5 + 5 * (elapsed + 1.0) + 1
    assert 1 <= len(got) <= allowed, f"{len(got)} port unreachables for {sent} datagrams in {elapsed:.2f} s"
    wait_until(lambda: dp.counter("reef_native_udp_rx_no_port_total") == sent + 1, timeout=3,
               what="every datagram to the closed port counted")
    limited = dp.counter("reef_native_icmp_tx_rate_limited_total")
    assert limited >= sent - allowed, f"only {limited} errors rate-limited"
    assert dp.counter("reef_native_icmp_tx_port_unreachable_total") + limited == sent + 1
    assert_serving(dp, p)
