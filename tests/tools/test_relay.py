"""scripts/relay.py: forward, refuse and black-hole connections to a server."""

from __future__ import annotations

import socket
import threading

import pytest

from scripts.relay import Relay


@pytest.fixture
def echo_server():
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn):
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()
    listener.close()


def ask(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(payload)
        return client.recv(1024)


def test_forwards_both_ways(echo_server):
    with Relay(echo_server) as relay:
        assert ask(relay.port) == b"ping"


def test_refuse_closes_the_port_and_forward_opens_it_again(echo_server):
    with Relay(echo_server) as relay:
        relay.set_mode("refuse")
        with pytest.raises(ConnectionRefusedError):
            ask(relay.port)
        relay.set_mode("forward")
        assert ask(relay.port) == b"ping"


def read_after_cut(client: socket.socket) -> bytes:
    """What a read returns once the relay cut the connection: nothing, or a reset."""
    try:
        client.sendall(b"b")
        return client.recv(16)
    except ConnectionError:
        return b""


def test_refuse_cuts_open_connections(echo_server):
    with Relay(echo_server) as relay, socket.create_connection(("127.0.0.1", relay.port)) as c:
        c.sendall(b"a")
        assert c.recv(16) == b"a"
        relay.set_mode("refuse")
        c.settimeout(2)
        assert read_after_cut(c) == b""


def test_a_black_hole_accepts_and_never_answers_until_forwarding_again(echo_server):
    with Relay(echo_server) as relay:
        relay.set_mode("blackhole")
        with socket.create_connection(("127.0.0.1", relay.port), timeout=0.3) as client:
            client.sendall(b"held")
            with pytest.raises(TimeoutError):
                client.recv(16)
            relay.set_mode("forward")
            client.settimeout(2)
            assert client.recv(16) == b"held"


def test_a_black_hole_holds_open_connections_too(echo_server):
    with (
        Relay(echo_server) as relay,
        socket.create_connection(("127.0.0.1", relay.port), timeout=0.3) as client,
    ):
        client.sendall(b"1")
        assert client.recv(16) == b"1"
        relay.set_mode("blackhole")
        client.sendall(b"2")
        with pytest.raises(TimeoutError):
            client.recv(16)
        relay.set_mode("forward")
        client.settimeout(2)
        assert client.recv(16) == b"2"


def test_an_unknown_mode_is_an_error(echo_server):
    with Relay(echo_server) as relay, pytest.raises(ValueError, match="unknown mode"):
        relay.set_mode("slow")  # type: ignore[arg-type]
