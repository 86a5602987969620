"""Engine /metrics onto one set: fixtures for each engine, malformed text, histogram quantiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.workers.engine_metrics import (
    ENGINES,
    bucket_increase,
    engine_samples,
    histogram_quantile,
    parse,
)
from tests.conftest import FIXTURES

DIR = FIXTURES / "engines"


def mapped(engine: str) -> dict[tuple[str, str], float]:
    old = parse((DIR / f"{engine}_t0.txt").read_text(), 1000.0)
    new = parse((DIR / f"{engine}_t1.txt").read_text(), 1060.0)
    out = {}
    for s in engine_samples("w", ENGINES[engine], new, old):
        labels = dict(s.labels)
        assert labels.pop("worker") == "w"
        out[(s.name, next(iter(labels.values()), ""))] = s.value
    return out


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_engines_with_histograms(engine: str) -> None:
    got = mapped(engine)
    assert got[("inference_requests_running", "")] == 13
    assert got[("inference_requests_waiting", "")] == 3
    assert got[("inference_kv_cache_usage_ratio", "")] == 0.42
    assert got[("inference_requests_per_second", "")] == pytest.approx(100 / 60)
    assert got[("inference_tokens_per_second", "input")] == pytest.approx(100)
    assert got[("inference_tokens_per_second", "output")] == pytest.approx(400)
    # TTFT grew by 40 / 50 / 10 over the buckets 0.1 / 0.5 / 1: p50 = 0.1 + 0.4 * 10/50
    assert got[("inference_ttft_seconds", "0.5")] == pytest.approx(0.18)
    assert got[("inference_ttft_seconds", "0.95")] == pytest.approx(0.75)
    # latency grew by 0 / 60 / 30 / 10: p50 = 0.1 + 0.4 * 50/60; p95 lies in +Inf -> 1.0
    assert got[("inference_request_latency_seconds", "0.5")] == pytest.approx(0.1 + 0.4 * 50 / 60)
    assert got[("inference_request_latency_seconds", "0.95")] == 1.0


def test_tgi_has_no_ttft_histogram() -> None:
    got = mapped("tgi")
    assert got[("inference_requests_running", "")] == 13
    assert got[("inference_requests_per_second", "")] == pytest.approx(100 / 60)
    assert got[("inference_tokens_per_second", "input")] == pytest.approx(100)
    assert not any(name == "inference_ttft_seconds" for name, _ in got)
    assert "inference_kv_cache_usage_ratio" not in {name for name, _ in got}


def test_llamacpp_has_no_latency_histograms() -> None:
    got = mapped("llamacpp")
    assert got[("inference_kv_cache_usage_ratio", "")] == 0.42
    assert got[("inference_tokens_per_second", "output")] == pytest.approx(400)
    assert not any(
        name.startswith(("inference_ttft", "inference_request_latency")) for name, _ in got
    )


def test_malformed_exposition_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse((DIR / "malformed.txt").read_text(), 1.0)


def test_a_counter_reset_gives_no_quantile() -> None:
    assert bucket_increase({1.0: 2, math.inf: 3}, {1.0: 5, math.inf: 9}) is None


@given(st.lists(st.integers(0, 100), min_size=1, max_size=6), st.floats(0, 1), st.floats(0, 1))
def test_histogram_quantile_is_monotonic_and_within_bounds(
    counts: list[int], q1: float, q2: float
) -> None:
    bounds = [0.1 * (i + 1) for i in range(len(counts))]
    cumulative, total = {}, 0
    for bound, n in zip(bounds, counts, strict=True):
        total += n
        cumulative[bound] = float(total)
    cumulative[math.inf] = float(total)
    lo, hi = sorted((q1, q2))
    a, b = histogram_quantile(lo, cumulative), histogram_quantile(hi, cumulative)
    if total == 0:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert 0 <= a <= b + 1e-9 <= bounds[-1] + 1e-9


def data_parallel_exposition(kv: tuple[float, float], requests: int) -> str:
    """What vLLM with two data-parallel ranks serves: one series per engine rank, made by
    prometheus_client itself (so _created series and the deprecated KV alias are there)."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    reg = CollectorRegistry()
    labels = ["model_name", "engine"]
    running = Gauge("vllm:num_requests_running", "", labels, registry=reg)
    usage = Gauge("vllm:kv_cache_usage_perc", "", labels, registry=reg)
    old_usage = Gauge("vllm:gpu_cache_usage_perc", "deprecated alias", labels, registry=reg)
    prompt = Counter("vllm:prompt_tokens", "", labels, registry=reg)
    e2e = Histogram("vllm:e2e_request_latency_seconds", "", labels, buckets=(0.1, 0.5, 1.0),
                    registry=reg)  # fmt: skip
    for rank, ratio in enumerate(kv):
        ls = ("m", str(rank))
        running.labels(*ls).set(2 + rank)
        usage.labels(*ls).set(ratio)
        old_usage.labels(*ls).set(ratio)
        prompt.labels(*ls).inc(100 * requests)
        for _ in range(requests):
            e2e.labels(*ls).observe(0.3)
    return generate_latest(reg).decode()


def test_data_parallel_ranks_add_counts_but_not_ratios() -> None:
    old = parse(data_parallel_exposition((0.1, 0.2), 0), 1000.0)
    new = parse(data_parallel_exposition((0.3, 0.6), 30), 1060.0)
    assert any(name.endswith("_created") for name in new.values), "the exposition is realistic"
    got = {(s.name, dict(s.labels).get("direction", dict(s.labels).get("quantile", ""))): s.value
           for s in engine_samples("w", ENGINES["vllm"], new, old)}  # fmt: skip
    assert got[("inference_kv_cache_usage_ratio", "")] == 0.6, "the fullest rank, not 0.9"
    assert got[("inference_requests_running", "")] == 2 + 3
    assert got[("inference_requests_per_second", "")] == pytest.approx(60 / 60)
    assert got[("inference_tokens_per_second", "input")] == pytest.approx(6000 / 60)
    assert 0.1 <= got[("inference_request_latency_seconds", "0.5")] <= 0.5


@pytest.mark.parametrize("name", ["vllm", "sglang", "tgi", "llamacpp"])
def test_the_fast_parser_agrees_with_prometheus_clients(name: str) -> None:
    """The hand parser (several times faster) reads what prometheus_client's reference reads."""
    from collections import defaultdict

    from prometheus_client.parser import text_string_to_metric_families

    from agent.workers.engine_metrics import ENGINES, wanted

    text = (DIR / f"{name}_t1.txt").read_text()
    values: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_bucket") and "le" in s.labels:
                buckets[s.name.removesuffix("_bucket")][float(s.labels["le"])] += s.value
            else:
                values[s.name] += s.value
    snap = parse(text, 1.0)
    assert snap.values == values and snap.buckets == buckets
    names = wanted(ENGINES[name])
    only = parse(text, 1.0, names)
    assert only.values == {k: v for k, v in values.items() if k in names}
