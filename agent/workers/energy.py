"""Energy and cost per token: a worker's GPU energy over the tokens it generated meanwhile.

The energy is NVML's counter, summed over the GPUs the worker's processes use. Counted: GPU
energy only (not CPUs, fans, the rest of the server); idle power too (a GPU a worker uses
counts whole, busy or not); a GPU two workers share (time-slicing) counts whole for each.
GPUs no worker process uses count for none.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterator

from agent.config.settings import CostConfig
from agent.store import MetricInfo, Sample, sample

KEEP = 900.0  # seconds of energy readings kept: longer than any worker window
METRICS = {
    "inference_energy_joules_per_token": MetricInfo(
        "gauge", "GPU energy per token over the worker's window, by tokens (output, all)."
    ),
    "inference_cost_per_million_tokens": MetricInfo(
        "gauge", "Electricity and GPU-hours per million tokens, in [cost] currency, by tokens."
    ),
}


class EnergyBook:
    """Each worker's GPU energy counter (summed over its GPUs), as the GPU sampler read it."""

    def __init__(self) -> None:
        self._readings: dict[str, deque[tuple[float, float, int]]] = {}  # (ts, J, GPUs)
        self._lock = threading.Lock()

    def record(self, ts: float, by_worker: dict[str, tuple[float, int]]) -> None:
        """Note each worker's summed energy (J) and GPU count at one GPU round."""
        with self._lock:
            for worker, (joules, gpus) in by_worker.items():
                kept = self._readings.setdefault(worker, deque())
                kept.append((ts, joules, gpus))
                while kept and kept[0][0] < ts - KEEP:
                    kept.popleft()

    def spent(self, worker: str, start: float, end: float) -> tuple[float, int] | None:
        """Return (joules, GPUs) between the readings nearest start and end, or None."""
        with self._lock:
            kept = list(self._readings.get(worker, ()))
        if len(kept) < 2:
            return None
        times = [t for t, _, _ in kept]
        a = kept[min(bisect.bisect_left(times, start), len(kept) - 1)]
        b = kept[min(bisect.bisect_left(times, end), len(kept) - 1)]
        if b[0] <= a[0] or b[1] < a[1] or a[2] != b[2]:  # a reset, or GPUs came or went
            return None
        return b[1] - a[1], b[2]


def per_token(worker: str, *, joules: float, gpus: int, seconds: float,
              tokens: dict[str, float], prices: CostConfig,
              pod: dict[str, str] | None = None) -> Iterator[Sample]:  # fmt: skip
    """Yield J/token and, with prices, cost per million tokens, for each kind of tokens.

    `pod` (namespace and pod) labels them when the worker was found as a pod.
    """
    extra = pod or {}
    kwh, gpu_hours = joules / 3.6e6, gpus * seconds / 3600
    cost = kwh * prices.electricity_per_kwh + gpu_hours * prices.gpu_hour
    for kind, count in tokens.items():
        if count <= 0:
            continue
        yield sample("inference_energy_joules_per_token", joules / count, worker=worker,
                     tokens=kind, **extra)  # fmt: skip
        if cost > 0:
            yield sample("inference_cost_per_million_tokens", cost / count * 1e6, worker=worker,
                         tokens=kind, currency=prices.currency, **extra)  # fmt: skip
