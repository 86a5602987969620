"""aiohttp's connection protocol, held to the agent's bounds: head bytes, SANs, the table.

aiohttp frames the requests; this subclass adds what a node agent under attack needs and aiohttp
leaves to its caller: a cap on the bytes of a whole request head (aiohttp caps lines, not
heads), the client certificate's SAN checked against web.yml's `client_allowed_sans`, every
connection forgotten in the Connections table when it closes, and errors aiohttp answers
itself (a malformed head) counted like any other answer.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web_protocol, web_request, web_response, web_server
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from agent.web.admin import AdminApi
from agent.web.auth import BasicAuth
from agent.web.connections import Connections

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a connection and its requests ask of their server (agent.web.server.WebServer)."""

    connections: Connections
    routes: dict[str, Callable[[web_request.BaseRequest], tuple[int, str, bytes]]]
    admin: AdminApi | None
    basic: BasicAuth | None
    allowed_sans: frozenset[str]
    response_headers: dict[str, str]
    max_head: int
    max_body: int

    def count(self, handler: str, code: int) -> None:
        """Count one answered request."""
        ...


TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
             b"Content-Length: 45\r\nConnection: close\r\n\r\n"
             b'{"error": "Request header fields too large"}\n')  # fmt: skip


class Guard(web_protocol.RequestHandler):
    """One connection: aiohttp's handler, plus its socket, its head's bytes and its checks."""

    def __init__(self, manager: web_server.Server, web: Host, sock: socket.socket,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(manager, **kwargs)
        self.web, self.sock = web, sock
        self.in_head = True  # reading a request head (not a body, not answering)
        self.head_bytes = 0
        self._tail = b""  # the last bytes of the head so far: its empty line may span reads
        self.body: StreamReader | None = None  # the admin body being read, if one is
        self.input_ended = False  # the client half-closed
        self._begun = False  # a head's first line has begun (empty lines before it are skipped)

    def connection_made(self, transport: Any) -> None:
        """Take the connection; a TLS client whose certificate SAN is not allowed is hung up."""
        super().connection_made(transport)
        self.web.connections.attach(self.sock, transport.abort)
        sans = self.web.allowed_sans
        if sans and transport.get_extra_info("sslcontext") is not None:
            cert: dict[str, Any] = dict(transport.get_extra_info("peercert") or {})
            given = {str(pair[1]) for pair in cert.get("subjectAltName", ())}
            if given.isdisjoint(sans):
                self.web.count("tls", 403)
                transport.abort()

    def data_received(self, data: bytes) -> None:
        """Count a head's bytes as a whole; past http.max_head_bytes the answer is a 431."""
        if self.in_head and self._over_cap(data):
            self.web.count("other", 431)
            if self.transport is not None:
                self.transport.write(TOO_LARGE)
                self.transport.close()
            return
        super().data_received(data)

    def _over_cap(self, data: bytes) -> bool:
        """Count the head's bytes in data; note where it ends (what follows is not a head's)."""
        rest = data if self._begun else data.lstrip(b"\r\n")  # empty lines before a request
        self._begun = self._begun or bool(rest)
        seen = self._tail + rest
        end = _head_end(seen) if self._begun else -1  # just past the head's empty line, or -1
        self.head_bytes += len(data) if end < 0 else len(data) - len(rest) + end - len(self._tail)
        if self.head_bytes > self.web.max_head:
            return True
        if end < 0:
            self._tail = seen[-3:]
        else:
            self.in_head, self.head_bytes, self._tail, self._begun = False, 0, b"", False
        return False

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio's returns one
        """Answer a client that half-closed after its request, then close (as Go's server does).

        The server's own hang-ups never come here: it aborts the transport (Connections).
        """
        self.input_ended = True
        if self.body is not None and not self.body.is_eof():  # a body cut short ends now
            self.body.set_exception(ConnectionResetError("the client ended its input"))
        self.close()  # no further requests; the ones already in are answered
        serving = getattr(self, "_task_handler", None)  # aiohttp's loop over the requests
        if serving is None:
            return False
        serving.add_done_callback(self._hang_up)  # however that loop ends, the connection ends
        return True  # keep the transport open for the answer

    def _hang_up(self, _: object) -> None:
        if self.transport is not None:
            self.transport.close()

    def request_ended(self) -> None:
        """Count head bytes again: the answer is out, the next bytes are the next head."""
        self.in_head = True

    def connection_lost(self, exc: BaseException | None) -> None:
        """Forget the connection (before its socket closes and its descriptor is reused)."""
        self.web.connections.release(self.sock)
        super().connection_lost(exc)

    def handle_error(self, request: web_request.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web_response.StreamResponse:  # fmt: skip
        """Count an answer aiohttp gives itself: a malformed head (400), a handler that raised."""
        self.web.count("error" if status >= 500 else "other", status)
        return super().handle_error(request, status, exc, message)

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """Log a handler that raised with its traceback; a malformed request is only counted."""
        if isinstance(kwargs.get("exc_info"), HttpProcessingError):
            log.debug(*args, **kwargs)
        else:
            log.exception(*args, **kwargs)


def _head_end(data: bytes) -> int:
    """Return the index just past a head's empty line (CRLF CRLF, or LF LF) in data, or -1."""
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n") if (i := data.find(mark)) >= 0]
    return min(ends, default=-1)
