"""A port that accepts every TCP connection and resets it: a broker down behind a port proxy.

Contract: `ResettingListener(port)` binds 127.0.0.1:`port` (loopback only, in a
daemon thread of the calling process) and answers every connection with an
immediate RST (SO_LINGER 0), as Docker's userland port proxy does while the
container behind it restarts; `close()` stops it, frees the port and returns
how many connections it reset. The caller (lab.services.nemesis) checks the
port is the lab's own server's, never a default one. Standard library only.
"""

from __future__ import annotations


class ResettingListener:
    """A loopback listener on `port` that accepts every connection and resets it (SO_LINGER 0),
    in a thread of this process, until close(); close() returns how many it reset."""

    def __init__(self, port: int):
        import socket
        import struct
        import threading
        self._linger = struct.pack("ii", 1, 0)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.count, self._stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._serve, name="reset-listener", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import socket
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, self._linger)
            conn.close()
            self.count += 1

    def close(self) -> int:
        self._stop.set()
        self.thread.join(2.0)
        self.sock.close()
        return self.count
