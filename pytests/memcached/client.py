"""A tiny memcached client over raw sockets for the tests: text/meta lines, binary packets, UDP
frames. Written here, on purpose, so that the bytes on the wire are exactly the test's."""

import socket
import struct
import time


class Text:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def cmd(self, data):
        self.send(data)
        return self.line()

    def get(self, *keys, verb="get"):
        """{key: (flags, value[, cas])} of a get/gets."""
        self.send(f"{verb} {' '.join(keys)}\r\n")
        out = {}
        while True:
            line = self.line().split()
            if line == [b"END"]:
                return out
            assert line[0] == b"VALUE", line
            n = int(line[3])
            data = self.exactly(n + 2)
            assert data[-2:] == b"\r\n"
            out[line[1].decode()] = (int(line[2]), data[:-2], *([int(line[4])] if len(line) > 4 else []))

    def set(self, key, value, flags=0, exptime=0, verb="set", extra=""):
        if isinstance(value, str):
            value = value.encode()
        self.send(f"{verb} {key} {flags} {exptime} {len(value)}{extra}\r\n".encode() + value + b"\r\n")
        if "noreply" in extra:
            return None
        return self.line()

    def closed(self, timeout=5):
        """True if the server closes the connection (EOF) within timeout."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(4096)
                if not d:
                    return True
                self.buf += d
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def stats(sock_text, arg=""):
    sock_text.send(f"stats {arg}\r\n".strip() + "\r\n")
    out = {}
    while True:
        line = sock_text.line().decode()
        if line == "END":
            return out
        _, name, value = line.split(" ", 2)
        out[name] = value


# ---- binary protocol

HDR = ">BBHBBHIIQ"


def bin_request(opcode, key=b"", extras=b"", value=b"", cas=0, opaque=0):
    body = len(extras) + len(key) + len(value)
    return struct.pack(HDR, 0x80, opcode, len(key), len(extras), 0, 0, body, opaque, cas) + extras + key + value


def bin_read(t):
    """(opcode, status, cas, opaque, extras, key, value) of the next binary response."""
    magic, op, kl, el, _, status, bl, opaque, cas = struct.unpack(HDR, t.exactly(24))
    assert magic == 0x81, magic
    body = t.exactly(bl)
    return op, status, cas, opaque, body[:el], body[el:el + kl], body[el + kl:]


# ---- UDP

def udp_request(sock, addr, payload, req_id, timeout=5):
    """Send one request datagram and gather the reply datagrams of req_id, in sequence order."""
    sock.sendto(struct.pack(">HHHH", req_id, 0, 1, 0) + payload, addr)
    parts = {}
    total = None
    deadline = time.monotonic() + timeout
    while total is None or len(parts) < total:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        rid, seq, count, _ = struct.unpack(">HHHH", data[:8])
        if rid != req_id:
            continue
        assert len(data) <= 1400, len(data)
        total = count
        parts[seq] = data[8:]
    return b"".join(parts[i] for i in range(total)), total
