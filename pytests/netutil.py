"""Helpers every suite shares (pytests/ is on sys.path: pytest puts the folder of the root
conftest.py there)."""

import socket


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1 (the servers under test bind both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port on 127.0.0.1 is free for both TCP and UDP")
