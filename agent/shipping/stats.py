"""Request statistics from the request log, for the rules: latency quantiles, QPS, errors, OOMs."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from agent.store import Sample, sample
from agent.windows import quantile
from agent.workers.engine_metrics import INFERENCE

METRICS = {
    name: INFERENCE[name]
    for name in ("inference_request_latency_seconds", "inference_requests_per_second",
                 "inference_error_ratio", "inference_tokens_per_second", "inference_cuda_oom_total")
}  # fmt: skip


def _num(value: Any) -> float:
    if type(value) is int and -(2**53) < value < 2**53:  # the common case: a token count
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    try:
        number = float(value)
    except OverflowError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _row(now: float, doc: dict[str, Any]) -> tuple[float, float, bool, float, float]:
    """(time, latency, failed, tokens in, tokens out) of one request document."""
    event = doc.get("event", {})
    usage = doc.get("gen_ai", {}).get("usage", {})
    duration = event.get("duration")
    return (now, duration / 1e9 if isinstance(duration, int) else -1.0,
            event.get("outcome") == "failure", _num(usage.get("input_tokens")),
            _num(usage.get("output_tokens")))  # fmt: skip


class RequestStats:
    """A sliding window of (time, latency, failed, tokens in, tokens out) per input."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.rows: deque[tuple[float, float, bool, float, float]] = deque()
        self.ooms = 0
        self.lock = threading.Lock()

    def add_doc(self, doc: dict[str, Any]) -> None:
        """Count one request from its ECS document."""
        self.add_docs([doc])

    def add_docs(self, docs: list[dict[str, Any]]) -> None:
        """Count requests from their ECS documents, all at the time they are shipped."""
        now = time.time()
        rows = [_row(now, doc) for doc in docs]
        with self.lock:
            self.rows.extend(rows)

    def samples(self, now: float, input_name: str) -> Iterator[Sample]:
        """Yield the window's statistics, labelled with the input."""
        with self.lock:
            while self.rows and self.rows[0][0] < now - self.window:
                self.rows.popleft()
            rows = list(self.rows)
            ooms = self.ooms
        yield sample("inference_cuda_oom_total", ooms, input=input_name)
        if not rows:
            return
        yield sample("inference_requests_per_second", len(rows) / self.window, input=input_name)
        yield sample("inference_error_ratio", sum(r[2] for r in rows) / len(rows), input=input_name)
        for direction, i in (("input", 3), ("output", 4)):
            yield sample("inference_tokens_per_second", sum(r[i] for r in rows) / self.window,
                         input=input_name, direction=direction)  # fmt: skip
        latencies = [r[1] for r in rows if r[1] >= 0]
        for q in (0.5, 0.95, 0.99):
            value = quantile(q, latencies)
            if value is not None:
                yield sample("inference_request_latency_seconds", value, input=input_name,
                             quantile=str(q))  # fmt: skip
