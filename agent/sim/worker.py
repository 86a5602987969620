"""An inference worker simulator, in any engine's metric names, with faults changed live."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from agent.files import rfc3339
from agent.sim.engines import SimMetrics

MODES = ("ok", "hang", "loading", "error", "slow_first_token", "engine_hung")
STUCK = 4  # requests left waiting while the engine is hung


@dataclass
class Behaviour:
    """What the simulator does now; POST /control changes any field."""

    mode: str = "ok"
    latency: float = 0.08  # seconds per request, mean
    error_rate: float = 0.0
    gpu_util: float = 0.7
    answer_salt: float = 0.0  # changes what temperature-0 completions answer (a new quantisation)
    preempt_rate: float = 0.0  # share of requests preempted once (KV cache pressure)


def control_value(key: str, value: Any, known: dict[str, Any]) -> Any:
    """Check one /control key and value: a known key, a mode of MODES, a finite number >= 0."""
    if key not in known:
        raise ValueError(f"unknown key {key!r}: use {', '.join(known)}")
    if key == "mode":
        if value not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise ValueError(f"{key} must be a number from 0, not {value!r}")
    if key in ("error_rate", "gpu_util", "preempt_rate") and value > 1:
        raise ValueError(f"{key} is a share: 0 to 1, not {value!r}")
    return float(value)


class Simulator:
    """State shared by the request handlers."""

    def __init__(self, model: str, log: Path | None, engine: str = "vllm") -> None:
        self.model, self.log = model, log
        self.behaviour = Behaviour()
        self.metrics = SimMetrics(model, engine)
        self.lock = threading.Lock()
        self.rng = random.Random(42)

    def write_log(self, entry: dict[str, Any]) -> None:
        """Append one request log line in the ops guide's JSON format."""
        if self.log is None:
            return
        with self.lock, self.log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def serve_request(self, prompt: str, max_tokens: int) -> tuple[int, float, float, int]:
        """Do the simulated work; return (status, ttft, total, output tokens)."""
        b = self.behaviour
        if b.mode in ("hang", "engine_hung"):  # engine_hung: /health still says 200
            time.sleep(3600)
        failed = b.mode == "error" or self.rng.random() < b.error_rate
        total = max(0.001, self.rng.gauss(b.latency, b.latency * 0.15))
        ttft = total * (0.9 if b.mode == "slow_first_token" else 0.25)
        if b.mode == "slow_first_token":
            total += b.latency * 2
        self.metrics.started()
        if self.rng.random() < b.preempt_rate:
            self.metrics.preempted()
        time.sleep(total)
        out = 0 if failed else max(1, min(max_tokens, int(self.rng.gauss(120, 30))))
        self.metrics.finished(len(prompt.split()), out, ttft, total, not failed)
        status = 500 if failed else 200
        self.write_log({
            "timestamp": rfc3339(time.time()),
            "request_id": uuid.uuid4().hex, "model_version": self.model,
            "input_length": len(prompt.split()), "output_length": out,
            "latency_ms": round(total * 1000, 1), "gpu_util": b.gpu_util,
            "error_code": None if status == 200 else "INTERNAL_ERROR",
        })  # fmt: skip
        return status, ttft, total, out


class Handler(BaseHTTPRequestHandler):
    """The vLLM-style endpoints, plus /control."""

    server: SimServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as uvicorn does: a kept-alive body is not held for an ACK

    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        """Health, models, metrics, control state."""
        sim = self.server.sim
        mode = sim.behaviour.mode
        if self.path == "/health":
            if mode == "hang":
                time.sleep(3600)
            self._json(503 if mode == "loading" else 200, {"status": mode})
        elif self.path == "/v1/models":
            models = {"object": "list", "data": [{"id": sim.model, "object": "model"}]}
            self._json(503 if mode == "loading" else 200, models)
        elif self.path == "/metrics":
            data = generate_latest(sim.metrics.registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif self.path == "/control":
            self._json(200, asdict(sim.behaviour))
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        """Completions (streaming or not) and /control."""
        length = int(self.headers.get("Content-Length", 0))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": "bad JSON"})
            return
        if self.path == "/control":
            self._control(body)
        elif self.path == "/v1/completions":
            self._complete(body)
        else:
            self._json(404, {"error": "not found"})

    def _control(self, body: dict[str, Any]) -> None:
        """Apply every key, or none: an unknown key or a bad value is a 400 naming it."""
        sim = self.server.sim
        known = asdict(sim.behaviour)
        try:
            changes = {key: control_value(key, value, known) for key, value in body.items()}
        except ValueError as exc:
            self._json(400, {"error": str(exc), "keys": known})
            return
        for key, value in changes.items():
            setattr(sim.behaviour, key, value)
        sim.metrics.set_waiting(STUCK if sim.behaviour.mode == "engine_hung" else 0)
        self._json(200, asdict(sim.behaviour))

    def _complete(self, body: dict[str, Any]) -> None:
        sim = self.server.sim
        if sim.behaviour.mode == "loading":
            self._json(503, {"error": "model is loading"})
            return
        prompt, max_tokens = str(body.get("prompt", "")), int(body.get("max_tokens", 16))
        status, _, _, tokens = sim.serve_request(prompt, max_tokens)
        if status != 200:
            self._json(status, {"error": "simulated failure"})
        elif body.get("stream"):
            self._stream(min(tokens, max_tokens))
        else:
            text = " ok" * tokens
            if body.get("temperature") == 0:  # greedy: the same prompt gives the same answer
                seed = f"{prompt}|{body.get('seed')}|{sim.behaviour.answer_salt}"
                text = " " + hashlib.sha256(seed.encode()).hexdigest()[:12]
            self._json(200, {"object": "text_completion", "model": sim.model,
                             "choices": [{"text": text, "index": 0}],
                             "usage": {"completion_tokens": tokens}})  # fmt: skip

    def _stream(self, tokens: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(max(1, tokens)):
            chunk = {"choices": [{"text": " ok", "index": 0}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Keep the simulator quiet."""


class SimServer(ThreadingHTTPServer):
    """The simulator's HTTP server."""

    daemon_threads = True

    def __init__(self, port: int, model: str, log: Path | None, engine: str = "vllm") -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.sim = Simulator(model, log, engine)

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet about a client that hung up (the tour's load stops mid-request)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve(port: int, model: str, log: Path | None, engine: str = "vllm") -> None:
    """Run the simulator until interrupted."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGINT too: a script's background job starts with it ignored

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server: SimServer | None = None
    try:  # a signal may come at any point from here on
        server = SimServer(port, model, log, engine)
        print(f"sim-worker: {engine} {model} on http://127.0.0.1:{server.server_address[1]}",
              flush=True)  # fmt: skip
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.server_close()
