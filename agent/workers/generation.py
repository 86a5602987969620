"""The streaming-completion probe, on its own interval, off the sampler's thread."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from agent.config import WorkerConfig
from agent.workers import checks as probes


class Generation(threading.Thread):
    """Runs the streaming-completion probe on its own interval, off the sampler's thread."""

    def __init__(self, worker: WorkerConfig, url: Callable[[], str]) -> None:
        super().__init__(name=f"gen-{worker.name}", daemon=True)
        self.worker, self.url = worker, url
        self.latest: probes.Result | None = None
        self.ttfts: deque[tuple[float, float]] = deque()  # (ts, seconds) over 5 min
        self.stopping = threading.Event()
        self.failures: Counter[str] = Counter()  # by reason

    def run(self) -> None:
        """Probe until stopped."""
        w = self.worker
        while not self.stopping.wait(0 if self.latest is None else w.generation_interval):
            url = self.url()
            if not url:  # a pod not found yet
                continue
            res = probes.generation(url, w.model, w.generation_timeout)
            if not res.ok:
                self.failures[res.reason or "unknown"] += 1
            now = time.time()
            if res.ok and "first_byte" in res.phases:
                self.ttfts.append((now, res.phases["first_byte"]))
            while self.ttfts and self.ttfts[0][0] < now - 300:
                self.ttfts.popleft()
            self.latest = res
