"""A small HTTP/1.1 client for the worker probes: one socket, httptools' C parser.

http.client parses each answer's head with the email package: about 110 µs of CPU for a
/health answer whose round trip on the socket costs 30. httptools (llhttp, as uvicorn uses)
reads the same answer in 30 µs all told, and rejects a malformed one with an error.
"""

from __future__ import annotations

import functools
import math
import select
import socket
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httptools

CHUNK = 65536
HEAD_LIMIT = 64 << 10  # an answer's status line and headers (http.client allowed 100 lines)


@functools.cache
def _tls() -> ssl.SSLContext:
    """Return the TLS context, built at the first https worker (it loads the CA store)."""
    return ssl.create_default_context()


class ProtocolError(Exception):
    """The worker's answer is not HTTP/1.x."""


class Closed(ConnectionError):
    """The worker closed the connection before its answer was whole."""


class Late(TimeoutError):
    """The exchange's deadline passed."""


class Stale(Closed):
    """The worker closed a kept connection before answering at all: safe to ask again."""


class Answer:
    """One response, gathered by httptools' callbacks up to a byte limit."""

    def __init__(self, limit: int, stream: Callable[[bytes], bool] | None) -> None:
        self.limit, self.stream = limit, stream
        self.status, self.reason, self.body = 0, "", bytearray()
        self.head_at: float | None = None  # perf_counter when the head was whole
        self.framed = False  # a length or chunks end the body (else the close does)
        self.done = self.stop = False  # whole; or no more wanted (past the limit, or told to)
        self.over = False  # the body passed the limit: what was kept is not the answer
        self.keep = False  # the worker keeps the connection open after this answer
        self.surplus = False  # bytes came after the answer, unasked: the connection is spoilt
        self.parser: httptools.HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        """Note a second answer, to nothing asked: it spoils the connection."""
        self.surplus |= self.done

    def on_status(self, reason: bytes) -> None:
        """Keep the reason phrase (of the first answer), which comes in pieces when it is cut."""
        if not self.done:
            self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Note whether the body has its own end."""
        self.framed |= name.lower() in (b"content-length", b"transfer-encoding")

    def on_headers_complete(self) -> None:
        """Time the head; read status and keep-alive while the parser still has them."""
        if self.done:
            return
        self.head_at = time.perf_counter()
        if self.parser is not None:
            self.status, self.keep = self.parser.get_status_code(), self.parser.should_keep_alive()

    def on_body(self, data: bytes) -> None:
        """Keep the body up to the limit, or hand it to the streaming reader."""
        if self.done:
            return  # a surplus answer's
        if self.stream is not None:
            self.stop |= self.stream(data)
            return
        self.over |= len(self.body) + len(data) > self.limit
        self.body += data[: self.limit - len(self.body)]
        self.stop |= self.over

    def on_message_complete(self) -> None:
        """Mark the answer whole (any after it began with on_message_begin: surplus)."""
        self.done = True


class Connection:
    """One HTTP/1.1 connection to a worker (TLS for https), opened by `connect`."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.timeout = timeout
        self.deadline: float | None = None  # monotonic end of the exchange under way
        self.sock: socket.socket | None = None
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host = host if parts.port is None else f"{host}:{self.port}"

    def connect(self) -> None:
        """Open the connection (TLS verified against the system's CAs for https).

        Once open it is non-blocking: each read and write waits in one poll() for what is left
        of the deadline. A socket timeout would cost an ioctl and a poll of its own per call.
        """
        sock = socket.create_connection((self.host, self.port), self._left())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            sock = _tls().wrap_socket(sock, server_hostname=self.host)
        sock.setblocking(False)
        self.sock = sock

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None) -> None:  # fmt: skip
        """Send one request in one write."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\nAccept-Encoding: identity\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        self._send(head.encode("latin-1") + b"\r\n" + (body or b""))

    def _send(self, data: bytes) -> None:
        """Write all of data before the deadline."""
        sock, view = self._sock(), memoryview(data)
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._wait(sock, select.POLLOUT)
            except ssl.SSLWantReadError:  # TLS may need to read before it can write
                self._wait(sock, select.POLLIN)

    def response(self, limit: int = 4 << 20,
                 stream: Callable[[bytes], bool] | None = None) -> Answer:  # fmt: skip
        """Read one answer: its body up to `limit`, or each piece to `stream` (True: enough).

        An answer not read to its end leaves the connection closed, as does one the worker
        will not keep alive.
        """
        answer = Answer(limit, stream)
        parser = answer.parser = httptools.HttpResponseParser(answer)
        try:
            self._read(answer, parser)
        finally:
            answer.parser = None  # no cycle left for the collector
        if not (answer.done and answer.keep) or answer.surplus:
            self.close()
        return answer

    def _read(self, answer: Answer, parser: httptools.HttpResponseParser) -> None:
        sock, got = self._sock(), 0
        while not (answer.done or answer.stop):
            if answer.head_at is None and got > HEAD_LIMIT:  # llhttp would buffer it all
                self.close()
                raise ProtocolError(f"the answer's head passed {HEAD_LIMIT} bytes")
            self._wait(sock, select.POLLIN)  # a worker that drips is cut at the deadline
            try:
                data = sock.recv(CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):  # a TLS record not whole yet
                continue
            except ssl.SSLWantWriteError:
                self._wait(sock, select.POLLOUT)
                continue
            if not data:
                self.close()
                if answer.head_at is not None and not answer.framed:
                    return  # an HTTP/1.0-style body: the close is its end
                if got:
                    raise Closed("the worker closed the connection mid-answer")
                raise Stale("the worker closed the connection without an answer")
            got += len(data)
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                self.close()
                if answer.done:  # the answer was whole; what came after it was not HTTP
                    return
                raise ProtocolError(f"not an HTTP answer: {exc}") from exc

    def _wait(self, sock: socket.socket, event: int) -> None:
        """Wait until the socket is ready to read or write; Late past the deadline."""
        left = self._left()
        if event == select.POLLIN and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # TLS has decrypted bytes in hand: the socket itself may have none
        poller = select.poll()
        poller.register(sock, event)
        if not poller.poll(math.ceil(left * 1000)):
            raise Late("the deadline passed")

    def _left(self) -> float:
        """Return what is left of the deadline (the timeout if none is set); Late if nothing."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Late("the deadline passed")
        return left

    def _sock(self) -> socket.socket:
        if self.sock is None:
            raise Closed("not connected")
        return self.sock
