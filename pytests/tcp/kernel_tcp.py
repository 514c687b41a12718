"""The kernel's side of the interop tests, run inside the peer namespace (`ip netns exec`):

    kernel_tcp.py client HOST PORT NBYTES   send NBYTES to an echo server while reading the echo
    kernel_tcp.py server PORT               echo every connection; print a summary line per
                                            connection when it ends

Both print one JSON line per connection: bytes sent and received and their SHA-256, so the test
compares what went out with what came back byte for byte. The data is a deterministic pseudo-random
stream (not a repeating pattern shorter than a window), the same for every run.
"""

import hashlib
import json
import random
import socket
import sys
import threading


def stream(nbytes, seed=1234, chunk=1 << 16):
    rng = random.Random(seed)
    block = rng.randbytes(1 << 20)  # 1 MiB of noise, read at a moving offset
    off = 0
    left = nbytes
    while left:
        n = min(chunk, left)
        start = (off * 7919) % (len(block) - n)
        yield block[start:start + n]
        off += 1
        left -= n


def client(host, port, nbytes):
    s = socket.create_connection((host, port), timeout=120)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sent = hashlib.sha256()
    result = {}

    def writer():
        for b in stream(nbytes):
            s.sendall(b)
            sent.update(b)
        s.shutdown(socket.SHUT_WR)

    t = threading.Thread(target=writer)
    t.start()
    got = hashlib.sha256()
    n = 0
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        got.update(b)
        n += len(b)
    t.join()
    s.close()
    result.update(sent=nbytes, sent_sha256=sent.hexdigest(), received=n, received_sha256=got.hexdigest())
    print(json.dumps(result), flush=True)


def server(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    print(json.dumps({"listening": port}), flush=True)

    def serve(c):
        h = hashlib.sha256()
        n = 0
        try:
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                h.update(b)
                n += len(b)
                c.sendall(b)
        except OSError as e:
            print(json.dumps({"error": str(e), "received": n}), flush=True)
        c.close()
        print(json.dumps({"received": n, "received_sha256": h.hexdigest()}), flush=True)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    if sys.argv[1] == "client":
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        server(int(sys.argv[2]))
