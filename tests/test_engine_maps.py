"""Each engine's own names, as a stand-in built with prometheus_client serves them, mapped."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import requests

from agent.sim.worker import SimServer
from agent.workers.engine_metrics import ENGINES, engine_samples, parse, wanted

PROMPT = "one two three four five"  # 5 tokens, 2 of them from the prefix cache (the sim's half)
N = 6


@pytest.fixture(params=["vllm", "vllm-v0", "sglang", "tgi", "llamacpp"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    server = SimServer(0, "m", None, engine=request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield request.param, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def mapped(kind: str, url: str) -> dict[tuple[str, str], float]:
    engine = ENGINES[kind.removesuffix("-v0")]
    names = wanted(engine)
    before = parse(requests.get(url + "/metrics", timeout=5).text, 1000.0, names)
    requests.post(url + "/control", json={"preempt_rate": 1, "latency": 0.01}, timeout=5)
    for _ in range(N):
        requests.post(url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 8}, timeout=5)
    after = parse(requests.get(url + "/metrics", timeout=5).text, 1010.0, names)
    out = {}
    for s in engine_samples("w", engine, after, before):
        labels = dict(s.labels)
        out[s.name, labels.get("quantile", labels.get("direction", ""))] = s.value
    return out


def test_each_engine_kind_maps_onto_one_set(served: tuple[str, str]) -> None:
    kind, url = served
    got = mapped(kind, url)
    assert ("inference_requests_running", "") in got and ("inference_requests_waiting", "") in got
    assert got["inference_tokens_per_second", "input"] == pytest.approx(N * 5 / 10)
    assert got["inference_tokens_per_second", "output"] > 0
    has_kv = kind != "tgi"
    assert (("inference_kv_cache_usage_ratio", "") in got) == has_kv
    if kind in ("vllm", "vllm-v0", "sglang"):  # counters: never the resetting gauges
        assert got["inference_preemptions_per_second", ""] == pytest.approx(N / 10)
        assert got["inference_prefix_cache_hit_ratio", ""] == pytest.approx(2 / 5)
    else:
        assert ("inference_preemptions_per_second", "") not in got
        assert ("inference_prefix_cache_hit_ratio", "") not in got
    has_queue = kind in ("vllm", "sglang", "tgi")
    assert (("inference_queue_time_seconds", "0.5") in got) == has_queue
    if kind != "llamacpp":
        assert got["inference_requests_per_second", ""] == pytest.approx(N / 10)


def test_a_resetting_counter_gives_no_negative_rate() -> None:
    e = ENGINES["vllm"]
    old = parse("vllm:prefix_cache_hits_total 900\nvllm:prefix_cache_queries_total 1000\n"
                "vllm:num_preemptions_total 7\n", 0)  # fmt: skip
    new = parse("vllm:prefix_cache_hits_total 10\nvllm:prefix_cache_queries_total 20\n"
                "vllm:num_preemptions_total 1\n", 60)  # the engine restarted  # fmt: skip
    names = {s.name for s in engine_samples("w", e, new, old)}
    assert "inference_preemptions_per_second" not in names
    assert "inference_prefix_cache_hit_ratio" not in names
