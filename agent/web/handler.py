"""One HTTP/1.1 connection's requests: a strict head, bounded bodies, routes, counted answers."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Protocol
from urllib.parse import urlsplit

from agent.web.admin import AdminApi
from agent.web.connections import Connections
from agent.web.head import BadHead, read_fields, refuse_unsupported, request_line

log = logging.getLogger(__name__)

Response = tuple[int, str, bytes]
Route = Callable[["Handler"], Response]


def json_response(code: int, body: object) -> Response:
    """Encode a JSON response."""
    return code, "application/json", json.dumps(body).encode() + b"\n"


class _Date:
    """The Date header's text for the current second, shared by every handler."""

    second, text = -1, ""


class Host(Protocol):
    """What a handler asks of its server (agent.web.server.WebServer)."""

    connections: Connections
    routes: dict[str, Route]
    admin: AdminApi | None
    max_body: int
    max_head: int
    response_headers: dict[str, str]

    def scrape_allowed(self, req: Handler) -> bool:
        """Say whether /metrics may be read (basic auth, when web.yml lists users)."""
        ...

    def count(self, handler: str, code: int) -> None:
        """Count one answered request."""
        ...


class Handler(BaseHTTPRequestHandler):
    """Dispatches requests: open health routes, /metrics (basic auth if set), /api/v1 (tokens)."""

    server: Host  # type: ignore[assignment]  # the socketserver's, with what routing needs
    raw_requestline: bytes  # handle_one_request reads it
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # so even a garbage request line gets a status line
    server_version = "dsagent"
    disable_nagle_algorithm = True  # the body follows the head at once, not after an ACK
    # Head and body leave in one send when the request is done (handle_one_request flushes):
    # unbuffered, each was a send of its own, and a loopback send costs as much as the render.
    wbufsize = 1 << 20
    timeout = 15  # per read; the whole head is bounded by the server's Connections

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Return the Date header's text, formatted once a second (email.utils is slow)."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        if _Date.second != now:  # the text first: a reader sees the new second with its text
            _Date.text, _Date.second = super().date_time_string(now), now
        return _Date.text

    def handle_one_request(self) -> None:
        """Wait for a request head (bounded as a whole), then answer it."""
        self.server.connections.waiting(self.request.fileno())
        super().handle_one_request()

    def parse_request(self) -> bool:
        """Read the head (agent.web.head), refuse what this server does not take, answer Expect."""
        self.command, self.close_connection = "", True
        self.request_version = self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        try:
            line = request_line(words, self.default_request_version)
            self.command, self.path, self.request_version = line[:3]
            self.headers = read_fields(self.rfile, self.server.max_head - len(self.raw_requestline))
            refuse_unsupported(self.request_version, self.headers)
        except BadHead as bad:
            self.send_error(bad.code, bad.reason)
            return False
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            not line.keep_alive and connection != "keep-alive"
        )
        expect = self.headers.get("Expect", "").lower()
        if expect == "100-continue" and line.keep_alive:  # HTTP/1.1 or later, by number
            return self.handle_expect_100()
        return True

    def handle_expect_100(self) -> bool:
        """Send 100 Continue at once: the write buffer would hold it until the final answer."""
        super().handle_expect_100()
        self.wfile.flush()
        return True

    def header_map(self) -> dict[str, str]:
        """Return the headers with lower-case names (header names are case-insensitive)."""
        return {k.lower(): v for k, v in self.headers.items()}

    def do_GET(self) -> None:
        """Answer a GET."""
        self._dispatch()

    def do_HEAD(self) -> None:
        """Answer HEAD like GET; the body is dropped in _send."""
        self._dispatch()

    def do_POST(self) -> None:
        """Answer a POST (the admin API)."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Answer a DELETE (the admin API)."""
        self._dispatch()

    def _dispatch(self) -> None:
        """Route the request; only the admin API reads a body, within the head's deadline.

        Until its body is in, an admin request still counts as waiting: bounded by the head's
        deadline as a whole and evictable at the limit, so a client that drips a body holds no
        place a scraper needs. Every other route never reads one: a request that came with a
        body is answered and its connection closed (what follows could not be framed).
        """
        path = urlsplit(self.path).path
        if path.startswith("/api/"):
            body = self._body()
            self.server.connections.busy(self.request.fileno())
            if body is not None:
                self._admin(path, body)
            return
        self.server.connections.busy(self.request.fileno())
        if (self.headers.get("Content-Length") or "0").strip() != "0":
            self.close_connection = True  # its body is never read
        route = self.server.routes.get(path)
        if route is None:
            self._send(path, *json_response(404, {"error": f"no such endpoint: {path}"}))
        elif self.command not in ("GET", "HEAD"):
            self._send(path, *json_response(405, {"error": f"{self.command} not allowed"}))
        elif path == "/metrics" and not self.server.scrape_allowed(self):
            self._send(path, *json_response(401, {"error": "basic auth required"}),
                       extra={"WWW-Authenticate": 'Basic realm="dsagent"'})  # fmt: skip
        else:
            self._send(path, *route(self))

    def _body(self) -> bytes | None:
        """Read a bounded body; None when it was refused (too large, or cut at the deadline)."""
        length = int((self.headers.get("Content-Length") or "0").strip())  # digits: checked
        if length > self.server.max_body:
            self.close_connection = True
            self._send(
                "", *json_response(413, {"error": f"body over {self.server.max_body} bytes"})
            )
            return None
        try:
            body = self.rfile.read(length) if length else b""
        except OSError:  # the deadline hung it up, or the client went
            body = b""
        if len(body) < length:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._send("", *json_response(408, {"error": "the body did not come in time"}))
            return None
        return body

    def _admin(self, path: str, body: bytes) -> None:
        api = self.server.admin
        if api is None:
            self._send(path, *json_response(404, {"error": "the admin API is off"}))
            return
        query = urlsplit(self.path).query
        code, answer = api.handle(self.command, path, self.header_map(), body,
                                  self.client_address[0], query=query)  # fmt: skip
        extra = {"WWW-Authenticate": 'Bearer realm="dsagent"'} if code == 401 else None
        self._send("/api", *json_response(code, answer), extra=extra)

    def _send(self, path: str, code: int, ctype: str, body: bytes,
              extra: dict[str, str] | None = None) -> None:  # fmt: skip
        handler = path if path in self.server.routes or path == "/api" else "other"
        self.server.count(handler, code)
        self.send_response(code)
        for key, value in self.server.response_headers.items():  # web.yml's headers
            self.send_header(key, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a malformed request with a status line and a JSON reason, and count it."""
        self.close_connection = True
        if not self.request_version.startswith("HTTP/1."):  # never a bare HTTP/0.9 answer
            self.request_version = "HTTP/1.0"
        reason = message or HTTPStatus(code).phrase
        self._send("", *json_response(code, {"error": reason}))

    def log_message(self, format: str, *args: object) -> None:
        """Send access logs to our logger at debug level instead of stderr."""
        if log.isEnabledFor(logging.DEBUG):  # formatted only when kept: every request logs
            log.debug("%s %s", self.address_string(), format % args)
