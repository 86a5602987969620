"""The HTTP server under hostile clients: framing, headers, bodies, auth cost, slowloris."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests

from agent.config import TokenConfig
from agent.notify.outbox import Outbox
from agent.notify.silences import SilenceStore
from agent.store import SeriesStore
from agent.web.admin import AdminApi
from agent.web.admin_routes import Routes
from agent.web.audit import AuditLog
from agent.web.auth import BasicAuth, load_tokens
from agent.web.connections import Connections
from agent.web.server import WebServer
from tests.conftest import free_port, wait_for
from tests.test_security import certs  # noqa: F401  (a fixture)
from tests.test_security import raw as security_raw


class FakeNotifier:
    """What Routes reads of the notifier: its stores and what it muted."""

    def __init__(self, state: Path) -> None:
        self.outbox, self.silences, self.muted = Outbox(state / "o.db"), SilenceStore(state), {}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, WebServer, Path]]:
    (tmp_path / "t").write_text("admin-token\n")
    tokens = load_tokens([TokenConfig(name="a", role="admin", token_file=tmp_path / "t")])
    routes = Routes(None, None, FakeNotifier(tmp_path), lambda: True)  # type: ignore[arg-type]
    audit = AuditLog(tmp_path / "audit.log", 1 << 20)
    api = AdminApi(tokens, routes.endpoints(), audit)
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))
    port = free_port()
    web = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True, admin=api,
                    basic=BasicAuth({"prom": hashed}),
                    connections=Connections(limit=16, head_timeout=1.0))  # fmt: skip
    web.serve_in_thread()
    yield f"127.0.0.1:{port}", web, tmp_path
    web.shutdown()
    web.server_close()


def raw(address: str, data: bytes) -> bytes:
    return security_raw(int(address.split(":")[1]), data)


def status(reply: bytes) -> int:
    return int(reply.split(b"\r\n", 1)[0].split()[1])


def audit(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (path / "audit.log").read_text().splitlines()]


def test_header_names_are_case_insensitive(server: tuple[str, WebServer, Path]) -> None:
    address, _, _ = server
    head = b"GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nauthorization: Bearer admin-token\r\n\r\n"
    assert status(raw(address, head)) == 200
    basic = base64.b64encode(b"prom:pw")
    scrape = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAUTHORIZATION: Basic " + basic + b"\r\n\r\n"
    assert status(raw(address, scrape)) == 200


@pytest.mark.parametrize(
    ("head", "code"),
    [
        (b"Authorization: Basic \xff\xfe\r\n", 401),
        (b"Authorization: Bearer \xff\xfe\r\n", 401),
        (b"Content-Length: 1_0\r\n", 400),
        (b"Content-Length: +5\r\n", 400),
        (b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
    ],
)
def test_framing_and_undecodable_headers(
    server: tuple[str, WebServer, Path], head: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    address, _, _ = server
    for path in (b"/metrics", b"/api/v1/whoami"):
        with caplog.at_level(logging.ERROR):
            reply = raw(address, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
        assert status(reply) == code, reply[:100]
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    assert requests.get(f"http://{address}/healthz", timeout=5).ok


@pytest.mark.parametrize(
    "body",
    [b'{"matchers": 5, "comment": "x"}', b"[" * 100_000, b'{"matchers": ["a=b"], "comment": 5}',
     b'{"matchers": ["a=b"], "comment": "x", "duration": 1e308}',
     b'{"matchers": ["a=b"], "comment": "x", "duration": "9999999h"}'],
)  # fmt: skip
def test_bad_admin_bodies_get_a_400_and_an_audit_entry(
    server: tuple[str, WebServer, Path], body: bytes
) -> None:
    address, _, state = server
    answer = requests.post(f"http://{address}/api/v1/silences", data=body, timeout=5,
                           headers={"Authorization": "Bearer admin-token"})  # fmt: skip
    assert answer.status_code == 400, answer.text
    assert audit(state)[-1]["status"] == 400


def test_a_chunked_admin_body_is_read_and_capped(server: tuple[str, WebServer, Path]) -> None:
    address, web, state = server
    head = (b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-token\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    assert status(raw(address, head + b'F\r\n{"matchers": 5}\r\n0\r\n\r\n')) == 400
    assert audit(state)[-1]["status"] == 400, "read, parsed and refused as a body"
    web.max_body = 64
    chunk = b"{" * 100
    assert status(raw(address, head + b"64\r\n" + chunk + b"\r\n0\r\n\r\n")) == 413


class CountingBcrypt:
    """Counts bcrypt checks: cost must not depend on whether the user exists."""

    def __init__(self, auth: BasicAuth) -> None:
        self.calls = 0
        self.inner = auth._checkpw
        auth._checkpw = self

    def __call__(self, password: bytes, hashed: bytes) -> bool:
        self.calls += 1
        return bool(self.inner(password, hashed))


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_unknown_users_cost_a_bcrypt_and_failures_slow_but_never_lock_out() -> None:
    auth = BasicAuth({"prom": bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4))})
    counted = CountingBcrypt(auth)
    assert not auth.check(basic("nobody", "x"), "10.0.0.9")
    assert counted.calls == 1, "an unknown name is checked against a decoy of the same cost"
    for _ in range(BasicAuth.FAILURES_PER_MINUTE):
        assert not auth.check(basic("prom", "guess"), "10.0.0.1")
    assert auth.penalty("10.0.0.1") == 0.0, "the minute's allowance: no penalty yet"
    holds = []
    for _ in range(6):
        assert not auth.check(basic("prom", "guess"), "10.0.0.1")
        holds.append(auth.penalty("10.0.0.1"))
    assert holds == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0], "doubling, to a cap"
    assert auth.check(basic("prom", "pw"), "10.0.0.1"), "the right password still passes"
    assert auth.penalty("10.0.0.2") == 0.0, "another address is not slowed"


def slow_clients(address: str, count: int) -> list[socket.socket]:
    """Open connections that send half a request head and then nothing."""
    host, port = address.split(":")
    out = []
    for _ in range(count):
        conn = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Drip: 1\r\n")
        out.append(conn)
    return out


@pytest.mark.integration  # real sockets held open for seconds
def test_slow_clients_cannot_crowd_out_a_scrape(server: tuple[str, WebServer, Path]) -> None:
    address, web, _ = server
    held = slow_clients(address, 200)  # the limit is 16
    try:
        scrape = requests.get(f"http://{address}/healthz", timeout=5)
        assert scrape.ok
        text = requests.get(f"http://{address}/metrics", headers=basic("prom", "pw"), timeout=5)
        assert 'dsagent_http_connections_closed_total{reason="limit"}' in text.text
        wait_for(lambda: web.connections.closed["head_timeout"] >= 1, 5, "the head deadline")
    finally:
        for conn in held:
            conn.close()


@pytest.mark.integration  # real sockets held open for seconds
def test_a_drip_fed_head_is_cut_at_the_deadline_not_per_read(
    server: tuple[str, WebServer, Path],
) -> None:
    address, _, _ = server
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        conn.settimeout(0.3)  # one header line every 0.3 s, never the end of the head
        began = time.monotonic()
        closed = False
        while not closed and time.monotonic() - began < 8:
            try:
                conn.sendall(b"X-Drip: 1\r\n")
                closed = conn.recv(1) == b""  # the server hung up
            except TimeoutError:
                continue  # nothing to read: still open
            except OSError:
                closed = True
    assert closed, "the whole head is bounded (head_timeout 1 s here), not each read"


class Dripper:
    """A worker that answers 200 but sends its body one byte every 0.3 s."""

    def __init__(self, size: int = 30) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                for _ in range(size):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.mark.integration  # real sockets held open for seconds
def test_a_worker_that_drips_is_cut_at_the_probe_deadline() -> None:
    from agent.workers import checks

    worker = Dripper()
    try:
        state, res = checks.liveness(worker.url, 0.5)  # each read comes within 0.3 s
        assert state == "down" and not res.ok
        assert "deadline" in res.detail, res.detail
    finally:
        worker.server.shutdown()


def _dripping(address: str, head: bytes, n: int) -> list[socket.socket]:
    host, port = address.split(":")
    out = []
    for _ in range(n):
        conn = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(head)
        out.append(conn)
    return out


@pytest.mark.integration  # real sockets held open for seconds, beside a scraper
def test_slow_bodies_never_hold_a_place_a_scraper_needs(
    server: tuple[str, WebServer, Path],
) -> None:
    address, web, _ = server
    promised = b"Content-Length: 1000000\r\n\r\n"
    # A route that takes no body answers at once and hangs up, body or not.
    answer = raw(address, b"POST /metrics HTTP/1.1\r\nHost: x\r\n" + promised)
    assert status(answer) == 405, answer[:80]
    held = _dripping(address, b"POST /metrics HTTP/1.1\r\nHost: x\r\n" + promised, 20)
    held += _dripping(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + promised, 20)
    held += _dripping(address, b"POST /api/v1/silences HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer admin-token\r\n" + promised, 40)  # fmt: skip
    took = []
    try:
        for _ in range(12):  # a scraper every quarter second, while they drip
            for conn in held[40:]:
                with contextlib.suppress(OSError):
                    conn.send(b"{")
            began = time.monotonic()
            got = requests.get(f"http://{address}/metrics", headers=basic("prom", "pw"), timeout=5)
            took.append(time.monotonic() - began)
            assert got.status_code == 200
            time.sleep(0.25)
        assert max(took) < 1.0, took
        wait_for(lambda: web.connections.closed["head_timeout"] >= 1, 5,
                 "a dripped body cut at the head's deadline")  # fmt: skip
    finally:
        for conn in held:
            conn.close()


@pytest.mark.integration  # a real listen queue, filled while the server is busy
def test_a_flood_of_connects_leaves_room_for_the_scrapers_in_the_listen_queue(
    server: tuple[str, WebServer, Path],
) -> None:
    address, web, _ = server
    host, port = address.split(":")
    wait_for(lambda: web._loop is not None, 5, "the server's loop")
    assert web._loop is not None
    web._loop.call_soon_threadsafe(time.sleep, 2.0)  # busy: the kernel queues what connects
    time.sleep(0.2)
    flood = []
    for _ in range(300):
        conn = socket.socket()
        conn.setblocking(False)
        conn.connect_ex((host, int(port)))  # the kernel completes it into the listen queue
        flood.append(conn)
    try:
        time.sleep(0.1)
        began = time.monotonic()
        socket.create_connection((host, int(port)), timeout=5).close()
        took = time.monotonic() - began
        # A full queue drops the SYN, and the client sends it again a second later.
        assert took < 0.5, f"the scraper's connect waited {took:.2f}s"
    finally:
        for conn in flood:
            conn.close()


@pytest.mark.integration  # real connections held in their penalty, beside the right password
def test_a_guessing_neighbour_cannot_lock_out_the_scraper(
    server: tuple[str, WebServer, Path],
) -> None:
    import threading

    address, web, _ = server
    url = f"http://{address}/metrics"
    for _ in range(BasicAuth.FAILURES_PER_MINUTE):  # the same address as the scraper's
        assert requests.get(url, headers=basic("prom", "guess"), timeout=5).status_code == 401

    def guess() -> None:
        with contextlib.suppress(requests.RequestException):  # evicted: reset by the server
            requests.get(url, headers=basic("prom", "x"), timeout=20)

    guesses = [threading.Thread(target=guess, daemon=True) for _ in range(30)]
    for t in guesses:
        t.start()
    time.sleep(0.5)  # they are held in their penalty now, more of them than places (16)
    began = time.monotonic()
    scrape = requests.get(url, headers=basic("prom", "pw"), timeout=10)
    assert scrape.status_code == 200, "the right password, never locked out"
    assert time.monotonic() - began < 2.0
    assert web.connections.closed["limit"] >= 1, "a held guess was evicted for the scraper"


@pytest.mark.integration  # real sockets, a TLS listener, threads counted
def test_silent_tls_handshakes_are_bounded_and_evicted(
    tmp_path: Path,
    certs: Path,  # noqa: F811
) -> None:
    import ssl
    import threading

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "server.pem", certs / "server.key")
    port = free_port()
    web = WebServer(f"127.0.0.1:{port}", SeriesStore(), lambda: True, tls=context,
                    connections=Connections(limit=16, head_timeout=2.0))  # fmt: skip
    web.serve_in_thread()
    before = threading.active_count()
    silent = []
    try:
        for _ in range(120):  # TCP connections that never send a ClientHello
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.005)
        time.sleep(0.3)
        held = threading.active_count() - before
        assert held <= 16 + 4, f"{held} threads: an evicted handshake must end, not wait 15 s"
        began = time.monotonic()
        scrape = requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(certs / "ca.pem"),
                              timeout=5)  # fmt: skip
        assert scrape.ok and time.monotonic() - began < 1.0
        assert web.connections.closed["limit"] >= 100
    finally:
        for conn in silent:
            conn.close()
        web.shutdown()
        web.server_close()
