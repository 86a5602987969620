"""A real Prometheus (Debian's) scrapes the agent; promtool lints /metrics."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import AgentProcess, free_port, need_binary, promtool, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def agent(agent_factory: Callable[..., AgentProcess]) -> AgentProcess:
    agent = agent_factory(
        '[network]\nprobe_targets = ["127.0.0.1", "tcp://127.0.0.1:1"]\n[gpu]\nsimulate = 2\n'
    )
    agent.wait_healthy()
    wait_for(
        lambda: (
            "\nnet_interface_drop_ratio" in agent.metrics()
            or "\nhost_cpu_utilization_ratio" in agent.metrics()
        ),
        what="rates after 2 runs",
    )
    return agent


@pytest.fixture
def prometheus(agent: AgentProcess, tmp_path: Path) -> Iterator[str]:
    binary = need_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: dsagent\n    static_configs: [{{targets: ['127.0.0.1:{agent.port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(url + "/-/ready", timeout=1).ok, 30, "prometheus ready")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def query(url: str, expr: str) -> list[dict]:
    resp = requests.get(url + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert resp["status"] == "success", resp
    return list(resp["data"]["result"])


def test_prometheus_scrapes_without_errors(prometheus: str) -> None:
    wait_for(
        lambda: (
            float(
                (
                    query(prometheus, 'count_over_time(up{job="dsagent"}[1m])')
                    or [{"value": [0, "0"]}]
                )[0]["value"][1]
            )
            >= 5
        ),
        30,
        "five scrapes",
    )
    (target,) = requests.get(prometheus + "/api/v1/targets", timeout=5).json()["data"][
        "activeTargets"
    ]
    assert target["health"] == "up"
    assert target["lastError"] == ""
    assert query(prometheus, 'min_over_time(up{job="dsagent"}[1m])')[0]["value"][1] == "1"
    assert query(prometheus, "host_memory_used_ratio"), "a host series reached Prometheus"
    gpus = query(prometheus, "gpu_up")
    assert sorted(g["metric"]["gpu"] for g in gpus) == ["0", "1"]
    assert all(g["value"][1] == "1" for g in gpus)
    loss = query(prometheus, 'net_packet_loss_ratio{target="127.0.0.1"}')
    assert loss and loss[0]["value"][1] == "0"
    own = requests.get(prometheus + "/metrics", timeout=5).text.splitlines()
    for counter in (
        "prometheus_target_scrapes_sample_out_of_order_total",
        "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        "prometheus_target_scrapes_sample_out_of_bounds_total",
        "prometheus_target_scrapes_exceeded_sample_limit_total",
    ):
        (line,) = [x for x in own if x.startswith(counter + " ")]
        assert line == f"{counter} 0", line


def test_promtool_check_metrics_is_clean(agent: AgentProcess) -> None:
    out = promtool("check", "metrics", stdin=agent.metrics(), timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == ""
