"""Scripted TCP conformance of Reef's native stack on a real wire (issue 9's list): a scripted peer
(tcp_peer.py) against reef-echo (port 7) or reef-httpd (port 80, for closes the dataplane starts)
on net_af_packet over a veth pair. Sequence numbers are relative (packetdrill style). Every case
asserts the wire behaviour and that the dataplane still serves afterwards (`tcp_dut` checks the
process is alive at teardown; most cases end with an echo round trip)."""

import random
import time

import pytest

pytestmark = pytest.mark.needs_root

ECHO = 7
HTTP = 80


def echo_works(dut, payload=b"still alive"):
    """A fresh connection echoes `payload`."""
    c = dut.peer.conn(ECHO)
    c.connect()
    c.send("PA", data=payload)
    assert c.read(len(payload)) == payload
    c.send("RA")


def established(dut, **kw):
    syn_opts = kw.pop("syn_opts", None)
    ack_delay = kw.pop("ack_delay", 0.0)
    c = dut.peer.conn(ECHO, **kw)
    sa = c.connect(syn_opts=syn_opts, ack_delay=ack_delay)
    return c, sa


def data_segments(c, total, within=5.0):
    """Collect (without ACKing) data segments until `total` new bytes arrived; returns them by
    relative sequence number (first transmissions only)."""
    segs = {}
    got = 0
    deadline = time.monotonic() + within
    while got < total:
        s = c.next_segment(deadline - time.monotonic())
        assert s is not None, f"{got} of {total} bytes arrived; segments: {sorted(segs)}"
        if s.data and s.rseq not in segs:
            segs[s.rseq] = s
            got += len(s.data)
    return [segs[k] for k in sorted(segs)]


# ---- handshake and options

