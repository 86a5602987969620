"""HTTP probes of an inference worker, each timed by phase: connect, first byte, total.

A probe's timeout is a deadline for the whole exchange, not for each read: a worker that
drips one byte at a time is cut off when the deadline passes (each socket call may wait only
what is left of it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson

from agent.workers.client import Connection, ProtocolError, Stale


@dataclass
class Result:
    """What one probe saw."""

    ok: bool
    status: int = 0
    detail: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # connect, first_byte, total
    body: bytes = b""
    reason: str = ""  # why it failed, as a label: timeout, connect, protocol, http_status,
    # too_large, bad_answer, not_served


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class Session:
    """One connection to a worker, kept open from round to round and reopened when it drops.

    A new connection cost about twice the CPU of a request on an open one (here, 300 against
    160 µs) and woke the worker to accept it; a load balancer's client keeps one open too.
    """

    def __init__(self, base: str, timeout: float) -> None:
        self.conn = Connection(base, timeout)
        self.connect_seconds: float | None = None  # how long the latest connect took

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        self.conn.close()


def _late(seconds: float, phases: dict[str, float]) -> Result:
    return Result(False, detail=f"no whole answer within the {seconds:g}s deadline",
                  phases=phases, reason="timeout")  # fmt: skip


Talk = Callable[[Connection, str, dict[str, float], float], Result]


# What a kept-alive connection the worker closed meanwhile raises: the request goes again on a
# new one (as urllib3 and Go's net/http retry an idempotent request on a stale connection).
STALE = (Stale, ConnectionResetError, BrokenPipeError)


def _exchange(url: str, timeout: float, talk: Talk, session: Session | None = None) -> Result:
    """Connect (unless the session is open), let `talk` do the rest, under one deadline."""
    conn = session.conn if session is not None else Connection(url, timeout)
    began = time.perf_counter()
    conn.deadline = time.monotonic() + timeout  # each socket call may wait only what is left
    phases: dict[str, float] = {}
    try:
        try:
            return _attempt(conn, url, talk, phases, began, session=session)
        except STALE:  # raised by a reused connection before any answer came
            if "connect" in phases:
                raise
            conn.close()  # the worker closed the idle connection: once more on a new one
            return _attempt(conn, url, talk, phases, began, session=session)
    except TimeoutError:
        conn.close()
        return _late(timeout, phases)
    except (OSError, ProtocolError) as exc:
        conn.close()
        kind = "protocol" if isinstance(exc, ProtocolError) else "connect"
        detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
        return Result(False, detail=detail, phases=phases, reason=kind)
    finally:
        if session is None:
            conn.close()


def _attempt(conn: Connection, url: str, talk: Talk, phases: dict[str, float],
             began: float, *, session: Session | None) -> Result:  # fmt: skip
    if conn.sock is None:
        conn.connect()
        phases["connect"] = time.perf_counter() - began
        if session is not None:
            session.connect_seconds = phases["connect"]
    return talk(conn, _path(url), phases, began)


def request(url: str, timeout: float, method: str = "GET", body: bytes | None = None, *,
            limit: int = 4 << 20, session: Session | None = None) -> Result:  # fmt: skip
    """Make one request and time it; network errors and the deadline give ok=False."""

    def talk(conn: Connection, path: str, phases: dict[str, float], began: float) -> Result:
        conn.request(method, path, body, "application/json" if body is not None else None)
        ans = conn.response(limit)  # a body past the limit closes the connection
        now = time.perf_counter()
        phases["first_byte"] = (ans.head_at or now) - began
        phases["total"] = now - began
        if ans.over:  # refused whole: a body cut at the cap would be read as another answer
            return Result(False, ans.status, f"answer over the {limit >> 20} MiB cap", phases,
                          reason="too_large")  # fmt: skip
        ok = 200 <= ans.status < 300
        return Result(ok, ans.status, ans.reason, phases, bytes(ans.body),
                      "" if ok else "http_status")  # fmt: skip

    return _exchange(url, timeout, talk, session)


def liveness(base: str, timeout: float, session: Session | None = None) -> tuple[str, Result]:
    """GET /health: 'ok', 'loading' (503 while the model loads) or 'down'."""
    res = request(base.rstrip("/") + "/health", timeout, session=session)
    if res.ok:
        return "ok", res
    return ("loading" if res.status == 503 else "down"), res


def readiness(base: str, model: str | None, timeout: float,
              session: Session | None = None) -> Result:  # fmt: skip
    """GET /v1/models: ready when it lists the configured model (or any, if none is set)."""
    res = request(base.rstrip("/") + "/v1/models", timeout, session=session)
    if not res.ok:
        return res
    ids = model_ids(res.body)
    if ids is None:
        return Result(False, res.status, "/v1/models is not OpenAI-style JSON", res.phases,
                      reason="bad_answer")  # fmt: skip
    if (model and model not in ids) or not ids:
        return Result(False, res.status, f"model {model!r} not served (has {ids[:10]})",
                      res.phases, reason="not_served")  # fmt: skip
    return res


def model_ids(body: bytes) -> list[str] | None:
    """Return the ids an OpenAI-style model list names, or None for any other shape."""
    try:
        doc = orjson.loads(body)
    except ValueError:
        return None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        return None
    ids = [m.get("id") if isinstance(m, dict) else None for m in data]
    named = [i for i in ids if isinstance(i, str)]
    return named if len(named) == len(ids) else None


def generation(base: str, model: str | None, timeout: float, max_tokens: int = 4) -> Result:
    """Stream a tiny completion; first_byte is the first token, total the whole answer."""
    body = json.dumps({"model": model or "", "prompt": "ping", "max_tokens": max_tokens,
                       "temperature": 0, "stream": True}).encode()  # fmt: skip

    def talk(conn: Connection, path: str, phases: dict[str, float], began: float) -> Result:
        conn.request("POST", path, body, "application/json")
        events = Events(phases, began)
        ans = conn.response(stream=events.feed)
        if ans.status != 200:
            return Result(False, ans.status, ans.reason, phases, reason="http_status")
        phases["total"] = time.perf_counter() - began
        ok = events.tokens > 0
        return Result(ok, 200, f"{events.tokens} token(s)", phases,
                      reason="" if ok else "bad_answer")  # fmt: skip

    return _exchange(base.rstrip("/") + "/v1/completions", timeout, talk)


LINE_LIMIT = 1 << 20  # an event line longer than this ends the stream's reading


class Events:
    """Counts a completion stream's server-sent events until [DONE]; times the first."""

    def __init__(self, phases: dict[str, float], began: float) -> None:
        self.phases, self.began = phases, began
        self.tokens, self.rest = 0, b""

    def feed(self, data: bytes) -> bool:
        """Take a piece of the body; True once [DONE] came."""
        *lines, self.rest = (self.rest + data).split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            if line[5:].strip() == b"[DONE]":
                return True
            self.tokens += 1
            self.phases.setdefault("first_byte", time.perf_counter() - self.began)
        return len(self.rest) > LINE_LIMIT  # no line end in sight: stop reading
