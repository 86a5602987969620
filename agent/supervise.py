"""Long-lived threads under one supervisor: a failure is logged, counted and restarted."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator

from agent.store import MetricInfo, Sample, sample

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_component_failures_total": MetricInfo(
        "counter", "Unexpected failures of a long-lived part (each was restarted)."
    ),
}
MAX_BACKOFF = 60.0


class Supervisor:
    """Runs loops that must not die; exported as a sampler so a rule can alert on them."""

    name = "supervisor"
    metrics = METRICS

    def __init__(self, first_delay: float = 1.0) -> None:
        self.first_delay = first_delay
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, component: str) -> int:
        """Count one failure of a component; return how many it has had."""
        with self._lock:
            self.failures[component] += 1
            return self.failures[component]

    def run(self, component: str, loop: Callable[[], None], stopping: threading.Event) -> None:
        """Run `loop` until it returns; after an unexpected exception, restart it with backoff."""
        delay = self.first_delay
        while True:
            try:
                loop()
                return
            except Exception:  # the boundary of a long-lived part: counted, logged, restarted
                count = self.count(component)
                if count == 1:
                    log.exception("%s failed; restarting it in %.0fs", component, delay)
                else:
                    log.warning("%s failed again (%d times); restarting it in %.0fs",
                                component, count, delay)  # fmt: skip
            if stopping.wait(delay):
                return
            delay = min(delay * 2, MAX_BACKOFF)

    def sample(self, now: float) -> Iterator[Sample]:
        """Report the failures counted so far, per component."""
        with self._lock:
            counts = sorted(self.failures.items())
        for component, n in counts:
            yield sample("dsagent_component_failures_total", n, component=component)


SUPERVISOR = Supervisor()  # one for the process, as prometheus_client has one REGISTRY
