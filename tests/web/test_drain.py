"""graceful.drain: a request whose bytes a busy kernel delivers after the stop is still answered."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel

from dialtone.web import graceful

WAIT = 15.0  # seconds; generous for a loaded machine, never slept
REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


@pytest.fixture
def server() -> Iterator[Any]:
    """An in-process waitress server on a free loopback port; its loop is run by the test."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=1)
    yield server
    server.task_dispatcher.shutdown(timeout=1)
    wasyncore.close_all(server._map)


def channels(server: Any) -> list[HTTPChannel]:
    return [item for item in server._map.values() if isinstance(item, HTTPChannel)]


def answer(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    client.settimeout(WAIT)
    data = b""
    while chunk := client.recv(4096):
        data += chunk
    return data


def test_bytes_arriving_after_the_idle_check_are_answered(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = socket.create_connection(server.socket.getsockname()[:2], timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while not channels(server) and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=server._map, count=1)
    [channel] = channels(server)
    real_busy = graceful.is_busy
    sent: list[bool] = []

    def busy_then_late_bytes(checked: HTTPChannel) -> bool:
        # The request lands in the socket right after the stop found the connection idle.
        busy = real_busy(checked)
        if not busy and not sent:
            client.sendall(REQUEST)
            sent.append(True)
            assert select.select([checked.socket], [], [], WAIT)[0]
        return busy

    monkeypatch.setattr(graceful, "is_busy", busy_then_late_bytes)
    with client:
        graceful.drain(server, grace=WAIT)
        reply = answer(client)
    assert sent
    assert channel.socket is None
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nhello")


def test_a_connection_the_kernel_completes_just_after_the_stop_is_answered(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients: list[socket.socket] = []
    real_loop = wasyncore.loop

    def connect_then_loop(*args: Any, **kwargs: Any) -> None:
        if not clients:  # the first turn of drain's loop: a client's handshake completes now
            clients.append(socket.create_connection(server.socket.getsockname()[:2], WAIT))
            clients[0].sendall(REQUEST)
        real_loop(*args, **kwargs)

    monkeypatch.setattr(graceful.wasyncore, "loop", connect_then_loop)
    graceful.drain(server, grace=WAIT)
    monkeypatch.undo()
    assert not server._map  # the listener and the connection are closed
    [client] = clients
    with client:
        reply = answer(client)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reply.endswith(b"\r\n\r\nhello")


def test_the_installed_waitress_has_what_the_graceful_stop_uses(server: Any) -> None:
    # Fails loudly on a waitress upgrade that moves an internal drain relies on; the same check
    # runs at every start, so a server never runs without its graceful stop.
    graceful.check_waitress(server)


def test_a_waitress_without_those_internals_is_refused_by_name(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(HTTPChannel, "total_outbufs_len")
    monkeypatch.setattr(type(server.task_dispatcher), "shutdown", None)
    with pytest.raises(graceful.WaitressChanged) as refused:
        graceful.check_waitress(server)
    assert "HTTPChannel.total_outbufs_len" in str(refused.value)
    assert "server.task_dispatcher.shutdown" in str(refused.value)
