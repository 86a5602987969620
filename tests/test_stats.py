"""Request statistics: the per-batch window gives what a row-by-row count over it gives."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.shipping.stats import RequestStats
from agent.windows import quantile
from agent.workers.engine_metrics import QUANTILES

Row = tuple[int | None, bool, int, int]  # duration ns (None: no latency), failed, tokens in, out

rows = st.tuples(st.none() | st.integers(0, 10**10), st.booleans(), st.integers(0, 5000),
                 st.integers(0, 5000))  # fmt: skip
batches = st.lists(st.tuples(st.floats(0, 100), st.lists(rows, max_size=20)), max_size=12)


def doc(row: Row) -> dict[str, Any]:
    """The ECS request document the mapper builds for one row."""
    duration, failed, tokens_in, tokens_out = row
    event: dict[str, Any] = {"outcome": "failure" if failed else "success"}
    if duration is not None:
        event["duration"] = duration
    return {"event": event, "gen_ai": {"usage": {"input_tokens": tokens_in,
                                                 "output_tokens": tokens_out}}}  # fmt: skip


def expected(window: list[tuple[float, Row]], span: float) -> dict[tuple[str, str], float]:
    """Count the window row by row, as the statistics are defined."""
    if not window:
        return {}
    got = {
        ("inference_requests_per_second", ""): len(window) / span,
        ("inference_error_ratio", ""): sum(r[1] for _, r in window) / len(window),
        ("inference_tokens_per_second", "input"): sum(r[2] for _, r in window) / span,
        ("inference_tokens_per_second", "output"): sum(r[3] for _, r in window) / span,
    }
    latencies = [r[0] / 1e9 for _, r in window if r[0] is not None]
    for q in QUANTILES:
        value = quantile(q, latencies)
        if value is not None:
            got[("inference_request_latency_seconds", str(q))] = value
    return got


def observed(stats: RequestStats, now: float) -> dict[tuple[str, str], float]:
    got = {}
    for s in stats.samples(now, "in"):
        labels = dict(s.labels)
        assert labels["input"] == "in"
        got[(s.name, labels.get("quantile", labels.get("direction", "")))] = s.value
    assert ("inference_cuda_oom_total", "") not in got, "OOMs are the log events' (events.py)"
    return got


@settings(max_examples=200, deadline=None)
@given(batches, st.lists(st.floats(0, 200), min_size=1, max_size=4))
def test_the_window_matches_a_row_by_row_count(shipped: list[tuple[float, list[Row]]],
                                               reads: list[float]) -> None:  # fmt: skip
    """Batches come in time order; reads go forward in time, old batches leave the window."""
    stats, span = RequestStats(window=30.0), 30.0
    shipped = sorted(shipped, key=lambda b: b[0])
    added: list[tuple[float, Row]] = []
    for now in sorted(reads):
        while shipped and shipped[0][0] <= now:  # what was shipped by the time of this read
            at, batch = shipped.pop(0)
            stats.add_docs([doc(r) for r in batch], now=at)
            added += [(at, r) for r in batch]
        window = [(at, r) for at, r in added if at >= now - span]
        want = expected(window, span)
        got = observed(stats, now)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_an_unchanged_window_is_not_sorted_again() -> None:
    stats = RequestStats(window=60.0)
    stats.add_docs([doc((10**9, False, 1, 1)), doc((3 * 10**9, False, 1, 1))], now=100.0)
    first = observed(stats, 101.0)
    assert first[("inference_request_latency_seconds", "0.5")] == pytest.approx(2.0)
    stats.batches[0].latencies[:] = [7.0, 7.0]  # the cache, not the batch, answers now
    assert observed(stats, 102.0) == first
    stats.add_docs([doc((5 * 10**9, False, 1, 1))], now=103.0)
    assert observed(stats, 104.0)[("inference_request_latency_seconds", "0.5")] == 7.0
