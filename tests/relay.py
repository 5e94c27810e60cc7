"""A TCP relay on loopback that a test cuts and restores: a real network outage.

Clients (the projector, the query API) are pointed at the relay instead of the
service. ``cut()`` resets every open connection and refuses new ones until
``restore()``; the service itself keeps running, so only the path to it fails.
"""

from __future__ import annotations

import selectors
import socket
import threading

from sqlalchemy.engine import make_url


class Relay:
    """A TCP relay 127.0.0.1:port -> target that can be cut and restored."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self.closed = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.accepted = 0
        self.refused = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def for_database(cls, db_url: str) -> tuple[Relay, str]:
        """A relay to the database of ``db_url``, and the same URL through the relay."""
        url = make_url(db_url)
        relay = cls(url.host or "127.0.0.1", url.port or 5432)
        relayed = url.set(host="127.0.0.1", port=relay.port)
        return relay, relayed.render_as_string(hide_password=False)

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self.up.clear()
        with self.lock:
            for a, b in self.pairs:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            self.pairs.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()
