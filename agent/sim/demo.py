"""`dsagent demo`: simulator, agent and webhook sink; degrade the worker, watch the alerts."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.sim.worker import SimServer

RULES = """groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoLatencyHigh
        expr: inference_request_latency_seconds{quantile="0.95"}
        thresholds: {warning: 0.25, critical: 0.4}
        for: HOLD_LATENCYs
        annotations:
          summary: "p95 latency {{ $value | humanizeDuration }} on {{ $labels.worker }}"
      - alert: DemoWorkerNotReady
        expr: worker_ready
        op: "=="
        thresholds: {critical: 0}
        for: HOLD_READYs
        annotations: {summary: "{{ $labels.worker }} is not ready"}
"""

# (seconds from start, what to say, simulator settings)
SCRIPT: list[tuple[float, str, dict[str, object]]] = [
    (0, "load flowing at ~15 requests/s; latency ~80 ms", {"latency": 0.08, "mode": "ok"}),
    (12, "degrading the worker: latency to ~600 ms", {"latency": 0.6}),
    (35, "fixing the worker: latency back to ~80 ms", {"latency": 0.08}),
    (55, "restarting the model: the worker answers 503 'loading'", {"mode": "loading"}),
    (67, "model loaded again", {"mode": "ok"}),
]
DURATION = 85


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(start: float, text: str) -> None:
    print(f"[{time.time() - start:5.1f}s] {text}", flush=True)


def _sink(start: float) -> ThreadingHTTPServer:
    """Start a webhook receiver that prints each notification."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            for a in body.get("alerts", []):
                sev = a["labels"].get("severity", "")
                when = " (as it last fired)" if a["status"] == "resolved" else ""
                _say(start, f"  webhook <- {a['status'].upper():8} {a['labels']['alertname']}"
                            f" ({sev}): {a['annotations'].get('summary', '')}{when}")  # fmt: skip
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], OSError):  # a sender that hung up is no news
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    server = Quiet(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _post(url: str, body: dict[str, object], timeout: float = 5.0) -> None:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with contextlib.suppress(OSError):  # failed requests are part of the show
        urllib.request.urlopen(req, timeout=timeout).read()


def _load(url: str, stop: threading.Event) -> None:
    """About 15 completions a second from 4 threads."""

    def worker() -> None:
        while not stop.is_set():
            _post(url + "/v1/completions", {"model": "deepseek-v3", "prompt": "hello " * 20,
                                            "max_tokens": 64})  # fmt: skip
            stop.wait(0.2)

    for _ in range(4):
        threading.Thread(target=worker, daemon=True).start()


def _readyz(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return f"{resp.status} ready"
    except urllib.error.HTTPError as exc:
        reasons = json.loads(exc.read()).get("reasons", [])
        return f"{exc.code} {'; '.join(reasons)}"
    except OSError as exc:
        reason = getattr(exc, "reason", exc)  # urllib wraps the socket error
        return f"no answer ({getattr(reason, 'strerror', None) or reason})"


def _wait_up(url: str, agent: subprocess.Popen[bytes]) -> None:
    """Wait (up to 20 s) for the agent to answer /healthz, so the tour starts with it up."""
    deadline = time.time() + 20
    while time.time() < deadline and agent.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/healthz", timeout=1):
            return
        time.sleep(0.2)


def _config(work: Path, sim: str, sink: str, port: int, pace: float) -> Path:
    rules = RULES.replace("HOLD_LATENCY", f"{3 * pace:g}")
    (work / "demo.yml").write_text(rules.replace("HOLD_READY", f"{2 * pace:g}"))
    config = work / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{work / "state"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[rules]\ndefaults = false\npaths = ["{work / "demo.yml"}"]\n'
        f'[[workers]]\nname = "sim-0"\nurl = "{sim}"\nmodel = "deepseek-v3"\n'
        f'window = "{8 * pace:g}s"\ngeneration_interval = "{5 * pace:g}s"\n'
        f'[[receivers]]\nname = "sink"\ntype = "webhook"\nurl = "{sink}"\n'
        '[[routes]]\nreceiver = "sink"\ngroup_interval = "1s"\n'
    )
    return config


def run_demo(keep: bool = False, pace: float = 1.0) -> int:
    """Run the tour, every step and window scaled by `pace`; return 0."""
    work = Path(tempfile.mkdtemp(prefix="dsagent-demo-"))
    start = time.time()
    sim = SimServer(0, "deepseek-v3", work / "requests.log")
    threading.Thread(target=sim.serve_forever, daemon=True).start()
    sim_url = f"http://127.0.0.1:{sim.server_address[1]}"
    sink = _sink(start)
    port = _free_port()
    config = _config(work, sim_url, f"http://127.0.0.1:{sink.server_address[1]}/", port, pace)
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", str(config)],
                             stderr=(work / "agent.log").open("w"))  # fmt: skip
    stop = threading.Event()
    print(
        f"dsagent demo: worker simulator {sim_url}, agent http://127.0.0.1:{port}, files in {work}"
    )
    try:
        _wait_up(f"http://127.0.0.1:{port}", agent)
        _load(sim_url, stop)
        _run_script(start, sim_url, f"http://127.0.0.1:{port}", pace)
    finally:
        stop.set()
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)
        sim.shutdown()
        sink.shutdown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    print("demo done: alerts fired and resolved; see the README for running it for real")
    return 0


def _run_script(start: float, sim_url: str, agent_url: str, pace: float) -> None:
    steps = list(SCRIPT)
    last_ready = ""
    while (now := time.time() - start) < DURATION * pace:
        while steps and steps[0][0] * pace <= now:
            _, text, settings = steps.pop(0)
            _say(start, text)
            _post(sim_url + "/control", settings)
        ready = _readyz(agent_url)
        if ready != last_ready:
            _say(start, f"  /readyz -> {ready}")
            last_ready = ready
        time.sleep(0.5)
