"""Workers against the real simulator: probes, faults, /readyz, `dsagent probe`, request logs."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from agent.config import WorkerConfig
from agent.sim.worker import SimServer
from agent.windows import quantile
from agent.workers import checks as probes
from agent.workers.sampler import WorkerSampler
from tests.conftest import AgentProcess, free_port, wait_for
from tests.test_cli import dsagent

pytestmark = pytest.mark.integration  # a simulated worker on real sockets and threads

LOG_FIELDS = {
    "timestamp",
    "request_id",
    "model_version",
    "input_length",
    "output_length",
    "latency_ms",
    "gpu_util",
    "error_code",
}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[str, SimServer]]:
    server = SimServer(0, "deepseek-v3", tmp_path / "requests.log")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.sim.behaviour.mode = "ok"
    server.shutdown()


def control(url: str, **settings: object) -> None:
    assert requests.post(url + "/control", json=settings, timeout=5).ok


def values(sampler: WorkerSampler, now: float | None = None) -> dict[tuple[str, ...], float]:
    out = {}
    for s in sampler.sample(time.time() if now is None else now):
        labels = dict(s.labels)
        labels.pop("worker")
        out[(s.name, *labels.values())] = s.value
    return out


def test_probes_and_engine_metrics_of_a_healthy_worker(sim: tuple[str, SimServer]) -> None:
    url, _ = sim
    sampler = WorkerSampler(
        WorkerConfig(name="w", url=url, model="deepseek-v3", window=30, generation_interval=1)
    )
    try:
        got = values(sampler)
        for _ in range(6):
            requests.post(
                url + "/v1/completions", json={"prompt": "a b c", "max_tokens": 8}, timeout=5
            )
        wait_for(
            lambda: sampler.generation is not None and sampler.generation.latest is not None,
            10,
            "the generation probe",
        )
        time.sleep(1.1)
        got = values(sampler)
    finally:
        sampler.close()
    assert (
        got[("worker_up",)] == 1 and got[("worker_ready",)] == 1 and got[("worker_loading",)] == 0
    )
    assert got[("worker_probe_success", "liveness")] == 1
    assert got[("worker_probe_success", "readiness")] == 1
    assert got[("worker_probe_success", "generation")] == 1
    # labels sort as (phase, probe)
    assert {
        k[1] for k in got if k[0] == "worker_probe_duration_seconds" and k[2] == "generation"
    } == {
        "connect",
        "first_byte",
        "total",
    }
    assert got[("inference_requests_per_second",)] > 0
    assert 0.05 < got[("inference_request_latency_seconds", "0.5")] < 0.3
    assert got[("inference_kv_cache_usage_ratio",)] == 0.2


@pytest.mark.parametrize(("mode", "up", "ready"), [("loading", 1, 0), ("hang", 0, 0)])
def test_faults(sim: tuple[str, SimServer], mode: str, up: int, ready: int) -> None:
    url, _ = sim
    control(url, mode=mode)
    sampler = WorkerSampler(
        WorkerConfig(name="w", url=url, model="deepseek-v3", generation_interval=0, timeout=0.3)
    )
    began = time.monotonic()
    got = values(sampler)
    assert time.monotonic() - began < 2, "a hanging worker is bounded by the timeout"
    assert (got[("worker_up",)], got[("worker_ready",)]) == (up, ready)
    assert got[("worker_loading",)] == (1 if mode == "loading" else 0)
    assert sampler.reason == ("loading" if mode == "loading" else "down")


def test_readiness_needs_the_configured_model(sim: tuple[str, SimServer]) -> None:
    url, _ = sim
    assert probes.readiness(url, "deepseek-v3", 2).ok
    res = probes.readiness(url, "llama-3-70b", 2)
    assert not res.ok and "not served" in res.detail


def test_probe_command_verdicts(sim: tuple[str, SimServer]) -> None:
    url, _ = sim
    ok = dsagent("probe", url, "--model", "deepseek-v3")
    assert ok.returncode == 0 and ok.stdout.startswith(f"READY {url}: health ok")
    assert len(ok.stdout.strip().splitlines()) == 1
    control(url, mode="loading")
    loading = dsagent("probe", url, "--model", "deepseek-v3")
    assert loading.returncode == 1 and "health loading" in loading.stdout
    control(url, mode="error")
    failing = dsagent("probe", url, "--model", "deepseek-v3")
    assert failing.returncode == 1 and "generation failed" in failing.stdout
    dead = dsagent("probe", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert dead.returncode == 1 and "health down" in dead.stdout
    bare = dsagent("probe", f"127.0.0.1:{free_port()}")  # 0.1 probed port 80 instead
    assert bare.returncode == 2 and "http://HOST:PORT" in bare.stderr


def test_simulator_writes_the_ops_guide_request_log(
    sim: tuple[str, SimServer], tmp_path: Path
) -> None:
    url, _ = sim
    control(url, error_rate=0.5)
    for _ in range(20):
        requests.post(url + "/v1/completions", json={"prompt": "x y", "max_tokens": 4}, timeout=5)
    lines = [json.loads(x) for x in (tmp_path / "requests.log").read_text().splitlines()]
    assert len(lines) == 20 and all(set(line) == LOG_FIELDS for line in lines)
    codes = {line["error_code"] for line in lines}
    assert codes == {None, "INTERNAL_ERROR"}


def test_readyz_follows_the_worker(
    agent_factory: Callable[..., AgentProcess], sim: tuple[str, SimServer]
) -> None:
    url, _ = sim
    agent = agent_factory(
        f'[[workers]]\nname = "vllm-0"\nurl = "{url}"\nmodel = "deepseek-v3"\n'
        'generation_interval = "0s"\n'
    )
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 200, 20, "ready")
    control(url, mode="loading")
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 503, 20, "503")
    body = requests.get(agent.url + "/readyz", timeout=2).json()
    assert body == {"ready": False, "reasons": ["worker vllm-0: loading"]}
    assert 'worker_loading{worker="vllm-0"} 1.0' in agent.metrics()


@pytest.mark.integration
def test_the_demo_shows_alerts_firing_and_resolving() -> None:
    out = dsagent("demo", "--pace", "0.3")  # the tour at three times its speed: the same steps
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for line in (
        "webhook <- FIRING   DemoLatencyHigh",
        "webhook <- RESOLVED DemoLatencyHigh",
        "webhook <- FIRING   DemoWorkerNotReady",
        "webhook <- RESOLVED DemoWorkerNotReady",
        "/readyz -> 503 worker sim-0: loading",
        "demo done",
    ):
        assert line in text, text
    assert "Traceback" not in out.stderr + text and "urlopen error" not in text


def test_generation_probe_fills_ttft_for_engines_without_it(sim: tuple[str, SimServer]) -> None:
    url, _ = sim
    # TGI exposes no time-to-first-token histogram; the streaming probe supplies it.
    sampler = WorkerSampler(
        WorkerConfig(name="w", url=url, engine="tgi", model="deepseek-v3", generation_interval=0.3)
    )
    try:
        wait_for(
            lambda: sampler.generation is not None and len(sampler.generation.ttfts) >= 4,
            10,
            "four generation probes",
        )
        assert sampler.generation is not None
        sampler.generation.stopping.set()  # its probes held still: the quantiles are of these
        sampler.generation.join(10)
        got = values(sampler)
        ttfts = [seconds for _, seconds in sampler.generation.ttfts]
    finally:
        sampler.close()
    assert {k[1] for k in got if k[0] == "inference_ttft_seconds"} == {"0.5", "0.95", "0.99"}
    assert 0 < got[("inference_ttft_seconds", "0.5")] < 1
    for q in ("0.5", "0.95", "0.99"):
        assert got[("inference_ttft_seconds", q)] == pytest.approx(quantile(float(q), ttfts)), q


def test_readyz_refuses_traffic_while_a_critical_gpu_alert_fires(
    agent_factory: Callable[..., AgentProcess],
) -> None:
    agent = agent_factory('[gpu]\nsimulate = 2\nscenario = "lost"\n')  # GPU 1 falls off at 10 s
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 200, 20, "ready")
    wait_for(lambda: requests.get(agent.url + "/readyz", timeout=2).status_code == 503, 30, "503")
    assert requests.get(agent.url + "/readyz", timeout=2).json()["reasons"] == [
        "GpuLost firing on GPU 1"
    ]


def test_sim_worker_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "sim-worker",
            "--port",
            str(port),
            "--log",
            str(tmp_path / "req.log"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"on http://127.0.0.1:{port}" in proc.stdout.readline()
        ok = dsagent("probe", f"http://127.0.0.1:{port}", "--model", "deepseek-v3")
        assert ok.returncode == 0, ok.stdout
        line = json.loads((tmp_path / "req.log").read_text().splitlines()[0])
        assert set(line) == LOG_FIELDS
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Counting(SimServer):
    """The simulator, counting the connections it accepts and the paths asked; it can drop them."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.accepted: list[object] = []
        self.paths: list[str] = []
        counting = self

        class Handler(self.RequestHandlerClass):  # type: ignore[name-defined,misc]
            def parse_request(self) -> bool:
                counting.paths.append(self.raw_requestline.split()[1].decode())
                return bool(super().parse_request())

        self.RequestHandlerClass = Handler

    def process_request(self, request: object, client_address: object) -> None:  # type: ignore[override]
        self.accepted.append(request)
        super().process_request(request, client_address)  # type: ignore[arg-type]

    def drop_connections(self) -> None:
        """Close every open connection, as a worker closing idle keep-alives does."""
        for sock in self.accepted:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]


