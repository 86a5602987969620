"""Request statistics from the request log, for the rules: latency quantiles, QPS, errors."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from agent.store import Sample, sample
from agent.windows import ranked
from agent.workers.engine_metrics import INFERENCE, QUANTILES

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


@dataclass(slots=True, eq=False)  # eq=False: batches compare by identity (the quantile cache)
class Batch:
    """The requests of one shipped batch, summed as they are built; their latencies sorted."""

    at: float = 0.0
    count: int = 0
    failed: int = 0
    tokens_in: float = 0.0
    tokens_out: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, doc: dict[str, Any]) -> None:
        """Count one request from its ECS document."""
        self.count += 1
        event = doc.get("event", {})
        duration = event.get("duration")
        if isinstance(duration, int) and duration >= 0:
            self.latencies.append(duration / 1e9)
        self.failed += event.get("outcome") == "failure"
        usage = doc.get("gen_ai", {}).get("usage", {})
        self.tokens_in += _num(usage.get("input_tokens"))
        self.tokens_out += _num(usage.get("output_tokens"))


class RequestStats:
    """A sliding window of shipped batches per input; a second's work is per batch, not per row.

    At 2,000 requests a second the window holds 120,000 requests: summing and sorting them row
    by row every second cost a tenth of a core. The sums are per batch, the latencies are merged
    from sorted batches, and an unchanged window reuses the last quantiles.
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.batches: deque[Batch] = deque()
        self.lock = threading.Lock()
        self._seen: tuple[Batch, Batch, int] | None = None  # the window the quantiles are of
        self._quantiles: list[float | None] = []

    def add_doc(self, doc: dict[str, Any]) -> None:
        """Count one request from its ECS document."""
        self.add_docs([doc])

    def add_docs(self, docs: list[dict[str, Any]], now: float | None = None) -> None:
        """Count requests from their ECS documents, all at the time they are shipped."""
        batch = Batch()
        for doc in docs:
            batch.add(doc)
        self.add(batch, now)

    def add(self, batch: Batch, now: float | None = None) -> None:
        """Take a batch into the window (now, or at `now`); sort its latencies once, here."""
        if batch.count:
            batch.at = time.time() if now is None else now
            batch.latencies.sort()  # the window's sort then merges sorted runs
            with self.lock:
                self.batches.append(batch)

    def samples(self, now: float, input_name: str) -> Iterator[Sample]:
        """Yield the window's statistics, labelled with the input."""
        with self.lock:
            while self.batches and self.batches[0].at < now - self.window:
                self.batches.popleft()
            batches = list(self.batches)
        if not batches:
            return
        count = sum(b.count for b in batches)
        yield sample("inference_requests_per_second", count / self.window, input=input_name)
        yield sample("inference_error_ratio", sum(b.failed for b in batches) / count,
                     input=input_name)  # fmt: skip
        for direction, total in (("input", sum(b.tokens_in for b in batches)),
                                 ("output", sum(b.tokens_out for b in batches))):  # fmt: skip
            yield sample("inference_tokens_per_second", total / self.window, input=input_name,
                         direction=direction)  # fmt: skip
        for q, value in zip(QUANTILES, self._latency(batches), strict=True):
            if value is not None:
                yield sample("inference_request_latency_seconds", value, input=input_name,
                             quantile=str(q))  # fmt: skip

    def _latency(self, batches: list[Batch]) -> list[float | None]:
        """Return the latency quantiles of the window; computed again only when it changed."""
        seen = (batches[0], batches[-1], len(batches))
        if seen != self._seen:  # batches are compared by identity
            # Sorted runs, joined: timsort merges them in well under half a sort of the whole
            ordered = sorted(chain.from_iterable(b.latencies for b in batches))
            self._quantiles = [ranked(q, ordered) for q in QUANTILES]
            self._seen = seen
        return self._quantiles
