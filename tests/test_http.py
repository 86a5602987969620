"""The HTTP server in-process: routes, formats, health, and malformed requests."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import pytest
import requests

from agent.store import MetricInfo, SeriesStore, sample
from agent.web.server import WebServer
from tests.conftest import free_port


@pytest.fixture
def served() -> Iterator[tuple[str, SeriesStore, list[bool]]]:
    store = SeriesStore()
    store.describe({"x_total": MetricInfo("counter", "Things."), "g": MetricInfo("gauge", "A g.")})
    store.ingest("s", [sample("x_total", 3, kind="a"), sample("g", 0.5)], 1.0)
    health = [True]
    port = free_port()
    server = WebServer(f"127.0.0.1:{port}", store, lambda: health[0])
    server.serve_in_thread()
    yield f"http://127.0.0.1:{port}", store, health
    server.shutdown()
    server.server_close()


def test_metrics_text_format(served: tuple[str, SeriesStore, list[bool]]) -> None:
    url, _, _ = served
    resp = requests.get(url + "/metrics", timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE x_total counter" in resp.text
    assert 'x_total{kind="a"} 3.0' in resp.text
    assert "# HELP g A g." in resp.text
    assert "dsagent_store_series 2.0" in resp.text
    assert "process_resident_memory_bytes" in resp.text


def test_metrics_openmetrics_when_asked(served: tuple[str, SeriesStore, list[bool]]) -> None:
    url, _, _ = served
    resp = requests.get(
        url + "/metrics",
        timeout=5,
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
    assert "# TYPE x counter" in resp.text


def test_every_answer_carries_the_date_of_its_second(
    served: tuple[str, SeriesStore, list[bool]],
) -> None:
    url, _, _ = served
    for _ in range(3):  # formatted once a second: the text must still move with the clock
        before = time.time()
        sent = parsedate_to_datetime(requests.get(url + "/healthz", timeout=5).headers["Date"])
        assert int(before) <= sent.timestamp() <= time.time()
        time.sleep(1.1)


def test_healthz_follows_the_scheduler(served: tuple[str, SeriesStore, list[bool]]) -> None:
    url, _, health = served
    assert requests.get(url + "/healthz", timeout=5).status_code == 200
    health[0] = False
    resp = requests.get(url + "/healthz", timeout=5)
    assert resp.status_code == 503
    assert resp.json()["status"] == "unhealthy"


def test_unknown_path_and_method(served: tuple[str, SeriesStore, list[bool]]) -> None:
    url, _, _ = served
    assert requests.get(url + "/nope", timeout=5).status_code == 404
    assert requests.post(url + "/metrics", timeout=5).status_code == 405
    text = requests.get(url + "/metrics", timeout=5).text
    assert 'dsagent_http_requests_total{code="404",handler="other"} 1.0' in text
    assert 'dsagent_http_requests_total{code="405",handler="/metrics"} 1.0' in text


def test_malformed_request_line_is_answered_and_counted(
    served: tuple[str, SeriesStore, list[bool]],
) -> None:
    url, _, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"\x00\xffGARBAGE\r\n\r\n")
        reply = conn.recv(1024)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    text = requests.get(url + "/metrics", timeout=5).text
    assert 'dsagent_http_requests_total{code="400",handler="other"} 1.0' in text


@pytest.mark.parametrize(("version", "continues"), [("HTTP/1.1", True), ("HTTP/1.0", False)])
def test_expect_100_continue_is_answered_before_an_admin_body_on_http_1_1(
    served: tuple[str, SeriesStore, list[bool]], version: str, continues: bool
) -> None:
    url, _, _ = served
    port = int(url.rsplit(":", 1)[1])
    head = (f"POST /api/v1/whoami {version}\r\nHost: x\r\nContent-Length: 2\r\n"
            "Expect: 100-continue\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(head.encode())
        conn.settimeout(0.5)  # a server that does not continue waits for the body
        try:
            first = conn.recv(1024)
        except TimeoutError:
            first = b""
        conn.settimeout(5)
        conn.sendall(b"{}")
        rest = b""
        while b"admin API is off" not in first + rest:
            rest += conn.recv(1024)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n") == continues, first
    assert b" 404 Not Found\r\n" in first + rest, "the body was read, then answered"
