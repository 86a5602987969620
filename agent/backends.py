"""The health of every backend (each receiver URL, the Elasticsearch cluster): loud, not noisy.

A backend is up until a call fails. The change is logged once at WARNING with its reason, and
once more when it recovers; the retries in between are counted, not logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_backend_up": MetricInfo("gauge", "1 if the backend's last call succeeded."),
    "dsagent_backend_last_success_timestamp_seconds": MetricInfo(
        "gauge", "Unix time of the backend's last successful call (0: none yet)."
    ),
    "dsagent_backend_errors_total": MetricInfo("counter", "Failed calls to a backend, by reason."),
    "dsagent_backend_overdue_ratio": MetricInfo(
        "gauge",
        "Seconds a backend has been failing over the time it is allowed (a receiver's longest "
        "group_interval; 3 minutes for Elasticsearch): 1 or more alerts.",
    ),
}


@dataclass
class Health:
    """One backend's state."""

    kind: str
    allowed: float  # seconds of failing before it is overdue
    up: bool = True
    since: float = 0.0  # when it went down
    last_success: float = 0.0
    reason: str = ""


class Backends:
    """Every backend's health, reported on /metrics and in `dsagent status`."""

    name = "backends"
    metrics = METRICS

    def __init__(self) -> None:
        self.health: dict[str, Health] = {}
        self.errors: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def declare(self, backend: str, kind: str, allowed: float) -> None:
        """Register a backend (or update its allowance); it starts up, with no success yet."""
        with self._lock:
            known = self.health.get(backend)
            if known is None:
                self.health[backend] = Health(kind, allowed)
            else:
                known.kind, known.allowed = kind, allowed

    def forget(self, keep: set[str], kind: str) -> None:
        """Drop the backends of a kind that a reload removed."""
        with self._lock:
            for name in [n for n, h in self.health.items() if h.kind == kind and n not in keep]:
                del self.health[name]

    def ok(self, backend: str, now: float | None = None) -> None:
        """Record a successful call; log the recovery once."""
        now = time.time() if now is None else now
        with self._lock:
            health = self.health.setdefault(backend, Health("other", 180.0))
            if not health.up:
                log.warning("%s is back after %.0fs down (%s)", backend, now - health.since,
                            health.reason)  # fmt: skip
            health.up, health.last_success, health.reason = True, now, ""

    def failed(self, backend: str, reason: str, detail: str = "",
               now: float | None = None) -> None:  # fmt: skip
        """Record a failed call: `reason` is short (a label), `detail` goes to the log only."""
        now = time.time() if now is None else now
        with self._lock:
            health = self.health.setdefault(backend, Health("other", 180.0))
            self.errors[(backend, reason)] += 1
            if health.up:
                extra = f" ({detail})" if detail else ""
                log.warning("%s is failing: %s%s", backend, reason, extra)
                health.up, health.since = False, now
            health.reason = reason

    def sample(self, now: float) -> Iterator[Sample]:
        """Report up, last success, errors by reason and how overdue a failing backend is."""
        with self._lock:
            health = {n: Health(**vars(h)) for n, h in self.health.items()}
            errors = sorted(self.errors.items())
        for name, h in sorted(health.items()):
            yield sample("dsagent_backend_up", 1.0 if h.up else 0.0, backend=name, kind=h.kind)
            yield sample("dsagent_backend_last_success_timestamp_seconds", h.last_success,
                         backend=name, kind=h.kind)  # fmt: skip
            overdue = 0.0 if h.up else (now - h.since) / h.allowed
            yield sample("dsagent_backend_overdue_ratio", overdue, backend=name, kind=h.kind)
        for (name, reason), n in errors:
            if name in health:
                yield sample("dsagent_backend_errors_total", n, backend=name, reason=reason)


BACKENDS = Backends()  # one for the process, as the supervisor
