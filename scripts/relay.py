"""A TCP relay on loopback that can forward, refuse or black-hole connections to a server.

The faults a database can show a client, made on purpose for tests and the
stress run:

- ``forward``: a plain relay (the default);
- ``refuse``: the port is closed and every open connection is cut: what a
  client sees of a server that is down;
- ``blackhole``: connections are accepted, and nothing goes through either
  way, on new and open connections alike: a server (or a network) that
  stops answering. Data sent meanwhile is held, and delivered on ``forward``.

::

    relay = Relay(("127.0.0.1", 5432))
    relay.start()            # relay.port: where clients connect
    relay.set_mode("blackhole")
    ...
    relay.stop()

Standard library only; loopback only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Literal

__all__ = ["Mode", "Relay"]

Mode = Literal["forward", "refuse", "blackhole"]
_CHUNK = 65536


class Relay:
    """Relays ``127.0.0.1:port`` to ``target``; :meth:`set_mode` injects the faults."""

    def __init__(self, target: tuple[str, int], *, port: int = 0) -> None:
        self.target = target
        self.port = port
        self.mode: Mode = "forward"
        self._open = threading.Event()  # set while data may flow
        self._open.set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._stopped = False

    # -- control ---------------------------------------------------------------

    def start(self) -> Relay:
        self._listen()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._open.set()  # let paused pumps see the end
        self._close_listener()
        self._cut_all()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode``; takes effect at once for new and open connections."""
        if mode not in ("forward", "refuse", "blackhole"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        if mode == "refuse":
            self._open.set()
            self._close_listener()
            self._cut_all()
            return
        if mode == "blackhole":
            self._open.clear()
        else:
            self._open.set()
        if self._listener is None:
            self._listen()

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(
            target=self._accept, args=(listener,), name="relay-accept", daemon=True
        ).start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _cut_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _cut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse or stop
            threading.Thread(
                target=self._connect, args=(client,), name="relay-connect", daemon=True
            ).start()

    def _connect(self, client: socket.socket) -> None:
        self._track(client)
        self._open.wait()  # a black hole accepts, and then says nothing
        if self._stopped or self.mode == "refuse":
            _cut(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            _cut(client)
            return
        self._track(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(
                target=self._pump, args=(source, sink), name="relay-pump", daemon=True
            ).start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                self._open.wait()  # held while black-holed
                if self._stopped:
                    break
                sink.sendall(data)
        except OSError:
            pass
        _cut(source)
        _cut(sink)


def _cut(sock: socket.socket) -> None:
    """Close at once; a reset, not a graceful end, when possible."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
