"""A scripted TCP peer for conformance tests (a small packetdrill-like DSL on Scapy).

The peer is a host of its own on an Ethernet interface: its own MAC and IPv4 address, neither
configured in the kernel (the interface has no address and frames to a foreign MAC are "other
host" to the kernel, so the kernel never answers; the peer answers ARP itself). It sees every frame
on the interface through an AF_PACKET socket read by a thread.

A test drives one `Conn` per TCP connection as a short script::

    c = peer.conn(dport=7)
    c.send("S", opts=c.syn_opts())             # inject a SYN (seq 0 relative to our ISN)
    sa = c.expect("SA", ack=1, within=2)       # the SYN-ACK, acking our SYN
    c.send("A")                                # the third ACK (seq/ack default to what is next)
    c.send("PA", data=b"hello")
    c.expect("PA", data=b"hello")              # echoed (PSH is compared only if asked, see below)

Sequence numbers in scripts are relative: ours to our ISN, the dataplane's to its ISN (learned from
its SYN or SYN-ACK), as packetdrill shows them. `send` fills what a script leaves out: seq = next
byte to send, ack = next byte expected, window, and the timestamp option once timestamps were
negotiated (TSval from the peer's own millisecond clock, TSecr = the last TSval received).
`expect` waits for the first segment of the connection that matches every field given and returns
it; segments that did not match on the way are kept in `Conn.skipped` (strict=True fails on them
instead). `expect_none` asserts that no matching segment arrives within a time. Timing
tolerances are the caller's `within`; they should be generous (this runs on a loaded 2-core box).
"""

import queue
import random
import socket
import struct
import threading
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def flags_value(flags):
    """'SA' -> 0x12; an int is returned as is."""
    if isinstance(flags, int):
        return flags
    v = 0
    for ch in flags:
        v |= FLAG_BITS[ch]
    return v


def flags_text(v):
    return "".join(ch for ch, bit in FLAG_BITS.items() if v & bit) or "-"


def seq_add(a, b):
    return (a + b) & 0xFFFFFFFF


