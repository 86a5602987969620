"""A request head read as RFC 9112 asks, without the email package.

http.server hands the header fields to http.client, which runs them through the email package's
feed parser: a tenth of a scrape's CPU for five fields. The request line is read here as
http.server reads it; the fields strictly: a line without a colon, a field name that is not a
token (white space before the colon, a folded line) or a value holding CR or NUL is a 400
(RFC 9112 5.1 and 5.2, RFC 9110 5.5); more than 100 fields, or a head over its byte budget
(http.max_head_bytes, request line included), a 431.
"""

from __future__ import annotations

import io
import re
from http.client import HTTPMessage
from typing import NamedTuple

MAX_FIELDS = 100  # as http.client
MAX_HEAD = 16384  # bytes of a whole head by default (Go's net/http allows 1 MB; nginx 8-32 KiB)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class BadHead(Exception):
    """A head this server refuses: the status to answer and why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class RequestLine(NamedTuple):
    """A request line's parts; `keep_alive` when its version keeps the connection by default."""

    command: str
    path: str
    version: str
    keep_alive: bool


def _number(version: str) -> tuple[int, int] | None:
    """Return HTTP/x.y's (x, y); None for anything else."""
    parts = version.removeprefix("HTTP/").split(".") if version.startswith("HTTP/") else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def request_line(words: list[str], default_version: str) -> RequestLine:
    """Read a request line's words as http.server does; BadHead for what it refuses."""
    version, keep_alive = default_version, False
    if len(words) >= 3:
        version = words[-1]
        number = _number(version)
        if number is None:
            raise BadHead(400, f"Bad request version ({version!r})")
        if number >= (2, 0):
            raise BadHead(505, f"Invalid HTTP version ({version.removeprefix('HTTP/')})")
        keep_alive = number >= (1, 1)
    if not 2 <= len(words) <= 3:
        raise BadHead(400, f"Bad request syntax ({' '.join(words)!r})")
    command, path = words[:2]
    if len(words) == 2 and command != "GET":
        raise BadHead(400, f"Bad HTTP/0.9 request type ({command!r})")
    if path.startswith("//"):  # gh-87389: "//host/path" reads as another host to a client
        path = "/" + path.lstrip("/")
    return RequestLine(command, path, version, keep_alive)


def read_fields(rfile: io.BufferedIOBase, budget: int = MAX_HEAD) -> HTTPMessage:
    """Read header fields up to the empty line (or the end of input); BadHead if malformed.

    `budget` bounds the fields' bytes as a whole: a head of many long lines costs no more
    memory than one of a few.
    """
    fields = HTTPMessage()
    for _ in range(MAX_FIELDS + 1):
        raw = rfile.readline(max(budget, 0) + 1)
        budget -= len(raw)
        if budget < 0:
            raise BadHead(431, "Request header fields too large")
        if raw in (b"\r\n", b"\n", b""):
            return fields
        name, colon, value = raw.decode("iso-8859-1").rstrip("\r\n").partition(":")
        value = value.strip(" \t")
        if not colon or not TOKEN.fullmatch(name) or "\r" in value or "\0" in value:
            raise BadHead(400, "Bad header field")
        fields[name] = value
    raise BadHead(431, "Too many headers")


def refuse_unsupported(version: str, fields: HTTPMessage) -> None:
    """Raise BadHead for what this server does not take: HTTP/0.9, chunked or unclear bodies."""
    if version < "HTTP/1.0":
        raise BadHead(505, "HTTP/0.9 is not supported")
    if "Transfer-Encoding" in fields:
        raise BadHead(501, "Transfer-Encoding is not supported on requests")
    lengths = [n.strip() for n in fields.get_all("Content-Length") or []]
    if len(lengths) > 1 or (lengths and not (lengths[0].isascii() and lengths[0].isdigit())):
        raise BadHead(400, "bad Content-Length")
