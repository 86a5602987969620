"""Workers found as pods: the API server's pod list (HTTPS, bearer token) picks the address."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import ConfigError, WorkerConfig, load_config
from agent.k8s.pods import choose, pod_url
from agent.sim.worker import SimServer
from tests.conftest import AgentProcess, wait_for
from tests.kubelet import ApiServer, pod
from tests.test_security import certs  # noqa: F401  (a fixture)

R1 = {"app": "vllm", "model": "r1"}
WORKER = WorkerConfig(name="r1", pod_selector="app=vllm", pod_port="http")


def test_choose_prefers_ready_then_oldest_and_skips_what_cannot_be_probed() -> None:
    old, new = "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"
    pods = [
        pod("pending", 1, R1, phase="Pending"),
        pod("unready-old", 2, R1, ready=False, created=old),
        pod("ready-new", 3, R1, created=new),
        pod("ready-old", 4, R1, created=old),
    ]
    found = choose(pods, WORKER)
    assert found is not None and (found.pod, found.url) == ("ready-old", "http://127.0.0.1:4")
    assert choose(pods[:2], WORKER) is not None and choose(pods[:2], WORKER).pod == "unready-old"  # type: ignore[union-attr]
    assert choose(pods[:1], WORKER) is None, "a pending pod has nowhere to probe"


def test_pod_url_by_number_or_name_and_ipv6() -> None:
    p = pod("a", 8000, R1)
    assert pod_url(p, "http", "http") == "http://127.0.0.1:8000"
    assert pod_url(p, 9000, "https") == "https://127.0.0.1:9000"
    assert pod_url(p, "grpc", "http") is None, "no container port of that name"
    p["status"]["podIP"] = "fd00::5"  # type: ignore[index]
    assert pod_url(p, "http", "http") == "http://[fd00::5]:8000"
    p["metadata"]["deletionTimestamp"] = "2026-12-06T00:00:00Z"  # type: ignore[index]
    assert pod_url(p, "http", "http") is None, "a pod being deleted is not probed"


@pytest.mark.parametrize(("body", "says"), [
    ('url = "http://127.0.0.1:1"\npod_selector = "app=vllm"\npod_port = 80', "or a pod_selector"),
    ("", "give the worker a url"),
    ('pod_selector = "app=vllm"', "pod_selector needs pod_port"),
])  # fmt: skip
def test_worker_needs_a_url_or_a_selector_with_a_port(tmp_path: Path, body: str, says: str) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[[workers]]\nname = "r1"\n{body}\n')
    with pytest.raises(ConfigError, match=says) as err:
        load_config(conf)
    assert "workers.0" in str(err.value), "the key path is named"


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[list[SimServer]]:
    servers = [SimServer(0, "deepseek-r1", tmp_path / f"r{i}.log") for i in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield servers
    for s in servers:
        s.shutdown()
        s.server_close()


def metric_line(text: str, name: str, *parts: str) -> str | None:
    return next((x for x in text.splitlines()
                 if x.startswith(name + "{") and all(p in x for p in parts)), None)  # fmt: skip


@pytest.fixture
def apiserver(certs: Path, tmp_path: Path) -> Iterator[tuple[ApiServer, Path, str]]:  # noqa: F811
    """The API server stand-in, the token file it takes, and the [kubernetes] keys to reach it."""
    token = tmp_path / "token"
    token.write_text("sa-token-1\n")
    server = ApiServer(certs / "server.pem", certs / "server.key", "sa-token-1")
    keys = (f'node_name = "gpu-node-1"\napi_url = "{server.url}"\ntoken_file = "{token}"\n'
            f'ca_file = "{certs / "ca.pem"}"\n')  # fmt: skip
    yield server, token, keys
    server.close()


@pytest.mark.integration
def test_worker_follows_its_pod_when_rescheduled(
    agent_factory: Callable[..., AgentProcess],
    sims: list[SimServer],
    apiserver: tuple[ApiServer, Path, str],
) -> None:
    api, token, keys = apiserver
    port = [s.server_address[1] for s in sims]
    api.pods = [pod("r1-a", port[0], R1), pod("r1-elsewhere", port[1], R1, node="gpu-node-2"),
                pod("qwen", port[1], {"app": "vllm", "model": "qwen"})]  # fmt: skip
    agent = agent_factory(
        f'[kubernetes]\npod_resources = false\n{keys}interval = "1s"\nmax_backoff = "2s"\n'
        f'[[workers]]\nname = "r1"\npod_selector = "app=vllm,model=r1"\npod_port = "http"\n'
        f'pod_namespace = "llm"\nmodel = "deepseek-r1"\ngeneration_interval = "0s"\n'
    )
    agent.wait_healthy()

    def ready_at(name: str) -> bool:
        text = agent.metrics()
        return bool(metric_line(text, "worker_pod_info", f'pod="{name}"')
                    and metric_line(text, "worker_ready", 'worker="r1"', "} 1.0"))  # fmt: skip

    wait_for(lambda: ready_at("r1-a"), 20, "the worker found in its pod")
    assert f":{port[0]}" in (metric_line(agent.metrics(), "worker_pod_info") or "")
    token.write_text("sa-token-2\n")  # the kubelet rotated the projected token
    api.token = "sa-token-2"
    api.pods = [pod("r1-b", port[1], R1)]  # rescheduled: a new pod at a new address
    sims[0].shutdown()
    wait_for(lambda: ready_at("r1-b"), 20, "the worker followed to its new pod")
    api.token = "revoked"
    wait_for(lambda: 'dsagent_k8s_api_errors_total{reason="http_401"}' in agent.metrics(),
             10, "the refused list counted")  # fmt: skip
    text = agent.metrics()
    assert "dsagent_k8s_api_up 0.0" in text
    assert metric_line(text, "worker_ready", 'worker="r1"', "} 1.0"), "the last pod holds"
    api.token, api.pods = "sa-token-2", []
    wait_for(lambda: bool(metric_line(agent.metrics(), "worker_up", 'worker="r1"', "} 0.0")),
             20, "no pod: the worker is down")  # fmt: skip
    text = agent.metrics()
    assert metric_line(text, "dsagent_worker_probe_failures_total", 'reason="no_pod"')
    assert not metric_line(text, "worker_pod_info")


@pytest.mark.integration
def test_a_pod_worker_gets_joules_per_token_from_its_pods_gpus(
    agent_factory: Callable[..., AgentProcess],
    sims: list[SimServer],
    apiserver: tuple[ApiServer, Path, str],
) -> None:
    import shutil
    import tempfile

    import requests

    from agent.sim.fake_nvml import FakeGpu
    from tests.kubelet import Kubelet

    api, _, keys = apiserver
    url = f"http://127.0.0.1:{sims[0].server_address[1]}"
    api.pods = [pod("r1-0", sims[0].server_address[1], R1)]
    sockdir = Path(tempfile.mkdtemp(prefix="k8s", dir="/tmp"))
    kubelet = Kubelet(sockdir / "kubelet.sock", {
        ("llm", "r1-0", "vllm"): [("nvidia.com/gpu", [FakeGpu(0).uuid, FakeGpu(1).uuid])],
    }).start()  # fmt: skip
    try:
        agent = agent_factory(
            f"[gpu]\nsimulate = 2\n"
            f'[kubernetes]\npod_resources = true\nsocket = "{kubelet.socket}"\ninterval = "1s"\n'
            f"{keys}"
            f'[[workers]]\nname = "r1"\npod_selector = "app=vllm,model=r1"\npod_port = "http"\n'
            f'model = "deepseek-r1"\ngeneration_interval = "0s"\nwindow = "5s"\n'
        )
        agent.wait_healthy()
        jpt = 'inference_energy_joules_per_token{namespace="llm",pod="r1-0",tokens="output"'

        def measured() -> bool:
            requests.post(url + "/v1/completions", json={"prompt": "hi", "max_tokens": 32},
                          timeout=5)  # fmt: skip
            return jpt in agent.metrics()

        wait_for(measured, 40, "joules per token through the pod's GPUs (no pids configured)")
    finally:
        kubelet.stop()
        shutil.rmtree(sockdir, ignore_errors=True)