def seq_sub(a, b):
    """a - b as a signed 32-bit difference (sequence space arithmetic)."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d & 0x80000000 else d


class Segment:
    """A received TCP segment: absolute fields, the same relative to the connection's ISNs, the
    options as a dict (mss, wscale, sack_ok, ts=(val, ecr), sack=[(l, r)...] relative), payload,
    and the arrival time (time.monotonic())."""

    def __init__(self, ip, tcp, payload, t):
        self.ip = ip
        self.tcp = tcp
        self.t = t
        self.flags = int(tcp.flags)
        self.seq = tcp.seq
        self.ack = tcp.ack
        self.win = tcp.window
        self.sport = tcp.sport
        self.dport = tcp.dport
        self.urgptr = tcp.urgptr
        self.data = payload
        self.opts = {}
        self.opt_kinds = []
        for name, val in tcp.options:
            self.opt_kinds.append(name)
            if name == "MSS":
                self.opts["mss"] = val
            elif name == "WScale":
                self.opts["wscale"] = val
            elif name == "SAckOK":
                self.opts["sack_ok"] = True
            elif name == "Timestamp":
                self.opts["ts"] = tuple(val)
            elif name == "SAck":
                self.opts["sack"] = [(val[i], val[i + 1]) for i in range(0, len(val) - 1, 2)]
        self.rseq = None  # relative to the dataplane's ISN, set by Conn
        self.rack = None  # relative to our ISN

    @property
    def seg_len(self):
        return len(self.data) + (1 if self.flags & 0x02 else 0) + (1 if self.flags & 0x01 else 0)

    def __repr__(self):
        rs = self.rseq if self.rseq is not None else self.seq
        ra = self.rack if self.rack is not None else self.ack
        return (f"<{flags_text(self.flags)} seq {rs} ack {ra} win {self.win} len {len(self.data)} "
                f"opts {self.opts} t {self.t:.3f}>")


class Peer:
    """One scripted host on `iface`: answers ARP for `ip` with `mac`, queues TCP segments sent to
    it, and injects frames to the dataplane (`dut_mac`, `dut_ip`). close() stops the reader."""

    def __init__(self, iface, mac, ip, dut_mac, dut_ip):
        self.iface = iface
        self.mac = mac
        self.ip = ip
        self.dut_mac = dut_mac
        self.dut_ip = dut_ip
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.2)
        self._queues = {}  # (local port, remote port) -> queue of Segment
        self._lock = threading.Lock()
        self.arp_requests = 0
        self.other = []  # IPv4 frames to us that are not TCP (ICMP...), as scapy packets
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self):
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            t = time.monotonic()
            try:
                self._dispatch(data, t)
            except Exception:  # a frame scapy cannot dissect is not ours to judge here
                pass

    def _dispatch(self, data, t):
        if len(data) < 14:
            return
        ethertype = struct.unpack("!H", data[12:14])[0]
        if ethertype == 0x0806:
            a = Ether(data)[ARP]
            if a.op == 1 and a.pdst == self.ip:
                self.arp_requests += 1
                reply = Ether(dst=a.hwsrc, src=self.mac) / ARP(
                    op=2, hwsrc=self.mac, psrc=self.ip, hwdst=a.hwsrc, pdst=a.psrc)
                self.sock.send(bytes(reply))
            return
        if ethertype != 0x0800:
            return
        pkt = Ether(data)
        ip = pkt[IP]
        if ip.dst != self.ip:
            return
        if ip.proto != 6 or TCP not in ip:
            with self._lock:
                self.other.append(pkt)
            return
        tcp = ip[TCP]
        payload = bytes(tcp.payload) if tcp.payload else b""
        # Strip Ethernet padding: the IP total length says where the segment ends.
        tcp_len = ip.len - ip.ihl * 4 - tcp.dataofs * 4
        payload = payload[:max(tcp_len, 0)]
        seg = Segment(ip, tcp, payload, t)
        with self._lock:
            q = self._queues.get((tcp.dport, tcp.sport))
        if q is not None:
            q.put(seg)

    def register(self, lport, rport):
        q = queue.Queue()
        with self._lock:
            self._queues[(lport, rport)] = q
        return q

    def send_frame(self, pkt):
        self.sock.send(bytes(pkt))

    def ip_packet(self, **kw):
        return Ether(dst=self.dut_mac, src=self.mac) / IP(src=self.ip, dst=self.dut_ip, **kw)

    def conn(self, dport, sport=None, isn=None, **kw):
        """A scripted connection from sport (default: random) to the dataplane's dport."""
        return Conn(self, dport, sport if sport is not None else random.randint(20000, 32000),
                    isn if isn is not None else random.getrandbits(32), **kw)


