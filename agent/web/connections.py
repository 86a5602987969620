"""A bounded set of connections that slow or idle clients cannot fill against a scraper.

Every connection is either waiting for a request head (new, idle keep-alive, or a client
dripping its headers) or busy with a request. A wait is bounded by `head_timeout` as a whole,
not per read. At the limit, a new connection evicts the one that has waited longest: a
slowloris crowd evicts itself, while a scraper, which sends its request at once, gets in.
Only when every connection is busy is the newcomer refused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

from agent.store import Labels
from agent.web.render import Family

WAITING, BUSY = "waiting", "busy"


class Connections:
    """The open connections, by file descriptor: the socket, its state, and since when."""

    def __init__(self, limit: int, head_timeout: float) -> None:
        self.limit, self.head_timeout = limit, head_timeout
        self._open: dict[int, tuple[socket.socket, str, float]] = {}
        self._lock = threading.Lock()
        self.closed: Counter[str] = Counter()  # by reason: limit, head_timeout, refused

    def admit(self, sock: socket.socket) -> bool:
        """Take a new connection; make room if needed; False when all are busy (refuse it)."""
        now = time.monotonic()
        with self._lock:
            victims = self._expired(now)
            if len(self._open) >= self.limit:
                waiting = [(since, fd) for fd, (_, state, since) in self._open.items()
                           if state == WAITING]  # fmt: skip
                if not waiting:
                    self.closed["refused"] += 1
                    return False
                victims.append(self._open.pop(min(waiting)[1])[0])
                self.closed["limit"] += 1
            self._open[sock.fileno()] = (sock, WAITING, now)
        for victim in victims:
            _hang_up(victim)  # its handler's read returns at once and the thread ends
        return True

    def _expired(self, now: float) -> list[socket.socket]:
        """Remove and return the connections that waited past head_timeout (lock held)."""
        gone = [fd for fd, (_, state, since) in self._open.items()
                if state == WAITING and now - since >= self.head_timeout]  # fmt: skip
        self.closed["head_timeout"] += len(gone)
        return [self._open.pop(fd)[0] for fd in gone]

    def wrapped(self, sock: socket.socket) -> None:
        """Hold the socket that now carries the connection (TLS wraps the accepted one)."""
        with self._lock:
            entry = self._open.get(sock.fileno())
            if entry is not None:
                self._open[sock.fileno()] = (sock, entry[1], entry[2])

    def waiting(self, fd: int) -> None:
        """Mark the connection as waiting for a request head, from now."""
        self._set(fd, WAITING)

    def busy(self, fd: int) -> None:
        """Mark the connection as busy: its request head is in and being answered."""
        self._set(fd, BUSY)

    def _set(self, fd: int, state: str) -> None:
        with self._lock:
            entry = self._open.get(fd)
            if entry is not None:
                self._open[fd] = (entry[0], state, time.monotonic())

    def release(self, fd: int) -> None:
        """Forget a connection that is being closed."""
        with self._lock:
            self._open.pop(fd, None)

    def reap(self) -> None:
        """Close the connections that waited longer than head_timeout (the accept loop calls it)."""
        with self._lock:
            victims = self._expired(time.monotonic())
        for victim in victims:
            _hang_up(victim)

    def metrics(self) -> Iterator[Family]:
        """dsagent_http_connections and dsagent_http_connections_closed_total{reason}."""
        with self._lock:
            states = Counter(state for _, state, _ in self._open.values())
            closed = sorted(self.closed.items())
        by_state: list[tuple[Labels, float]] = [
            ((("state", state),), float(states[state])) for state in (WAITING, BUSY)
        ]
        yield Family("dsagent_http_connections", "gauge", "Open HTTP connections, by state.",
                     by_state)  # fmt: skip
        yield Family("dsagent_http_connections_closed", "counter",
                     "Connections closed or refused to keep the server answering.",
                     [((("reason", reason),), float(n)) for reason, n in closed])  # fmt: skip


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)
