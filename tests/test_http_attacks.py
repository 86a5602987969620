"""Each attack on the HTTP surface, beside a real Prometheus scraping the agent every second.

One agent serves HTTPS with basic auth (web.yml), under a file-descriptor limit of 1,024 as a
unit's LimitNOFILE would set it; Debian's Prometheus scrapes it every second with a 1 s timeout,
and an alert fires to a webhook throughout. Each test runs one attack for a few seconds, then
asks Prometheus about that window: every scrape answered (up never 0, so none took over 1 s),
no sampler failed, descriptors well under the limit, RSS under 100 MB, and the webhook got
nothing new (no false resolve and re-fire).
"""

from __future__ import annotations

import base64
import contextlib
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import AgentProcess, Sink, free_port, need_binary, wait_for
from tests.test_security import certs, web_yml  # noqa: F401  (certs: a fixture)

pytestmark = pytest.mark.integration

NOFILE = 1024
RULES = """groups:
  - name: demo
    rules:
      - {alert: DemoHigh, expr: demo_value, op: ">=", thresholds: {critical: 1}, for: 0s}
"""
Attack = Callable[[threading.Event], None]


class Node:
    """The agent over TLS, its webhook and the Prometheus that scrapes it."""

    def __init__(self, work: Path, certs: Path) -> None:  # noqa: F811
        self.sink, self.certs = Sink(), certs
        (work / "prom").mkdir()
        (work / "prom" / "demo.prom").write_text("demo_value 5\n")
        (work / "rules.yml").write_text(RULES)
        config = (
            f'[http]\nlisten = "127.0.0.1:{{port}}"\nweb_config = "{web_yml(work, certs)}"\n'
            f'[rules]\ndefaults = false\npaths = ["{work / "rules.yml"}"]\n'
            f'[textfile]\ndirectory = "{work / "prom"}"\n'
            f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{self.sink.url}/hook"\n'
        )  # fmt: skip
        self.agent = AgentProcess(work, config, nofile=NOFILE)
        self.port = self.agent.port
        self.context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        self.prometheus = self._prometheus(work)

    def _prometheus(self, work: Path) -> subprocess.Popen[bytes]:
        self.prom_url = f"http://127.0.0.1:{free_port()}"
        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n  - job_name: dsagent\n    scheme: https\n"
            f"    tls_config: {{ca_file: '{self.certs / 'ca.pem'}'}}\n"
            "    basic_auth: {username: prometheus, password: scrape-pw}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{self.port}']}}]\n"
        )
        log = (work / "prometheus.log").open("w")
        return subprocess.Popen(
            [need_binary("prometheus"), f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address={self.prom_url.removeprefix('http://')}"],
            stdout=log, stderr=log,
        )  # fmt: skip

    def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        """Return an instant query's series and values at a time."""
        answer = requests.get(self.prom_url + "/api/v1/query", params={"query": expr, "time": at},
                              timeout=5).json()  # fmt: skip
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    def notified(self) -> int:
        """Return how many notifications the webhook got."""
        return len(self.sink.on("/hook"))

    def connect(self) -> socket.socket:
        """Open a TCP connection to the agent (no TLS yet)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def tls(self) -> ssl.SSLSocket:
        """Open a TLS connection to the agent."""
        return self.context.wrap_socket(self.connect(), server_hostname="127.0.0.1")

    def close(self) -> None:
        """Stop Prometheus, the agent and the webhook."""
        self.prometheus.terminate()
        self.prometheus.wait(timeout=20)
        self.agent.stop()
        self.sink.close()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Node]:  # noqa: F811
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the attackers' sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    node = Node(tmp_path_factory.mktemp("attacked"), certs)
    try:
        wait_for(lambda: node.notified() >= 1, 30, "the alert's first notification")
        wait_for(lambda: node.query('sum_over_time(up{job="dsagent"}[5s]) >= 5', time.time()) != [],
                 40, "five good scrapes")  # fmt: skip
        yield node
    finally:
        node.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def under_attack(node: Node, attack: Attack, seconds: float = 5.0) -> None:
    """Run an attack for some seconds, then assert what Prometheus saw of that window."""
    notified = node.notified()
    stop = threading.Event()
    attacker = threading.Thread(target=attack, args=(stop,), daemon=True)
    began = time.time()
    attacker.start()
    time.sleep(seconds)
    stop.set()
    attacker.join(10)
    ended = time.time()
    time.sleep(1.2)  # the last scrapes of the window are in
    window = f"[{int(ended - began)}s]"
    scrapes = node.query(f'count_over_time(up{{job="dsagent"}}{window})', ended)
    assert scrapes and scrapes[0][1] >= seconds - 1, f"a scrape every second: {scrapes}"
    assert node.query(f'min_over_time(up{{job="dsagent"}}{window})', ended)[0][1] == 1, (
        "every scrape answered within its 1 s timeout"
    )
    slowest = node.query(f'max_over_time(scrape_duration_seconds{{job="dsagent"}}{window})', ended)
    assert slowest[0][1] <= 1.0, slowest
    failing = node.query(f"min_over_time(dsagent_sampler_success{window}) < 1", ended)
    assert failing == [], f"no sampler failed: {failing}\n{node.agent.log()[-3000:]}"
    fds = node.query(f"max_over_time(process_open_fds{window})", ended)[0][1]
    assert fds < NOFILE - 128, f"{fds} descriptors open"
    rss = node.query(f"max_over_time(process_resident_memory_bytes{window})", ended)[0][1]
    assert rss < 100e6, f"RSS {rss / 1e6:.0f} MB"
    assert node.notified() == notified, "nothing notified that did not happen"
    assert "Too many open files" not in node.agent.log()


def crowd(stop: threading.Event, size: int, open_one: Callable[[], socket.socket],
          drip: Callable[[socket.socket], None], *, every: float = 0.5,
          refill: int = 10_000) -> None:  # fmt: skip
    """Hold `size` connections (`refill` new ones a turn at most); drip into each every turn."""
    held: list[socket.socket] = []
    try:
        while not stop.is_set():
            for _ in range(min(size - len(held), refill)):
                with contextlib.suppress(OSError):
                    held.append(open_one())
            for conn in list(held):
                try:
                    drip(conn)
                except OSError:  # hung up by the server: the attacker comes back
                    held.remove(conn)
                    conn.close()
            stop.wait(every)
    finally:
        for conn in held:
            conn.close()


def test_slow_bodies_beside_a_scraper(node: Node) -> None:
    def open_one() -> socket.socket:
        conn = node.tls()
        path = [b"POST /metrics", b"GET /metrics", b"POST /api/v1/silences"][len(opened) % 3]
        opened.append(1)
        conn.sendall(path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        return conn

    opened: list[int] = []
    under_attack(node, lambda stop: crowd(stop, 96, open_one, lambda c: c.sendall(b"{")))
    assert len(opened) > 96, "the server hung up the dripping bodies, and they came back"


def test_silent_tls_handshakes_at_a_rate_beside_a_scraper(node: Node) -> None:
    def attack(stop: threading.Event) -> None:
        silent = []
        try:
            while not stop.wait(0.004):  # ~250 new connections a second that never say hello
                with contextlib.suppress(OSError):
                    silent.append(node.connect())
        finally:
            for conn in silent:
                conn.close()

    under_attack(node, attack)


def test_dripping_tls_handshakes_beside_a_scraper(node: Node) -> None:
    def open_one() -> socket.socket:
        conn = node.connect()
        conn.sendall(b"\x16\x03\x01\x02\x00")  # a handshake record of 512 bytes, to come
        return conn

    under_attack(
        node, lambda stop: crowd(stop, 1100, open_one, lambda c: c.sendall(b"\x01"), every=1.0)
    )


def test_huge_heads_beside_a_scraper(node: Node) -> None:
    def open_one() -> socket.socket:
        conn = node.tls()
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        return conn

    line = b"X-Pad: " + b"a" * 65000 + b"\r\n"  # a line each may be long; a head may not
    under_attack(
        node,
        lambda stop: crowd(stop, 64, open_one, lambda c: c.sendall(line), every=0.25, refill=16),
    )


def test_a_guessing_neighbour_beside_a_scraper(node: Node) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(b"prometheus:guess").decode()}
    url = f"https://127.0.0.1:{node.port}/metrics"
    ca = str(node.certs / "ca.pem")

    def guess(stop: threading.Event) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                with contextlib.suppress(requests.RequestException):  # evicted while held
                    session.get(url, headers=wrong, verify=ca, timeout=10)

    def attack(stop: threading.Event) -> None:
        guessers = [threading.Thread(target=guess, args=(stop,)) for _ in range(16)]
        for t in guessers:
            t.start()
        stop.wait(1.0)
        node.agent.proc.send_signal(
            signal.SIGHUP
        )  # a reload: the scraper's password is checked anew
        for t in guessers:
            t.join()

    under_attack(node, attack)
    right = {"Authorization": "Basic " + base64.b64encode(b"prometheus:scrape-pw").decode()}
    assert requests.get(url, headers=right, verify=ca, timeout=5).status_code == 200
