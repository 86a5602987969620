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
    time.sleep(0.2)  # the reaper asleep for 50 s: nothing waits
    began = time.monotonic()
    server.shutdown()
    thread.join(2)
    server.server_close()
    assert not thread.is_alive() and time.monotonic() - began < 0.5


def test_a_head_that_never_comes_is_reaped_when_its_timeout_ends() -> None:
    server, _ = serving(head_timeout=1.0)
    try:
        time.sleep(0.5)  # the reaper asleep for a whole timeout: nothing waited when it began
        with socket.create_connection(server.server_address[:2], timeout=5) as idle:
            began = time.monotonic()
            assert idle.recv(1) == b"", "closed by the server"
            assert 1.0 <= time.monotonic() - began < 1.3
    finally:
        server.shutdown()
        server.server_close()


def test_shutdown_of_a_server_that_is_not_serving_returns() -> None:
    server = WebServer("127.0.0.1:0", SeriesStore(), lambda: True)
    server.shutdown()
    server.server_close()


def test_at_the_limit_the_longest_waiting_connection_is_evicted_not_the_newest() -> None:
    conns = Connections(limit=2, head_timeout=60.0)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        old, new, third = (server for server, _ in pairs)
        assert conns.admit(old)
        time.sleep(0.01)
        assert conns.admit(new)
        conns.busy(new)
        conns.waiting(new)  # waiting again (keep-alive), but since later than `old`
        assert conns.admit(third), "a waiting one makes room"
        assert conns.closed["limit"] == 1
        pairs[0][1].settimeout(1)
        assert pairs[0][1].recv(1) == b"", "the longest-waiting one was hung up"
        pairs[1][1].setblocking(False)
        try:
            pairs[1][1].recv(1)
            raise AssertionError("the newer one must stay open")
        except BlockingIOError:
            pass
        conns.busy(new)
        conns.busy(third)
        with socket.socket() as late:
            assert not conns.admit(late), "all busy: the newcomer is refused"
        assert conns.closed["refused"] == 1
    finally:
        for a, b in pairs:
            a.close()
            b.close()