def test_synack_carries_all_options(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(ECHO)
    syn = c.send("S", seq=0, opts=c.syn_opts(mss=1460, wscale=7, sack=True, ts=True))
    our_tsval = syn["TCP"].options[2][1][0]
    sa = c.expect("SA", ack=1)
    assert sa.opts["mss"] == 1460
    assert sa.opts.get("sack_ok")
    assert "wscale" in sa.opts and 0 < sa.opts["wscale"] <= 14
    assert sa.opts["ts"][1] == our_tsval  # TSecr echoes our TSval (RFC 7323 3.2)
    assert sa.win > 0
    c.send("RA", seq=1)


@pytest.mark.parametrize("mss,wscale,sack,ts", [
    (1460, None, False, False),
    (1200, None, False, True),
    (1460, 3, False, False),
    (536, None, True, False),
])
def test_synack_answers_only_offered_options(tcp_dut, mss, wscale, sack, ts):
    dut = tcp_dut()
    c = dut.peer.conn(ECHO)
    c.send("S", seq=0, opts=c.syn_opts(mss=mss, wscale=wscale, sack=sack, ts=ts))
    sa = c.expect("SA", ack=1)
    assert "mss" in sa.opts
    assert ("wscale" in sa.opts) == (wscale is not None)
    assert bool(sa.opts.get("sack_ok")) == sack
    assert ("ts" in sa.opts) == ts
    c.send("RA", seq=1)


def test_syn_without_options_then_data_uses_default_mss(tcp_dut):
    dut = tcp_dut()
    c, sa = established(dut, syn_opts=[])
    assert "ts" not in sa.opts and "wscale" not in sa.opts
    data = bytes(random.getrandbits(8) for _ in range(1500))
    c.send_data(data, mss=500)
    segs = data_segments(c, len(data))
    assert all(len(s.data) <= 536 for s in segs), segs  # RFC 9293 3.7.1: 536 without the option
    assert b"".join(s.data for s in segs) == data


def test_peer_mss_is_respected(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut, syn_opts=Conn_opts(mss=600))
    data = bytes(range(256)) * 12
    c.send_data(data, mss=500)
    segs = data_segments(c, len(data))
    assert all(len(s.data) <= 600 for s in segs), segs
    assert b"".join(s.data for s in segs) == data


def Conn_opts(**kw):
    from tcp_peer import Conn
    return Conn.syn_opts(**kw)


def test_syn_to_closed_port_gets_rst(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(9)
    c.send("S", seq=0, opts=c.syn_opts())
    r = c.expect("RA", within=2)
    assert r.seq == 0 and r.rack == 1  # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>


def test_ack_to_closed_port_gets_rst_at_its_ack(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(9)
    c.irs = 0
    c.send("A", seq=5, raw_ack=123456)
    r = c.expect("R", within=2)
    assert r.seq == 123456  # <SEQ=SEG.ACK><CTL=RST>


def test_rst_to_closed_port_is_not_answered(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(9)
    c.send("R", seq=0)
    c.expect_none(1.0)


def test_retransmitted_syn_gets_the_same_synack(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(ECHO)
    c.send("S", seq=0, opts=c.syn_opts())
    a = c.expect("SA", ack=1)
    c.send("S", seq=0, opts=c.syn_opts())
    b = c.expect("SA", ack=1)
    assert a.seq == b.seq
    c.ts_ok = True  # negotiated: the ACK must carry it (RFC 7323 3.2)
    c.send("A", seq=1)
    c.send("PA", data=b"x")
    assert c.read(1) == b"x"


def test_synack_retransmitted_with_backoff(tcp_dut):
    dut = tcp_dut()
    c = dut.peer.conn(ECHO)
    c.send("S", seq=0, opts=c.syn_opts())
    first = c.expect("SA", ack=1)
    again = [c.expect("SA", ack=1, within=4.0) for _ in range(2)]
    assert all(s.seq == first.seq for s in again)
    g1, g2 = again[0].t - first.t, again[1].t - again[0].t
    assert g2 > 1.5 * g1, (g1, g2)  # RFC 6298 5.5 back-off applies to the SYN-ACK
    c.send("RA", seq=1)
    echo_works(dut)


def test_handshake_and_data_both_ways(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"hello")
    seg = c.expect("PA", data=b"hello")
    assert seg.rack == 6  # our 5 bytes acknowledged with (or before) the echo
    c.send("A")
    big = bytes(random.getrandbits(8) for _ in range(20000))
    c.send_data(big, mss=1400)
    assert c.read(len(big)) == big
    assert max(s.rack for s in c.received if s.rack is not None) == 1 + 5 + len(big)


def test_data_and_fin_in_one_segment(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("FPA", data=b"bye")
    assert c.read(3) == b"bye"
    fin = c.expect("FA", within=3)
    assert fin.rack == c.snd_nxt  # our FIN acknowledged
    c.send("A")
    c.expect_none(0.5)
    # The connection is gone (LAST-ACK -> CLOSED): more data draws a RST.
    c.send("PA", data=b"more")
    c.expect("R", within=2)


# ---- retransmission

def test_rto_retransmission_backs_off(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"x" * 100)
    first = c.expect("PA", data=b"x" * 100, update=False)
    rx = []
    deadline = time.monotonic() + 6
    while len(rx) < 3 and time.monotonic() < deadline:
        s = c.next_segment(deadline - time.monotonic())
        if s is not None and s.data and s.rseq == first.rseq:
            rx.append(s)
    assert len(rx) == 3, f"retransmissions: {rx}"
    times = [first.t] + [s.t for s in rx]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[1] > 1.5 * gaps[0] and gaps[2] > 1.5 * gaps[1], gaps  # RFC 6298 5.5
    c.consume(first)
    c.send("A")
    c.expect_none(1.0, flags="PA")
    c.send("PA", data=b"again")
    assert c.read(5) == b"again"


def _lossy_flight(dut, sack):
    """A connection whose RTO is long (the third ACK comes 0.8 s late: the first RTT sample), and
    six full segments of echo in flight from the dataplane, none acknowledged yet."""
    c, _ = established(dut, syn_opts=Conn_opts(mss=1000, sack=sack), ack_delay=0.8)
    data = bytes(random.getrandbits(8) for _ in range(6000))
    c.send_data(data, mss=1000)
    segs = data_segments(c, len(data))
    assert len(segs) >= 6, segs
    return c, data, segs


def test_fast_retransmit_after_three_dupacks_newreno(tcp_dut):
    dut = tcp_dut()
    c, data, segs = _lossy_flight(dut, sack=False)
    s1, s2 = segs[0], segs[1]
    c.send("A", ack=s2.rseq)  # the first segment arrived, the second did not
    for _ in range(3):
        c.send("A", ack=s2.rseq)
    rx = c.expect("A", seq=s2.rseq, min_length=1, within=1.0, update=False)
    assert rx.data == s2.data and rx.t - s1.t < 1.2  # long before the RTO (> 2 s)
    end = segs[-1].rseq + len(segs[-1].data)
    c.send("A", ack=end)
    c.rcv_nxt = end
    echo_works(dut)


def test_sack_retransmits_only_the_hole(tcp_dut):
    dut = tcp_dut()
    c, data, segs = _lossy_flight(dut, sack=True)
    assert c.sack_ok
    hole = segs[1]
    c.send("A", ack=hole.rseq)
    sacked_right = segs[2].rseq
    for s in segs[2:5]:
        sacked_right = s.rseq + len(s.data)
        c.send("A", ack=hole.rseq, opts=[("NOP", None), ("NOP", None), ("Timestamp", None), ("NOP", None),
                                         ("NOP", None), ("SAck", (c.irs + segs[2].rseq & 0xFFFFFFFF,
                                                                  c.irs + sacked_right & 0xFFFFFFFF))])
    got = c.collect(1.2)
    retrans = [s for s in got if s.data]
    assert [s.rseq for s in retrans] == [hole.rseq], retrans  # only the hole, once
    assert retrans[0].data == hole.data
    end = segs[-1].rseq + len(segs[-1].data)
    c.send("A", ack=end)
    c.rcv_nxt = end
    assert not [s for s in c.collect(0.8) if s.data], "retransmissions after everything was acknowledged"
    echo_works(dut)


# ---- unacceptable segments, RST, SYN (RFC 9293 3.10.7.4, RFC 5961)

def test_out_of_window_data_is_acked_not_delivered(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", seq=c.snd_nxt + 4_000_000, data=b"far", advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)
    c.expect_none(0.5, flags="PA")
    c.send("PA", data=b"near")
    assert c.read(4) == b"near"


def test_old_duplicate_data_is_acked_not_delivered_again(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"once")
    assert c.read(4) == b"once"
    c.send("PA", seq=c.snd_nxt - 4, data=b"once", advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)
    c.expect_none(0.5, flags="PA")


def test_out_of_order_data_gets_dupack_with_sack(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    base = c.snd_nxt
    c.send("PA", seq=base + 100, data=b"B" * 100, advance=False)
    d = c.expect("A", ack=base, within=2)
    assert d.opts.get("rsack") and d.opts["rsack"][0] == (base + 100, base + 200), d
    c.send("PA", seq=base, data=b"A" * 100)
    c.snd_nxt = base + 200
    assert c.read(200) == b"A" * 100 + b"B" * 100


def test_in_window_rst_draws_challenge_ack(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("R", seq=c.snd_nxt + 100, advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)  # RFC 5961 3.2
    c.send("PA", data=b"alive")
    assert c.read(5) == b"alive"


def test_out_of_window_rst_is_ignored(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("R", seq=c.snd_nxt + 5_000_000, advance=False)
    c.expect_none(0.7)
    c.send("PA", data=b"alive")
    assert c.read(5) == b"alive"


def test_exact_rst_closes_the_connection(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("R", seq=c.snd_nxt, advance=False)
    c.expect_none(0.5)
    c.send("PA", data=b"gone?")
    c.expect("R", within=2)
    echo_works(dut)


def test_syn_in_established_draws_challenge_ack(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("S", seq=c.snd_nxt + 1000, opts=c.syn_opts(), advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)  # RFC 5961 4.2, not a RST, not a SYN-ACK
    c.send("PA", data=b"alive")
    assert c.read(5) == b"alive"


def test_ack_of_unsent_data_is_answered_and_dropped(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"abc", ack=c.rcv_nxt + 100000, advance=False)
    c.expect("A", within=2)  # RFC 9293: an ACK of something not yet sent is answered by an ACK
    c.expect_none(0.5, flags="PA")
    c.send("PA", data=b"def")
    assert c.read(3) == b"def"  # "abc" was dropped with its segment


def test_paws_drops_old_timestamp(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    assert c.ts_ok
    c.send("PA", data=b"new")
    assert c.read(3) == b"new"
    old = (c.tsval() - 100000) & 0xFFFFFFFF
    c.send("PA", data=b"old", ts=(old, c.peer_ts), advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)  # RFC 7323 5.3: dropped, acknowledged
    c.expect_none(0.5, flags="PA")
    c.send("PA", data=b"fresh")
    assert c.read(5) == b"fresh"


def test_segment_without_timestamp_is_dropped_once_negotiated(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    assert c.ts_ok
    c.send("PA", data=b"nots", opts=[], advance=False)  # RFC 7323 3.2
    c.expect_none(0.7, flags="PA")
    c.send("PA", data=b"ts")
    assert c.read(2) == b"ts"


def test_bad_checksum_is_dropped(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"corrupt", chksum=0x1234, advance=False)
    c.expect_none(0.7)
    c.send("PA", data=b"good")
    assert c.read(4) == b"good"


@pytest.mark.parametrize("flags", ["SF", "SR", "SFR", ""])
def test_illegal_flags_dropped_on_listener(tcp_dut, flags):
    dut = tcp_dut()
    c = dut.peer.conn(ECHO)
    c.send(flags, seq=0, opts=c.syn_opts() if "S" in flags else [])
    c.expect_none(0.7)
    c.send("S", seq=0, opts=c.syn_opts())
    c.expect("SA", ack=1)
    c.send("RA", seq=1)


@pytest.mark.parametrize("flags", ["SF", "F" "R" "S" "A", "", "U"])
def test_illegal_flags_dropped_on_connection(tcp_dut, flags):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send(flags, seq=c.snd_nxt, data=b"bad", advance=False)
    c.expect_none(0.7)
    c.send("PA", data=b"ok")
    assert c.read(2) == b"ok"


def test_urgent_data_is_delivered_inline(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("UPA", data=b"urgent!", urgptr=3)  # RFC 9293 3.8.5 / RFC 6093: in line
    assert c.read(7) == b"urgent!"
    c.send("UPA", data=b"beyond", urgptr=60000)  # the pointer past this segment: still data
    assert c.read(6) == b"beyond"


# ---- windows

def test_zero_window_gets_persist_probes(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut)
    c.send("PA", data=b"z" * 100, win=0)
    probes = []
    deadline = time.monotonic() + 4
    while len(probes) < 3 and time.monotonic() < deadline:
        s = c.next_segment(deadline - time.monotonic())
        if s is None:
            break
        assert not s.data, f"data sent into a zero window: {s}"
        if s.rseq == c.rcv_nxt - 1:
            probes.append(s)
            c.send("A", win=0)  # still closed
    assert len(probes) >= 3, probes
    c.send("A")  # open
    assert c.read(100) == b"z" * 100


def test_window_scaling_honoured(tcp_dut):
    dut = tcp_dut()
    c, _ = established(dut, win=1024, syn_opts=Conn_opts(wscale=4))
    assert c.my_wscale == 4
    data = bytes(random.getrandbits(8) for _ in range(4000))
    c.send_data(data, mss=1000)  # window field 64: 1024 bytes
    first = {s.rseq: s for s in c.collect(1.0) if s.data}.values()  # retransmissions once
    # At most the 1024 bytes the scaled window allows (less when the echo's first write was
    # smaller and sender SWS avoidance holds the small remainder).
    assert 0 < sum(len(s.data) for s in first) <= 1024, first
    got = b"".join(s.data for s in sorted(first, key=lambda s: s.rseq))
    c.rcv_nxt += len(got)
    c.win = 65535 << 4
    c.send("A")
    got += c.read(len(data) - len(got))
    assert got == data


def test_window_not_scaled_without_the_option(tcp_dut):
    dut = tcp_dut()
    c, sa = established(dut, win=1000, syn_opts=Conn_opts(wscale=None))
    assert "wscale" not in sa.opts
    data = bytes(random.getrandbits(8) for _ in range(3000))
    c.send_data(data, mss=1000)
    first = {s.rseq: s for s in c.collect(1.0) if s.data}.values()
    assert 0 < sum(len(s.data) for s in first) <= 1000, first


def test_dataplane_offers_a_scaled_window(tcp_dut):
    dut = tcp_dut()
    c, sa = established(dut)
    c.send("PA", data=b"w")
    seg = c.expect("PA", data=b"w")
    assert c.window_bytes(seg) > 65535  # the receive buffer is larger than an unscaled window


# ---- closing

def _http_get_until_fin(c):
    """Send an HTTP/1.0 request; collect the response until the dataplane's FIN, ACKing the data
    but not the FIN. Returns (response bytes, relative sequence number of the FIN)."""
    c.send("PA", data=b"GET /api/status HTTP/1.0\r\nHost: t\r\n\r\n")
    body = b""
    deadline = time.monotonic() + 5
    while True:
        s = c.next_segment(deadline - time.monotonic())
        assert s is not None, f"no FIN; got {body!r}"
        if s.data and s.rseq == c.rcv_nxt:
            body += s.data
            c.rcv_nxt += len(s.data)
        if s.flags & 0x01 and s.rseq + len(s.data) == c.rcv_nxt:
            return body, c.rcv_nxt
        if s.data:
            c.send("A")


def test_dataplane_closes_first(tcp_dut):
    dut = tcp_dut(app="httpd")
    c = dut.peer.conn(HTTP)
    c.connect()
    body, fin = _http_get_until_fin(c)
    assert body.startswith(b"HTTP/1.")
    c.rcv_nxt = fin + 1
    c.send("A")            # FIN-WAIT-2
    c.send("FA")           # our FIN: TIME-WAIT
    c.expect("A", ack=c.snd_nxt, within=2)


def test_time_wait_answers_retransmitted_fin(tcp_dut):
    dut = tcp_dut(app="httpd")
    c = dut.peer.conn(HTTP)
    c.connect()
    _, fin = _http_get_until_fin(c)
    c.rcv_nxt = fin + 1
    c.send("FA")
    c.expect("A", ack=c.snd_nxt, within=2)
    time.sleep(0.3)
    c.send("FA", seq=c.snd_nxt - 1, advance=False)  # our ACK "was lost"
    c.expect("A", ack=c.snd_nxt, within=2)
    c.send("FA", seq=c.snd_nxt - 1, advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)


def test_simultaneous_close(tcp_dut):
    dut = tcp_dut(app="httpd")
    c = dut.peer.conn(HTTP)
    c.connect()
    _, fin = _http_get_until_fin(c)
    # Our FIN crosses theirs: it does not acknowledge their FIN (RFC 9293 figure 13).
    c.send("FA", ack=fin)
    a = c.expect("A", ack=c.snd_nxt, within=2)  # CLOSING: they acknowledge our FIN
    assert a.rseq == fin + 1
    c.rcv_nxt = fin + 1
    c.send("A")  # acknowledges their FIN: TIME-WAIT
    c.send("FA", seq=c.snd_nxt - 1, advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)


def test_rst_does_not_end_time_wait(tcp_dut):
    dut = tcp_dut(app="httpd")
    c = dut.peer.conn(HTTP)
    c.connect()
    _, fin = _http_get_until_fin(c)
    c.rcv_nxt = fin + 1
    c.send("FA")
    c.expect("A", ack=c.snd_nxt, within=2)
    c.send("R", seq=c.snd_nxt, advance=False)  # RFC 1337
    c.send("FA", seq=c.snd_nxt - 1, advance=False)
    c.expect("A", ack=c.snd_nxt, within=2)


# ---- keepalive

def test_keepalive_probes_on_idle_connection(tcp_dut, reef_binary):
    import subprocess
    helptext = subprocess.run([str(reef_binary("apps/echo/reef-echo")), "--help"], capture_output=True,
                              text=True).stdout
    if "--tcp-keepalive" not in helptext:
        pytest.skip("reef-echo has no --tcp-keepalive option yet (tcp::register_options is not wired into "
                    "the bootstrap): keepalive cannot be enabled on its connections")
    dut = tcp_dut(extra=["--tcp-keepalive", "--tcp-keepalive-idle", "1", "--tcp-keepalive-interval", "1"])
    c, _ = established(dut)
    c.send("PA", data=b"k")
    assert c.read(1) == b"k"
    probes = []
    deadline = time.monotonic() + 6
    while len(probes) < 2 and time.monotonic() < deadline:
        s = c.next_segment(deadline - time.monotonic())
        if s is not None and s.rseq == c.rcv_nxt - 1 and not s.data:
            probes.append(s)
            c.send("A")  # answered: the connection stays
    assert len(probes) == 2, probes
    c.send("PA", data=b"k2")
    assert c.read(2) == b"k2"


# ---- SYN flood

@pytest.mark.slow
def test_syn_flood_beyond_backlog_gets_cookies_and_clients_connect(tcp_dut):
    dut = tcp_dut()
    n = 1024 + 200  # reef-echo's backlog is 1024
    conns = [dut.peer.conn(ECHO, sport=10000 + i) for i in range(n)]
    for i, c in enumerate(conns):
        c.send("S", seq=0, opts=c.syn_opts())
        if i % 50 == 49:
            time.sleep(0.02)  # do not overrun the af_packet ring of a sleeping shard
    answered = []
    deadline = time.monotonic() + 8
    for c in conns:
        s = c.next_segment(max(deadline - time.monotonic(), 0.01))
        while s is not None and not (s.flags & 0x12 == 0x12):
            s = c.next_segment(max(deadline - time.monotonic(), 0.01))
        if s is not None:
            c.consume(s)
            c.ts_ok = "ts" in s.opts
            c.sack_ok = bool(s.opts.get("sack_ok"))
            answered.append(c)
    assert len(answered) >= n - 20, f"{len(answered)} SYN-ACKs for {n} SYNs"
    assert len(answered) > 1024 + 100  # beyond the backlog: cookies
    # A flooded (cookie) connection completes: its ACK is the whole handshake.
    for c in answered[-3:]:
        c.send("A")
        c.send("PA", data=b"cookie")
        assert c.read(6) == b"cookie"
    # And a new, real client connects.
    echo_works(dut)
    for c in answered:
        c.send("RA", advance=False)
