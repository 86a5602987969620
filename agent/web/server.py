"""A small threaded HTTP(S) server: admission, TLS, routes, auth, and the counted requests."""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from agent.config import split_listen
from agent.store import SeriesStore
from agent.supervise import SUPERVISOR
from agent.web.accept import AcceptLoop
from agent.web.admin import AdminApi
from agent.web.auth import BasicAuth
from agent.web.connections import Connections
from agent.web.exporter import ProcessMetrics, SelfMetrics
from agent.web.handler import Handler, Response, Route, json_response
from agent.web.head import MAX_HEAD
from agent.web.render import Family, Renderer

log = logging.getLogger(__name__)


class WebServer(AcceptLoop, ThreadingHTTPServer):
    """The agent's HTTP or HTTPS listener."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, listen: str, store: SeriesStore, healthy: Callable[[], bool],
                 readiness: Callable[[], list[str]] | None = None, *,
                 tls: ssl.SSLContext | None = None, basic: BasicAuth | None = None,
                 admin: AdminApi | None = None, max_body: int = 1 << 20, max_head: int = MAX_HEAD,
                 connections: Connections | None = None) -> None:  # fmt: skip
        host, port = split_listen(listen)
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.connections = connections or Connections(limit=64, head_timeout=30.0)
        self.tick = min(max(self.connections.head_timeout / 10, 0.1), 5.0)  # reaping's grain
        super().__init__((host, port), Handler)
        self.tls, self.basic, self.admin, self.max_body = tls, basic, admin, max_body
        self.max_head = max_head
        self.allowed_sans: frozenset[str] = frozenset()
        self.response_headers: dict[str, str] = {}
        self.requests: Counter[tuple[str, int]] = Counter()
        self._lock = threading.Lock()
        self.own = SelfMetrics(store, self._http_metrics)
        self.process = ProcessMetrics()
        self.renderer = Renderer(store)
        self.routes: dict[str, Route] = {
            "/metrics": self.metrics, "/healthz": self._health, "/readyz": self._ready,
        }  # fmt: skip
        self.healthy = healthy
        self.readiness = readiness or (lambda: [])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Admit the connection (making room if needed) or refuse it, then serve it."""
        if not self.connections.admit(request):
            self.count("refused", 503)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        """Log a request that failed; a broken connection (reset, evicted) is routine."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection from %s ended: %s", client_address, exc)
            return
        self.count("error", 500)
        log.exception("request from %s failed", client_address)

    def service_actions(self) -> None:
        """Every tick (a tenth of the head timeout): close heads that took too long."""
        self.connections.reap()

    def finish_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Do the TLS handshake on the handler's thread; a plain-HTTP client is refused here."""
        fd = request.fileno()
        try:
            if self.tls is not None:
                # The TLS socket is in the table before its handshake, which has the head's
                # deadline: a silent or dripping handshake is evictable like a slow head.
                request = self.tls.wrap_socket(request, server_side=True,
                                               do_handshake_on_connect=False)  # fmt: skip
                self.connections.wrapped(request)
                try:
                    request.settimeout(self.connections.head_timeout)
                    request.do_handshake()
                except (OSError, ssl.SSLError) as exc:
                    self.count("tls", 400)
                    log.debug("TLS handshake with %s failed: %s", client_address, exc)
                    return
                if self.allowed_sans and not _san_allowed(request, self.allowed_sans):
                    self.count("tls", 403)
                    log.debug("client %s: certificate SAN not in client_allowed_sans",
                              client_address)  # fmt: skip
                    return
            super().finish_request(request, client_address)
        finally:
            self.connections.release(fd)

    def configure(self, tls: ssl.SSLContext | None, basic: BasicAuth | None,
                  sans: frozenset[str] = frozenset(),
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Take a (re)loaded web.yml: new connections get its certificate, users and headers."""
        self.tls, self.basic, self.allowed_sans = tls, basic, sans
        self.response_headers = dict(headers or {})

    def scrape_allowed(self, req: Handler) -> bool:
        """Require basic auth on /metrics when web.yml lists users; slow a guessing client."""
        if self.basic is None:
            return True
        client = req.client_address[0]
        if self.basic.check(req.header_map(), client):
            return True
        hold = self.basic.penalty(client)
        if hold:  # waiting, not busy: at the limit a scraper evicts it
            self.connections.waiting(req.request.fileno())
            time.sleep(hold)
        return False

    def count(self, handler: str, code: int) -> None:
        """Count one answered request."""
        with self._lock:
            self.requests[(handler, code)] += 1

    def _http_metrics(self) -> Iterator[Family]:
        yield from self.connections.metrics()
        with self._lock:
            rows = sorted(self.requests.items())
        yield Family("dsagent_http_requests", "counter", "HTTP requests answered.",
                     [((("code", str(code)), ("handler", handler)), float(n))
                      for (handler, code), n in rows])  # fmt: skip

    def metrics(self, req: Handler) -> Response:
        """Render the store in the format the scraper asked for."""
        ctype = choose_encoder(req.headers.get("Accept") or "")[1]
        om = ctype.startswith("application/openmetrics")
        own = self.renderer.render_own((*self.own.families(), *self.process.families()), om)
        text = "".join((self.renderer.render(om), own, "# EOF\n" if om else ""))
        return 200, ctype, text.encode()

    def _health(self, req: Handler) -> Response:
        if self.healthy():
            return json_response(200, {"status": "ok"})
        reason = "the round loop is not running"
        return json_response(503, {"status": "unhealthy", "reason": reason})

    def _ready(self, req: Handler) -> Response:
        """200 when every worker is ready and no critical GPU alert fires; else 503 and why."""
        reasons = self.readiness()
        if not self.healthy():
            reasons = ["the round loop is not running", *reasons]
        return json_response(503 if reasons else 200,
                             {"ready": not reasons, "reasons": reasons})  # fmt: skip

    def serve_in_thread(self) -> threading.Thread:
        """Serve on a daemon thread and return it."""
        stopped = threading.Event()

        def serve() -> None:
            SUPERVISOR.run("http", self.serve_forever, stopped)

        thread = threading.Thread(target=serve, name="http", daemon=True)
        thread.start()
        return thread


def _san_allowed(sock: ssl.SSLSocket, allowed: frozenset[str]) -> bool:
    """Return True if the verified client certificate has a SAN in the list (exact match)."""
    cert: dict[str, Any] = dict(sock.getpeercert() or {})
    sans = {str(pair[1]) for pair in cert.get("subjectAltName", ())}
    return not sans.isdisjoint(allowed)
