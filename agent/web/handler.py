"""One request, routed: open health routes, /metrics (basic auth if set), /api/v1 (tokens).

aiohttp calls `Dispatch.__call__` as soon as a request's head is in. Only the admin API reads a
body, with a size cap and the head's deadline for the whole of it; until its body is in, the
connection still counts as waiting (evictable at the limit). Every other route never reads a
body: it answers at once, and aiohttp closes a connection whose body was left unread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import Executor

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from agent.web.guard import Guard, Host

Response = tuple[int, str, bytes]
Route = Callable[[web.BaseRequest], Response]


def json_response(code: int, body: object) -> Response:
    """Encode a JSON response."""
    return code, "application/json", json.dumps(body).encode() + b"\n"


class BodyRefused(Exception):
    """An admin body that is not taken: the answer to give instead."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Dispatch:
    """Routes a server's requests and counts each answer."""

    def __init__(self, server: Host, pool: Executor) -> None:
        self.server, self.pool = server, pool

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer one request; the connection is busy from its head (or body) to its answer."""
        guard = request.protocol
        assert isinstance(guard, Guard)
        try:
            return await self._answer(request, guard)
        finally:
            guard.request_ended()
            self.server.connections.waiting(guard.sock)

    async def _answer(self, request: web.BaseRequest, guard: Guard) -> web.StreamResponse:
        server, path = self.server, request.raw_path.partition("?")[0]
        if path.startswith("/api/"):
            guard.body = request.content  # a half-close ends it (Guard.eof_received)
            try:
                body = await self._body(request, guard.input_ended)
            except BodyRefused as refused:
                refusal = self.respond(
                    request, "", json_response(refused.code, {"error": refused.reason})
                )
                refusal.force_close()  # what follows could not be framed: close once answered
                return refusal
            finally:
                guard.body = None
            server.connections.busy(guard.sock)
            return await self._admin(request, path, body)
        server.connections.busy(guard.sock)
        route = server.routes.get(path)
        if route is None:
            return self.respond(
                request, path, json_response(404, {"error": f"no such endpoint: {path}"})
            )
        if request.method not in ("GET", "HEAD"):
            answer = json_response(405, {"error": f"{request.method} not allowed"})
            return self.respond(request, path, answer)
        if path == "/metrics" and not await self._scrape_allowed(request, guard):
            return self.respond(request, path, json_response(401, {"error": "basic auth required"}),
                                extra={"WWW-Authenticate": 'Basic realm="dsagent"'})  # fmt: skip
        return self.respond(request, path, route(request))

    async def _scrape_allowed(self, request: web.BaseRequest, guard: Guard) -> bool:
        """Require basic auth when web.yml lists users; a failure past the allowance waits."""
        basic = self.server.basic
        if basic is None:
            return True
        headers = header_map(request)
        if basic.cached(headers):
            return True
        client = request.remote or ""
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(self.pool, basic.check, headers, client):  # bcrypt
            return True
        hold = basic.penalty(client)
        if hold:  # waiting, not busy: at the limit a scraper evicts it
            self.server.connections.waiting(guard.sock)
            await asyncio.sleep(hold)
        return False

    async def _body(self, request: web.BaseRequest, ended: bool) -> bytes:
        """Read a bounded body within the head's deadline; BodyRefused if it is not taken."""
        cap = self.server.max_body
        if (request.content_length or 0) > cap:
            raise BodyRefused(413, f"body over {cap} bytes")
        if ended and not request.content.is_eof():
            raise BodyRefused(400, "the body ended early")
        expect = request.headers.get("Expect", "").lower()
        if expect == "100-continue" and request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.server.connections.head_timeout):
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > cap:
                        raise BodyRefused(413, f"body over {cap} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyRefused(408, "the body did not come in time") from None
        except (HttpProcessingError, ConnectionResetError):  # input ended before the body did
            raise BodyRefused(400, "the body ended early") from None
        return b"".join(chunks)

    async def _admin(self, request: web.BaseRequest, path: str, body: bytes) -> web.StreamResponse:
        api = self.server.admin
        if api is None:
            off = json_response(404, {"error": "the admin API is off"})
            return self.respond(request, path, off)
        loop = asyncio.get_running_loop()
        code, answer = await loop.run_in_executor(
            self.pool, lambda: api.handle(request.method, path, header_map(request), body,
                                          request.remote or "",
                                          query=request.raw_path.partition("?")[2]),
        )  # fmt: skip  # the admin API writes its audit log and state: off the loop
        extra = {"WWW-Authenticate": 'Bearer realm="dsagent"'} if code == 401 else None
        return self.respond(request, "/api", json_response(code, answer), extra=extra)

    def respond(self, request: web.BaseRequest, path: str, answer: Response,
                extra: dict[str, str] | None = None) -> web.Response:  # fmt: skip
        """Count the answer and build it, with web.yml's headers."""
        server, (code, ctype, body) = self.server, answer
        server.count(path if path in server.routes or path == "/api" else "other", code)
        headers = {**server.response_headers, "Server": "dsagent", "Content-Type": ctype,
                   **(extra or {})}  # fmt: skip
        return web.Response(status=code, body=body, headers=headers)


def header_map(request: web.BaseRequest) -> dict[str, str]:
    """Return the headers with lower-case names (the last of a repeated one), as ISO-8859-1.

    aiohttp keeps bytes that are not UTF-8 as surrogates; read as Latin-1, as http.client reads
    them, a value always encodes again (a token of 0xff bytes is a wrong token, not an error).
    """
    return {k.lower(): v.encode("utf-8", "surrogateescape").decode("latin-1")
            for k, v in request.headers.items()}  # fmt: skip
