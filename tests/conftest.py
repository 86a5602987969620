"""Shared fixtures: CI-aware skipping, free ports, and a running agent in a subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a real server or privilege is missing; under CI=true that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def need_binary(name: str) -> str:
    """Return the path of a program the test needs."""
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (make test installs it)")
    assert path is not None
    return path


def promtool(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run Prometheus' promtool (Debian's) and return what it said; it must be installed."""
    return subprocess.run(
        [need_binary("promtool"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


DEMO_RULE = """groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoUp
        expr: demo_value
        op: ">"
        thresholds: {warning: 0}
"""


def demo(tmp: Path, names: dict[str, int]) -> tuple[Path, Path]:
    """A rule file and a textfile dir whose demo_value{name} series fire DemoUp per name."""
    rules, prom = tmp / "demo.yml", tmp / "prom"
    rules.write_text(DEMO_RULE)
    prom.mkdir(exist_ok=True)
    (prom / "demo.prom").write_text("".join(f'demo_value{{name="{n}"}} {v}\n'
                                            for n, v in names.items()))  # fmt: skip
    return rules, prom


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll until check() is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class AgentProcess:
    """A `dsagent run` subprocess with its own state dir and port."""

    def __init__(self, tmp: Path, config: str, env: dict[str, str] | None = None,
                 nofile: int | None = None, args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "agent.toml"
        self.state = tmp / "state"
        self.config.write_text(self.render(config))
        self.stderr = tmp / "agent.stderr"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        # prlimit (util-linux) sets the fd limit as a unit's LimitNOFILE would
        cap = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile is not None else []
        self.proc = subprocess.Popen(
            [*cap, sys.executable, "-m", "agent", "run", "--config", str(self.config), *args],
            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=self.stderr.open("w"),
        )  # fmt: skip

    def render(self, config: str) -> str:
        """Put this process's port and state dir into a config text."""
        base = f'[agent]\nstate_dir = "{self.state}"\n' if "[agent]" not in config else ""
        text = base + config.replace("{state}", str(self.state)).replace("{port}", str(self.port))
        if "[http]" not in text:
            text += f'\n[http]\nlisten = "127.0.0.1:{self.port}"\n'
        return text

    def log(self) -> str:
        """Return what the agent wrote to stderr so far."""
        return self.stderr.read_text()

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until /healthz answers 200."""
        wait_for(
            lambda: requests.get(self.url + "/healthz", timeout=1).status_code == 200,
            timeout,
            f"agent health; log:\n{self.log()}",
        )

    def metrics(self) -> str:
        """Return the /metrics text."""
        return requests.get(self.url + "/metrics", timeout=5).text

    def stop(self) -> int:
        """SIGTERM the agent and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents on demand; every one is stopped after the test."""
    started: list[AgentProcess] = []

    def start(config: str = "", env: dict[str, str] | None = None,
              nofile: int | None = None, args: tuple[str, ...] = ()) -> AgentProcess:  # fmt: skip
        work = tmp_path / f"agent{len(started)}"
        work.mkdir()
        agent = AgentProcess(work, config, env, nofile, args)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


class Sink:
    """A local HTTP receiver that records every POST; its answer and delay are settable."""

    def __init__(self, port: int = 0) -> None:
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        sink = self
        self.requests: list[dict[str, object]] = []
        self.status = 200
        self.reply = b"ok"
        self.delay: dict[str, float] = {}  # path -> seconds to hang
        self.redirect: dict[str, str] = {}  # path -> where a 307 points
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                time.sleep(sink.delay.get(path, 0.0))
                with sink.lock:
                    sink.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers),
                            "raw": body,
                            "json": _json.loads(body or b"null"),
                            "at": time.time(),
                        }
                    )
                if path in sink.redirect:
                    self.send_response(307)
                    self.send_header("Location", sink.redirect[path])
                else:
                    self.send_response(sink.status)
                self.send_header("Content-Length", str(len(sink.reply)))
                self.end_headers()
                self.wfile.write(sink.reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[dict[str, object]]:
        """Return the requests to one path."""
        with self.lock:
            return [r for r in self.requests if str(r["path"]).split("?")[0] == path]

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A recording HTTP receiver on a free port."""
    s = Sink()
    yield s
    s.close()


def es_node(version: str | None = None) -> Iterator[object]:
    """Start one real Elasticsearch node (fetched from Maven Central once); stop it after."""
    need(os.geteuid() == 0, "running Elasticsearch as its own user needs root")
    need(shutil.which("java") is not None, "java is not installed")
    need(shutil.which("mvn") is not None or (ROOT / ".cache").exists(), "maven is not installed")
    from tests.es import VERSION, Node

    node = Node(free_port(), version or VERSION)
    try:
        node.start()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        node.cleanup()
        need(False, f"elasticsearch {node.version} did not start: {exc}")
    yield node
    node.cleanup()


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[object]:
    """One Elasticsearch 8 node for the session."""
    yield from es_node()


@pytest.fixture(scope="module")
def elasticsearch9() -> Iterator[object]:
    """An Elasticsearch 9 node (on the Temurin 25 JDK) for one module: it is not kept idle."""
    from tests.es import VERSION_9

    yield from es_node(VERSION_9)


# Tests that start the agent or a real server are integration tests, whatever their module;
# `pytest -m "not integration"` runs the rest in well under a minute.
SERVER_FIXTURES = {"agent_factory", "elasticsearch", "elasticsearch9", "textfile_agent"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture as an integration test."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