@pytest.fixture
def counting(tmp_path: Path) -> Iterator[Counting]:
    server = Counting(0, "deepseek-v3", tmp_path / "requests.log")
    yield server
    server.shutdown()


def test_probes_keep_one_connection_and_ask_for_models_every_ten_seconds(
    counting: Counting,
) -> None:
    threading.Thread(target=counting.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{counting.server_address[1]}"
    sampler = WorkerSampler(WorkerConfig(name="w", url=url, generation_interval=0))
    now = time.time()
    rounds = [values(sampler, now + i) for i in range(12)]
    assert len(counting.accepted) == 1, "one connection, kept from round to round"
    assert counting.paths.count("/health") == 12 and counting.paths.count("/metrics") == 12
    assert counting.paths.count("/v1/models") == 2, "asked at 0 s and again at 10 s"
    assert all(r[("worker_ready",)] == 1 for r in rounds), "a kept answer keeps the worker ready"
    assert all(("worker_probe_duration_seconds", "connect", "liveness") in r for r in rounds)
    counting.drop_connections()  # the worker closed the idle connection (or restarted)
    got = values(sampler, now + 12)
    assert got[("worker_up",)] == 1 and got[("worker_ready",)] == 1, "retried on a new one"
    assert len(counting.accepted) == 2
    assert counting.paths.count("/v1/models") == 3, "a new connection asks for the models again"
    sampler.close()


def test_a_worker_that_closes_every_connection_is_probed_all_the_same(counting: Counting) -> None:
    counting.RequestHandlerClass = type("Closing", (counting.RequestHandlerClass,), {
        "protocol_version": "HTTP/1.0"})  # fmt: skip
    threading.Thread(target=counting.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{counting.server_address[1]}"
    sampler = WorkerSampler(WorkerConfig(name="w", url=url, generation_interval=0))
    got = [values(sampler, time.time() + i) for i in range(2)][-1]
    assert got[("worker_ready",)] == 1 and got[("worker_probe_success", "readiness")] == 1
    assert ("inference_kv_cache_usage_ratio",) in got, "the engine's /metrics came too"
    assert len(counting.accepted) == 6, "a connection per request, none failed"
    assert counting.paths.count("/v1/models") == 2, "each round connects anew: asked each time"


def test_the_simulators_control_is_strict() -> None:
    from agent.sim.worker import control_value

    known = {"mode": "ok", "latency": 0.08, "error_rate": 0.0, "gpu_util": 0.7}
    assert control_value("latency", 2, known) == 2.0
    for key, value, says in (("latncy", 1, "unknown key 'latncy'"), ("mode", "sleep", "one of"),
                             ("error_rate", 3, "0 to 1"), ("latency", "x", "a number"),
                             ("latency", True, "a number")):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            control_value(key, value, known)
