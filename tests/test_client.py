"""The worker probes' HTTP client: whatever way an answer is framed or cut, it reads it right."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.workers.checks import Events, request
from agent.workers.client import Closed, Connection, ProtocolError, Stale
from tests.fuzzing import Pieces
from tests.test_security import certs  # noqa: F401  (a fixture)


def answering(raw: bytes, pieces: list[int]) -> tuple[Connection, threading.Thread]:
    """A connection whose peer writes `raw` in pieces of these sizes, then closes."""
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    conn = Connection("http://127.0.0.1:8000", 5)
    conn.sock = ours

    def write() -> None:
        at = 0
        with theirs, contextlib.suppress(OSError):  # the client may stop reading and close
            for size in [*pieces, len(raw)]:
                theirs.sendall(raw[at : at + size])
                at += size

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return conn, writer


def framed(body: bytes, how: str, chunks: list[int], reason: str) -> bytes:
    """An HTTP/1.1 answer carrying `body`: with a length, in chunks, or ended by the close."""
    head = f"HTTP/1.1 200 {reason}\r\nContent-Type: text/plain\r\n"
    if how == "length":
        return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    if how == "close":
        return f"{head}Connection: close\r\n\r\n".encode() + body
    out, at = [f"{head}Transfer-Encoding: chunked\r\n\r\n".encode()], 0
    for size in [*chunks, len(body)]:
        part = body[at : at + size]
        at += size
        if part:
            out.append(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    return b"".join([*out, b"0\r\n\r\n"])


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=3000),
    how=st.sampled_from(["length", "chunked", "close"]),
    chunks=st.lists(st.integers(1, 700), max_size=6),
    pieces=st.lists(st.integers(1, 400), max_size=8),
    reason=st.sampled_from(["OK", "Fine Thanks", ""]),
)
def test_every_framing_and_cut_reads_the_same_answer(
    body: bytes, how: str, chunks: list[int], pieces: list[int], reason: str
) -> None:
    conn, writer = answering(framed(body, how, chunks, reason), pieces)
    answer = conn.response()
    writer.join(5)
    assert (answer.status, answer.reason, bytes(answer.body)) == (200, reason, body)
    assert (conn.sock is not None) == (how != "close"), "kept alive exactly when it may be"
    conn.close()


@pytest.mark.parametrize("how", ["length", "chunked"])
def test_an_answer_cut_at_any_byte_keeps_its_reason_and_its_connection(how: str) -> None:
    raw = framed(b"body", how, [2], "Fine Thanks")
    for cut in range(1, len(raw)):  # the status line and every header too
        conn = Connection("http://127.0.0.1:8000", 5)
        conn.sock = Pieces([raw[:cut], raw[cut:]])  # type: ignore[assignment]
        answer = conn.response()
        assert (answer.status, answer.reason, bytes(answer.body)) == (200, "Fine Thanks", b"body")
        assert conn.sock is not None, f"cut at {cut}: the framing was seen, the answer is whole"


def test_answers_one_after_another_on_one_connection_each_read_whole() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection("http://127.0.0.1:8000", 5)
    conn.sock = ours
    for body, how in ((b"first", "length"), (b"second", "chunked"), (b"", "length")):
        theirs.sendall(framed(body, how, [2], "OK"))
        assert bytes(conn.response().body) == body and conn.sock is ours
    conn.close()
    theirs.close()


@pytest.mark.parametrize("surplus", [framed(b"unasked", "length", [], "OK"), b"\x00garbage"])
def test_bytes_after_the_answer_spoil_the_connection_not_the_answer(surplus: bytes) -> None:
    conn, _ = answering(framed(b"first", "chunked", [2], "Yes") + surplus, [])
    answer = conn.response()
    assert (answer.status, answer.reason, bytes(answer.body)) == (200, "Yes", b"first")
    assert conn.sock is None, "what came after was never asked for: not read as the next answer"


def test_a_body_past_the_limit_is_cut_and_the_connection_closed() -> None:
    conn, _ = answering(framed(b"x" * 500_000, "length", [], "OK"), [100])
    answer = conn.response(limit=1000)
    assert bytes(answer.body) == b"x" * 1000, "no more kept than the limit"
    assert conn.sock is None, "the rest was not read: the connection cannot be reused"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400).filter(lambda b: not b.startswith(b"HTTP/")))
def test_garbage_is_a_protocol_error_or_a_close_never_anything_else(raw: bytes) -> None:
    conn, _ = answering(raw, [])
    with pytest.raises((ProtocolError, Closed)):
        conn.response()
    assert conn.sock is None, "a connection that spoke nonsense is not reused"


def test_a_close_before_any_answer_is_stale_and_one_mid_answer_is_not() -> None:
    conn, _ = answering(b"", [])
    with pytest.raises(Stale):
        conn.response()
    conn, _ = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", [])
    with pytest.raises(Closed) as cut:
        conn.response()
    assert not isinstance(cut.value, Stale), "half an answer is not safe to ask again"


@given(st.lists(st.integers(1, 30), max_size=10), st.integers(0, 5))
def test_server_sent_events_count_tokens_until_done_however_split(
    cuts: list[int], tokens: int
) -> None:
    stream = b"".join(b'data: {"t": %d}\n\n' % i for i in range(tokens)) + b"data: [DONE]\n\n"
    phases: dict[str, float] = {}
    events, at, finished = Events(phases, 0.0), 0, False
    for size in [*cuts, len(stream)]:
        finished = events.feed(stream[at : at + size]) or finished
        at += size
        if finished:
            break
    assert finished and events.tokens == tokens
    assert ("first_byte" in phases) == (tokens > 0)


def test_a_worker_that_drips_is_cut_when_the_whole_exchange_is_past_its_deadline() -> None:
    ours, theirs = socket.socketpair()
    conn = Connection("http://127.0.0.1:8000", 5)
    conn.sock = ours
    stop = threading.Event()

    def drip() -> None:
        with theirs, contextlib.suppress(OSError):
            theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.wait(0.05):  # each byte well within any one read's wait
                theirs.sendall(b"x")

    threading.Thread(target=drip, daemon=True).start()
    began = time.monotonic()
    conn.deadline = began + 0.4
    try:
        with pytest.raises(TimeoutError):
            conn.response()
    finally:
        stop.set()
        conn.close()
    assert time.monotonic() - began < 0.4 + 0.3, "cut at the deadline, not after every byte"


def test_a_head_that_never_ends_is_refused_not_buffered() -> None:
    endless = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 300_000
    conn, _ = answering(endless, [1000] * 5)
    with pytest.raises(ProtocolError, match="head"):
        conn.response()
    assert conn.sock is None


def tls_worker(pem: Path, answers: list[bytes], drip: float) -> tuple[int, threading.Thread]:
    """A TLS server giving each request on one connection the next answer, the last dripped."""
    listener = socket.create_server(("127.0.0.1", 0))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem / "server.pem", pem / "server.key")

    def serve() -> None:
        raw, _ = listener.accept()
        with listener, ctx.wrap_socket(raw, server_side=True) as tls, contextlib.suppress(OSError):
            for i, answer in enumerate(answers):
                head = b""
                while b"\r\n\r\n" not in head:
                    head += tls.recv(4096)
                if drip and i == len(answers) - 1:
                    for byte in answer:
                        tls.sendall(bytes([byte]))
                        time.sleep(drip)
                else:
                    tls.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_a_tls_worker_is_read_whole_on_one_connection_and_a_dripping_one_cut_in_time(
    certs: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Non-blocking TLS: many records, decrypted bytes in hand, and the whole-exchange deadline."""
    trust = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    monkeypatch.setattr("agent.workers.client._tls", lambda: trust)
    big = bytes(range(256)) * 1200  # 300 KB: many TLS records, read in 64 KB pieces
    port, server = tls_worker(certs, [framed(big, "length", [], "OK"),
                                      framed(b"second", "chunked", [3], "OK"),
                                      framed(b"x" * 40, "length", [], "OK")], drip=0.1)  # fmt: skip
    conn = Connection(f"https://127.0.0.1:{port}", 1.0)
    for want in (big, b"second"):
        conn.deadline = time.monotonic() + 5
        if conn.sock is None:
            conn.connect()
        kept = conn.sock
        conn.request("GET", "/metrics")
        assert bytes(conn.response(limit=1 << 20).body) == want
        assert conn.sock is kept, "kept alive"
    began = time.monotonic()
    res = request(f"https://127.0.0.1:{port}/metrics", 1.0, session=_Kept(conn))
    assert (res.ok, res.reason) == (False, "timeout") and time.monotonic() - began < 1.5
    server.join(10)


class _Kept:
    """A probe session holding an open connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self.connect_seconds = conn, None