class Conn:
    """One scripted TCP connection (see the module docstring). Fields: iss (ours), irs (theirs,
    None until their SYN is seen), snd_nxt / rcv_nxt (relative), ts_ok, their_wscale,
    peer_ts (last TSval received), skipped (segments passed over by expect)."""

    def __init__(self, peer, dport, sport, isn, win=65535, wscale=None):
        self.peer = peer
        self.dport = dport
        self.sport = sport
        self.iss = isn
        self.irs = None
        self.snd_nxt = 0   # relative to iss
        self.rcv_nxt = 0   # relative to irs
        self.win = win
        self.my_wscale = wscale
        self.ts_ok = False
        self.sack_ok = False
        self.their_wscale = 0
        self.peer_ts = 0
        self.ts_base = random.randint(1000, 1 << 30)
        self.t0 = time.monotonic()
        self.skipped = []
        self.received = []
        self._q = peer.register(sport, dport)

    # ---- helpers

    def now(self):
        return time.monotonic() - self.t0

    def at(self, t):
        """Sleep until `t` seconds after the script started."""
        d = self.t0 + t - time.monotonic()
        if d > 0:
            time.sleep(d)

    def tsval(self):
        return (self.ts_base + int((time.monotonic() - self.t0) * 1000)) & 0xFFFFFFFF

    @staticmethod
    def syn_opts(mss=1460, wscale=7, sack=True, ts=True):
        """Options of a SYN like Linux's (in scapy's form); ts takes TSval from the send."""
        o = [("MSS", mss)]
        if sack:
            o.append(("SAckOK", b""))
        if ts:
            o.append(("Timestamp", None))
        if wscale is not None:
            o += [("NOP", None), ("WScale", wscale)]
        return o

    # ---- injecting

    def send(self, flags, seq=None, ack=None, data=b"", win=None, opts=None, urgptr=0, at=None, ts=None,
             advance=True, raw_seq=None, raw_ack=None, chksum=None):
        """Inject one segment. seq (ours) and ack (theirs) are relative, default the next ones;
        raw_seq/raw_ack give absolute values. opts: scapy options list; a ("Timestamp", None)
        entry gets (TSval, TSecr) filled; None means the timestamp option alone once negotiated.
        ts=(val, ecr) forces the timestamp values. win is the raw 16-bit field (default: ours,
        scaled down by our window shift). advance: move snd_nxt past what this segment sends.
        chksum: a TCP checksum to put instead of the right one."""
        if at is not None:
            self.at(at)
        f = flags_value(flags)
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt
        abs_seq = raw_seq if raw_seq is not None else seq_add(self.iss, seq)
        if raw_ack is not None:
            abs_ack = raw_ack
        elif f & 0x10 and self.irs is not None:
            abs_ack = seq_add(self.irs, ack)
        else:
            abs_ack = 0
        if win is None:
            win = min(self.win >> (self.my_wscale or 0), 65535) if not (f & 0x02) else min(self.win, 65535)
        tsv = ts if ts is not None else (self.tsval(), self.peer_ts if f & 0x10 else 0)
        if opts is None:
            opts = [("NOP", None), ("NOP", None), ("Timestamp", tsv)] if self.ts_ok else []
        else:
            opts = [(k, tsv if (k == "Timestamp" and v is None) else v) for k, v in opts]
            if f & 0x02:
                for k, v in opts:
                    if k == "WScale":
                        self.my_wscale = v
        tcp = TCP(sport=self.sport, dport=self.dport, seq=abs_seq, ack=abs_ack, flags=f, window=win,
                  options=opts, urgptr=urgptr)
        if chksum is not None:
            tcp.chksum = chksum
        pkt = self.peer.ip_packet(flags="DF") / tcp
        if data:
            pkt = pkt / Raw(data)
        self.peer.send_frame(pkt)
        if advance and raw_seq is None:
            end = seq + len(data) + (1 if f & 0x02 else 0) + (1 if f & 0x01 else 0)
            if seq_sub(end, self.snd_nxt) > 0:
                self.snd_nxt = end
        return pkt

    # ---- expecting

    def _note(self, seg):
        """Learn from a received segment: their ISN, the relative numbers, TS.Recent, rcv_nxt."""
        if seg.flags & 0x02 and self.irs is None:
            self.irs = seg.seq
            self.their_wscale = seg.opts.get("wscale", 0)
        if self.irs is not None:
            seg.rseq = seq_sub(seg.seq, self.irs)
        if seg.flags & 0x10:
            seg.rack = seq_sub(seg.ack, self.iss)
        if "ts" in seg.opts:
            self.peer_ts = seg.opts["ts"][0]
        if "sack" in seg.opts and self.iss is not None:
            seg.opts["rsack"] = [(seq_sub(l, self.iss), seq_sub(r, self.iss)) for l, r in seg.opts["sack"]]
        self.received.append(seg)

    def next_segment(self, timeout):
        """The next segment of this connection within `timeout` s, or None."""
        try:
            seg = self._q.get(timeout=max(timeout, 0))
        except queue.Empty:
            return None
        self._note(seg)
        return seg

    def matches(self, seg, flags=None, seq=None, ack=None, data=None, win=None, opts=None, length=None,
                psh=False, min_length=None):
        if flags is not None:
            want = flags_value(flags)
            got = seg.flags
            if not psh:
                want &= ~0x08
                got &= ~0x08
            if want != got:
                return False
        if seq is not None and seg.rseq != seq:
            return False
        if ack is not None and (seg.rack != ack or not seg.flags & 0x10):
            return False
        if data is not None and seg.data != data:
            return False
        if length is not None and len(seg.data) != length:
            return False
        if min_length is not None and len(seg.data) < min_length:
            return False
        if win is not None and seg.win != win:
            return False
        if opts:
            for k, v in opts.items():
                if v is True:
                    if k not in seg.opts:
                        return False
                elif v is False or v is None:
                    if k in seg.opts:
                        return False
                elif callable(v):
                    if k not in seg.opts or not v(seg.opts[k]):
                        return False
                elif seg.opts.get(k) != v:
                    return False
        return True

    def expect(self, flags=None, within=3.0, strict=False, update=True, **fields):
        """Wait up to `within` s for a segment matching `flags` and the given fields (see
        matches(): seq/ack relative, data, length, min_length, win, opts={name: value | True
        (present) | False (absent) | predicate}, psh=True to compare PSH too). Returns it; fails
        the test (AssertionError listing what came instead) on timeout. update: advance rcv_nxt
        past its data/SYN/FIN when it is the next in order."""
        deadline = time.monotonic() + within
        passed = []
        while True:
            seg = self.next_segment(deadline - time.monotonic())
            if seg is None:
                raise AssertionError(
                    f"no segment {flags} {fields} within {within} s on port {self.sport}; got instead: {passed}")
            if self.matches(seg, flags, **fields):
                if update:
                    self.consume(seg)
                return seg
            if strict:
                raise AssertionError(f"expected {flags} {fields}, got {seg} (before: {passed})")
            passed.append(seg)
            self.skipped.append(seg)

    def consume(self, seg):
        """rcv_nxt moves past `seg` (data, SYN, FIN) if it covers rcv_nxt."""
        if seg.rseq is None:
            return
        if seg.rseq <= self.rcv_nxt < seg.rseq + seg.seg_len:
            self.rcv_nxt = seg.rseq + seg.seg_len

    def expect_none(self, within, flags=None, **fields):
        """Assert that no segment matching (default: any segment) arrives within `within` s.
        Returns the non-matching segments seen meanwhile."""
        deadline = time.monotonic() + within
        seen = []
        while True:
            seg = self.next_segment(deadline - time.monotonic())
            if seg is None:
                return seen
            if flags is None and not fields or self.matches(seg, flags, **fields):
                raise AssertionError(f"unexpected segment {seg} (script time {self.now():.2f} s)")
            seen.append(seg)

    def collect(self, duration):
        """Every segment of the connection for `duration` s (none is consumed)."""
        deadline = time.monotonic() + duration
        got = []
        while True:
            seg = self.next_segment(deadline - time.monotonic())
            if seg is None:
                return got
            got.append(seg)

    def drain(self):
        """Segments already queued, without waiting."""
        return self.collect(0)

    # ---- common sequences

    def connect(self, syn_opts=None, within=3.0, ack_delay=0.0):
        """Three-way handshake as the client; returns the SYN-ACK. Negotiation follows the
        SYN-ACK (timestamps, SACK, window shift). ack_delay: wait before the third ACK (it is the
        dataplane's first RTT sample)."""
        opts = self.syn_opts() if syn_opts is None else syn_opts
        self.send("S", seq=0, opts=opts)
        sa = self.expect("SA", ack=1, within=within)
        offered_ts = any(k == "Timestamp" for k, _ in opts)
        offered_sack = any(k == "SAckOK" for k, _ in opts)
        offered_ws = any(k == "WScale" for k, _ in opts)
        self.ts_ok = offered_ts and "ts" in sa.opts
        self.sack_ok = offered_sack and sa.opts.get("sack_ok", False)
        if not (offered_ws and "wscale" in sa.opts):
            self.my_wscale = None
            self.their_wscale = 0
        if ack_delay:
            time.sleep(ack_delay)
        self.send("A")
        return sa

    def send_data(self, data, mss=1000, flags="PA"):
        """Send `data` in segments of at most `mss` bytes."""
        for i in range(0, len(data), mss):
            self.send(flags, data=data[i:i + mss])

    def read(self, n, within=5.0, ack=True):
        """Read n bytes of in-order data (the echo), ACKing each segment; returns them."""
        got = b""
        deadline = time.monotonic() + within
        while len(got) < n:
            seg = self.next_segment(deadline - time.monotonic())
            if seg is None:
                raise AssertionError(f"read {len(got)} of {n} bytes within {within} s; skipped: {self.skipped[-5:]}")
            if seg.data and seg.rseq == self.rcv_nxt:
                got += seg.data
                self.rcv_nxt += len(seg.data)
                if ack:
                    self.send("A")
            else:
                self.skipped.append(seg)
        return got

    def window_bytes(self, seg):
        """The window a segment from the dataplane offers, in bytes (its shift applied unless SYN)."""
        return seg.win if seg.flags & 0x02 else seg.win << self.their_wscale
