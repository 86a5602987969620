"""The agent's HTTP(S) listener: aiohttp on one asyncio thread, with admission and routes.

aiohttp frames requests and answers; an idle, slow or half-open connection costs a socket and a
coroutine, never a thread. The listener's own accept loop admits each connection into the
Connections table before anything is read from it (TLS handshake included, which has the head's
deadline), so every connection in any phase is counted, bounded and evictable. The two things
that may block, a bcrypt check and the admin API (its audit log, its state files), run on a
small pool; the rest (routing, rendering /metrics) runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
import threading
import time
from asyncio import sslproto
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web, web_server
from prometheus_client.exposition import choose_encoder

from agent.config import split_listen
from agent.store import SeriesStore
from agent.supervise import SUPERVISOR
from agent.web.admin import AdminApi
from agent.web.auth import BasicAuth
from agent.web.connections import Connections
from agent.web.exporter import ProcessMetrics, SelfMetrics
from agent.web.guard import Guard
from agent.web.handler import Dispatch, Response, Route, json_response
from agent.web.render import Family, Renderer

log = logging.getLogger(__name__)

MAX_HEAD = 16384  # bytes of a whole head by default (Go's net/http allows 1 MB; nginx 8-32 KiB)
# asyncio's TLS protocol allocates a receive buffer of this size for every connection, 256 KiB by
# default: 16 MB for 64 connections in their handshakes, a flood's worth of RSS. The agent's
# requests are small, and a larger read only takes more turns: 32 KiB holds two TLS records.
sslproto.SSLProtocol.max_size = 32 * 1024


class WebServer:
    """The agent's HTTP or HTTPS listener."""

    def __init__(self, listen: str, store: SeriesStore, healthy: Callable[[], bool],
                 readiness: Callable[[], list[str]] | None = None, *,
                 tls: ssl.SSLContext | None = None, basic: BasicAuth | None = None,
                 admin: AdminApi | None = None, max_body: int = 1 << 20, max_head: int = MAX_HEAD,
                 connections: Connections | None = None) -> None:  # fmt: skip
        host, port = split_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # As deep a listen queue as the kernel allows (Go's net.Listen asks the same): a flood of
        # connects must not fill it, or a scraper's SYN is dropped and sent again a second later.
        self.socket = socket.create_server((host, port), family=family, backlog=socket.SOMAXCONN)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self.connections = connections or Connections(limit=64, head_timeout=30.0)
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
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-pool")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._opening: set[asyncio.Task[None]] = set()

    def configure(self, tls: ssl.SSLContext | None, basic: BasicAuth | None,
                  sans: frozenset[str] = frozenset(),
                  headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Take a (re)loaded web.yml: new connections get its certificate, users and headers."""
        self.tls, self.basic, self.allowed_sans = tls, basic, sans
        self.response_headers = dict(headers or {})

    def serve_forever(self) -> None:
        """Serve until shutdown() (on the calling thread, in an event loop of its own)."""
        self._stopped.clear()
        try:
            asyncio.run(self._serve())
        finally:
            self._loop = None
            self._stopped.set()

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        manager = web_server.Server(Dispatch(self, self._pool), access_log=None)
        tasks = [asyncio.create_task(self._accept(manager)), asyncio.create_task(self._reap())]
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            self.connections.hang_up_all()
            await asyncio.sleep(0)  # the transports see their end

    async def _accept(self, manager: web_server.Server) -> None:
        """Admit each new connection (making room if needed) or refuse it, then serve it."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self.socket)
            except OSError as exc:  # out of descriptors: wait, as Go's server does
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                log.warning("accept: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if not self.connections.admit(sock):
                self.count("refused", 503)
                sock.close()
                continue
            task = loop.create_task(self._open(manager, sock))
            self._opening.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._opening.discard)
            self.connections.attach(sock, task.cancel)  # until aiohttp has it: ends the handshake
            # Let the loop close what admit() hung up before the next accept: from a deep queue,
            # accepts that never yield would hold every evicted descriptor open at once.
            await asyncio.sleep(0)

    async def _open(self, manager: web_server.Server, sock: socket.socket) -> None:
        """Hand the socket to aiohttp, after a TLS handshake that has the head's deadline."""
        loop, tls, head = asyncio.get_running_loop(), self.tls, self.connections.head_timeout

        def protocol() -> Guard:
            # aiohttp's own idle timer is a backstop only: the reaper closes (and counts) first.
            return Guard(manager, self, sock, loop=loop, keepalive_timeout=2 * head,
                         max_line_size=self.max_head, max_field_size=self.max_head,
                         lingering_time=0, access_log=None)  # fmt: skip

        limit = head if tls else None
        try:
            await loop.connect_accepted_socket(protocol, sock, ssl=tls, ssl_handshake_timeout=limit)
        except asyncio.CancelledError:  # evicted or reaped in its handshake
            self.connections.release(sock)
            return
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self.connections.release(sock)
            self.count("tls", 400)
            log.debug("TLS handshake failed: %s", exc)
            with contextlib.suppress(OSError):
                sock.close()

    async def _reap(self) -> None:
        """Close each connection that waited past the head timeout, when its time comes.

        The reaper sleeps until the longest-waiting connection's time is up, or a whole head
        timeout when none waits: a connection that starts waiting later has a later end, so an
        idle agent's loop wakes for nothing. (A reload that shortens the timeout applies to
        connections already waiting at the next reap, at most the old timeout later.)
        """
        while True:
            due = self.connections.next_expiry()
            wait = self.connections.head_timeout if due is None else due - time.monotonic()
            await asyncio.sleep(max(wait, 0.01))
            self.connections.reap()

    def shutdown(self) -> None:
        """Stop serving and wait until it has (call it from another thread)."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(stop.set)
            self._stopped.wait(5)

    def server_close(self) -> None:
        """Close the listening socket and the pool."""
        self.socket.close()
        self._pool.shutdown(wait=False)

    def serve_in_thread(self) -> threading.Thread:
        """Serve on a daemon thread and return it."""
        stopped = threading.Event()

        def serve() -> None:
            SUPERVISOR.run("http", self.serve_forever, stopped)

        thread = threading.Thread(target=serve, name="http", daemon=True)
        thread.start()
        return thread

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

    def metrics(self, req: web.BaseRequest) -> Response:
        """Render the store in the format the scraper asked for."""
        ctype = choose_encoder(req.headers.get("Accept") or "")[1]
        om = ctype.startswith("application/openmetrics")
        own = self.renderer.render_own((*self.own.families(), *self.process.families()), om)
        text = "".join((self.renderer.render(om), own, "# EOF\n" if om else ""))
        return 200, ctype, text.encode()

    def _health(self, req: web.BaseRequest) -> Response:
        if self.healthy():
            return json_response(200, {"status": "ok"})
        reason = "the round loop is not running"
        return json_response(503, {"status": "unhealthy", "reason": reason})

    def _ready(self, req: web.BaseRequest) -> Response:
        """200 when every worker is ready and no critical GPU alert fires; else 503 and why."""
        reasons = self.readiness()
        if not self.healthy():
            reasons = ["the round loop is not running", *reasons]
        return json_response(503 if reasons else 200,
                             {"ready": not reasons, "reasons": reasons})  # fmt: skip
