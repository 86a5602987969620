"""The accept loop: it sleeps between reaps, yet a shutdown ends it at once."""

from __future__ import annotations

import socket
import threading
import time

from agent.store import SeriesStore
from agent.web.connections import Connections
from agent.web.server import WebServer


def serving(head_timeout: float) -> tuple[WebServer, threading.Thread]:
    """A server on a free port, serving on a thread."""
    server = WebServer("127.0.0.1:0", SeriesStore(), lambda: True,
                       connections=Connections(limit=8, head_timeout=head_timeout))  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def test_shutdown_ends_the_loop_at_once_though_it_sleeps_for_seconds() -> None:
    server, thread = serving(head_timeout=50.0)
    assert server.tick == 5.0, "a tenth of the head timeout, at most 5 s"
    time.sleep(0.2)  # asleep in its select
    began = time.monotonic()
    server.shutdown()
    thread.join(2)
    server.server_close()
    assert not thread.is_alive() and time.monotonic() - began < 0.5


def test_a_head_that_never_comes_is_reaped_within_a_tick_of_its_timeout() -> None:
    server, _ = serving(head_timeout=1.0)
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as idle:
            began = time.monotonic()
            assert idle.recv(1) == b"", "closed by the server"
            assert 1.0 <= time.monotonic() - began < 1.0 + server.tick + 0.5
    finally:
        server.shutdown()
        server.server_close()


def test_shutdown_of_a_server_that_is_not_serving_returns() -> None:
    server = WebServer("127.0.0.1:0", SeriesStore(), lambda: True)
    server.shutdown()
    server.server_close()
