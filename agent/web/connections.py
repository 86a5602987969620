"""A bounded set of connections that slow or idle clients cannot fill against a scraper.

Every connection is either waiting (in its TLS handshake, new, idle keep-alive, a client
dripping its head or an admin body) or busy with a request. A wait is bounded by `head_timeout`
as a whole, not per read. Connections are held by their socket object, never by file
descriptor: a descriptor is reused as soon as it is closed.

At the limit, a new connection evicts the one that has waited longest: a slowloris crowd evicts
itself, while a scraper, which sends its request at once, gets in. Only when every connection is
busy is the newcomer refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from agent.store import Labels
from agent.web.render import Family

WAITING, BUSY = "waiting", "busy"


class Connections:
    """The open connections, by file descriptor: the socket, its state, and since when."""

    def __init__(self, limit: int, head_timeout: float) -> None:
        self.limit, self.head_timeout = limit, head_timeout
        self._open: dict[socket.socket, tuple[str, float]] = {}
        self._closers: dict[socket.socket, Callable[[], object]] = {}  # how to hang each one up
        self._lock = threading.Lock()
        self.closed: Counter[str] = Counter()  # by reason: limit, head_timeout, refused

    def admit(self, sock: socket.socket) -> bool:
        """Take a new connection; make room if needed; False when all are busy (refuse it)."""
        now = time.monotonic()
        with self._lock:
            victims = self._expired(now)
            if len(self._open) >= self.limit:
                waiting = [s for s, (state, _) in self._open.items() if state == WAITING]
                if not waiting:
                    self.closed["refused"] += 1
                    return False
                victim = min(waiting, key=lambda s: self._open[s][1])  # the longest waiting
                del self._open[victim]
                victims.append((victim, self._closers.pop(victim, None)))
                self.closed["limit"] += 1
            self._open[sock] = (WAITING, now)
        for victim, closer in victims:
            _hang_up(victim, closer)
        return True

    def _expired(self, now: float) -> list[tuple[socket.socket, Callable[[], object] | None]]:
        """Remove and return the connections that waited past head_timeout (lock held)."""
        gone = [sock for sock, (state, since) in self._open.items()
                if state == WAITING and now - since >= self.head_timeout]  # fmt: skip
        self.closed["head_timeout"] += len(gone)
        for sock in gone:
            del self._open[sock]
        return [(sock, self._closers.pop(sock, None)) for sock in gone]

    def attach(self, sock: socket.socket, closer: Callable[[], object]) -> None:
        """Say how to hang a connection up (cancel its TLS handshake, abort its transport)."""
        with self._lock:
            if sock in self._open:
                self._closers[sock] = closer

    def waiting(self, sock: socket.socket) -> None:
        """Mark the connection as waiting for a request head, from now."""
        self._set(sock, WAITING)

    def busy(self, sock: socket.socket) -> None:
        """Mark the connection as busy: its request head is in and being answered."""
        self._set(sock, BUSY)

    def _set(self, sock: socket.socket, state: str) -> None:
        with self._lock:
            if sock in self._open:
                self._open[sock] = (state, time.monotonic())

    def release(self, sock: socket.socket) -> None:
        """Forget a connection that is being closed."""
        with self._lock:
            self._open.pop(sock, None)
            self._closers.pop(sock, None)

    def hang_up_all(self) -> None:
        """Close every connection (the server is stopping)."""
        with self._lock:
            victims = [(sock, self._closers.get(sock)) for sock in self._open]
            self._open.clear()
            self._closers.clear()
        for victim, closer in victims:
            _hang_up(victim, closer)

    def next_expiry(self) -> float | None:
        """Return when the longest-waiting connection's head timeout ends (monotonic), if any."""
        with self._lock:
            since = [since for state, since in self._open.values() if state == WAITING]
        return min(since) + self.head_timeout if since else None

    def reap(self) -> None:
        """Close the connections that waited longer than head_timeout (the accept loop calls it)."""
        with self._lock:
            victims = self._expired(time.monotonic())
        for victim, closer in victims:
            _hang_up(victim, closer)

    def metrics(self) -> Iterator[Family]:
        """dsagent_http_connections and dsagent_http_connections_closed_total{reason}."""
        with self._lock:
            states = Counter(state for state, _ in self._open.values())
            closed = sorted(self.closed.items())
        by_state: list[tuple[Labels, float]] = [
            ((("state", state),), float(states[state])) for state in (WAITING, BUSY)
        ]
        yield Family("dsagent_http_connections", "gauge", "Open HTTP connections, by state.",
                     by_state)  # fmt: skip
        yield Family("dsagent_http_connections_closed", "counter",
                     "Connections closed or refused to keep the server answering.",
                     [((("reason", reason),), float(n)) for reason, n in closed])  # fmt: skip


def _hang_up(sock: socket.socket, closer: Callable[[], object] | None) -> None:
    """Close a connection the way its owner asked; else end its input and output.

    Shutting down the socket under an asyncio TLS handshake leaks the handshake's memory
    (CPython 3.11: 20-30 KB a connection), so the server attaches a closer to each.
    """
    if closer is not None:
        closer()
        return
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)
