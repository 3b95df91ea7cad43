"""Brokers that refuse or never answer: start-up conditions of the silent-exit scenario.

Contract: `RefusedPort` binds a loopback port without listening (connect()
is refused and no one else gets the port); `SilentBroker` accepts TCP on
loopback and never sends a byte (counts what it received);
`broker_url(broker, port)` is the lab's URL for a broker kind at that port.
Both hold their socket until `close()`. Loopback only. Standard library only.
"""

from __future__ import annotations

import socket
import threading

class RefusedPort:
    """A loopback port bound but not listening: connect() is refused, nobody else gets it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class SilentBroker:
    """Accepts TCP connections on loopback and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.received = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="silent-broker", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.setblocking(False)
                self.accepted.append(conn)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                break
            for conn in list(self.accepted):  # read and drop: never answer
                try:
                    self.received += len(conn.recv(65536))
                except (BlockingIOError, OSError):
                    pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.sock.close()


def broker_url(broker: str, port: int) -> str:
    if broker == "redis":
        return f"redis://127.0.0.1:{port}/0"
    if broker == "amqp":
        return f"amqp://guest:guest@127.0.0.1:{port}//"
    if broker == "sql-postgres":
        return f"sqla+postgresql+psycopg2://lab:lab@127.0.0.1:{port}/lab"
    raise ValueError(f"no network broker URL for {broker!r}")
