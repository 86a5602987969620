"""Request heads: read as http.server reads good ones, and refused as RFC 9112 asks."""

from __future__ import annotations

import io
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.web.head import BadHead, read_fields, refuse_unsupported, request_line

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(alphabet=TCHAR, min_size=1, max_size=20)
visible = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
values = st.text(alphabet=visible | st.just("\t"), max_size=40)
paths = st.text(alphabet=TCHAR + "/?=:@", min_size=1, max_size=30)


def stdlib(line: bytes, fields: bytes) -> BaseHTTPRequestHandler:
    """http.server's own reading of the same head (only good heads reach it)."""
    h = BaseHTTPRequestHandler.__new__(BaseHTTPRequestHandler)
    h.protocol_version, h.raw_requestline = "HTTP/1.1", line
    h.rfile = io.BufferedReader(io.BytesIO(fields))  # type: ignore[assignment]
    assert h.parse_request()
    return h


def ours(line: bytes, fields: bytes) -> tuple[str, str, str, bool, list[tuple[str, str]]]:
    """Our reading of a head, in the same terms."""
    got = request_line(line.decode("iso-8859-1").split(), "HTTP/0.9")
    read = read_fields(io.BufferedReader(io.BytesIO(fields)))
    connection = read.get("Connection", "").lower()
    close = connection == "close" or (not got.keep_alive and connection != "keep-alive")
    return got.command, got.path, got.version, close, list(read.items())


@given(st.sampled_from(["GET", "HEAD", "POST", "DELETE"]), paths,
       st.sampled_from(["HTTP/1.0", "HTTP/1.1"]),
       st.lists(st.tuples(names, values), max_size=8),
       st.sampled_from(["", "close", "keep-alive", "Keep-Alive"]))  # fmt: skip
@example("GET", "/", "HTTP/1.1", [("X", "\t0\t ")], "")  # white space around a value
def test_good_heads_read_as_http_server_reads_them(
    method: str, path: str, version: str, pairs: list[tuple[str, str]], connection: str
) -> None:
    if connection:
        pairs = [*pairs, ("Connection", connection)]
    line = f"{method} {path} {version}\r\n".encode()
    fields = b"".join(f"{k}: {v}\r\n".encode("iso-8859-1") for k, v in pairs) + b"\r\n"
    h = stdlib(line, fields)
    # The email package keeps a value's trailing white space; RFC 9112 5 says it is not part of it.
    read = [(k, v.rstrip(" \t")) for k, v in h.headers.items()]
    assert ours(line, fields) == (h.command, h.path, h.request_version, h.close_connection, read)


@pytest.mark.parametrize(("line", "code"), [
    ("GET / HTTP/2.0", 505), ("GET / HTTP/1.1.1", 400), ("GET / HTTP/1.²", 400),
    ("GET / FTP/1.0", 400), ("GET / HTTP/1.1 extra", 400), ("POST /", 400), ("GET", 400),
])  # fmt: skip
def test_request_lines_http_server_refuses_are_refused(line: str, code: int) -> None:
    with pytest.raises(BadHead) as bad:
        request_line(line.split(), "HTTP/0.9")
    assert bad.value.code == code


@pytest.mark.parametrize(("fields", "code"), [
    (b"Host : x\r\n\r\n", 400),  # white space before the colon (RFC 9112 5.1)
    (b"Host: x\r\n folded\r\n\r\n", 400),  # obs-fold (RFC 9112 5.2)
    (b"no colon here\r\n\r\n", 400),
    (b"Bad\x01Name: x\r\n\r\n", 400),
    (b"X: a\rb\r\n\r\n", 400),  # a bare CR inside a value (RFC 9110 5.5)
    (b"X: a\x00b\r\n\r\n", 400),
    (b"X: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    (b"".join(b"X%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
])  # fmt: skip
def test_malformed_fields_are_refused(fields: bytes, code: int) -> None:
    with pytest.raises(BadHead) as bad:
        read_fields(io.BufferedReader(io.BytesIO(fields)))
    assert bad.value.code == code


def test_a_hundred_fields_and_a_head_cut_short_are_read() -> None:
    many = b"".join(b"X%d: y\r\n" % i for i in range(100)) + b"\r\n"
    assert len(read_fields(io.BufferedReader(io.BytesIO(many)))) == 100
    cut = read_fields(io.BufferedReader(io.BytesIO(b"Host: a\r\n")))  # the end of input
    assert cut["Host"] == "a"


@pytest.mark.parametrize(("version", "fields", "code"), [
    ("HTTP/0.9", b"\r\n", 505),
    ("HTTP/1.1", b"Transfer-Encoding: chunked\r\n\r\n", 501),
    ("HTTP/1.1", b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    ("HTTP/1.1", b"Content-Length: -1\r\n\r\n", 400),
    ("HTTP/1.1", "Content-Length: ²\r\n\r\n".encode("latin-1"), 400),  # a digit to isdigit()
])  # fmt: skip
def test_what_this_server_does_not_take_is_refused(version: str, fields: bytes, code: int) -> None:
    read = read_fields(io.BufferedReader(io.BytesIO(fields)))
    with pytest.raises(BadHead) as bad:
        refuse_unsupported(version, read)
    assert bad.value.code == code


def test_the_head_is_capped_as_a_whole_not_per_line() -> None:
    wide = b"".join(b"X%d: %s\r\n" % (i, b"v" * 190) for i in range(100)) + b"\r\n"  # ~20 KB
    with pytest.raises(BadHead) as bad:  # 100 fields of 200 bytes: each line short, the head not
        read_fields(io.BufferedReader(io.BytesIO(wide)))
    assert bad.value.code == 431
    fits = b"".join(b"X%d: %s\r\n" % (i, b"v" * 140) for i in range(100)) + b"\r\n"  # ~15 KB
    assert len(read_fields(io.BufferedReader(io.BytesIO(fits)))) == 100
    with pytest.raises(BadHead):  # a smaller budget, as http.max_head_bytes gives it
        read_fields(io.BufferedReader(io.BytesIO(fits)), budget=8192)
