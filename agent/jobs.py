"""What the round loop runs: a sampler or rule group (`Job`), a task, and the health metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent.store import MetricInfo, Sample
from agent.tether import Call

METRICS = {
    "dsagent_sampler_success": MetricInfo("gauge", "1 if the sampler's last run succeeded."),
    "dsagent_sampler_duration_seconds": MetricInfo("gauge", "How long the last run took."),
    "dsagent_sampler_lateness_seconds": MetricInfo(
        "gauge", "How long after its round's grid time the last run started."
    ),
    "dsagent_sampler_errors_total": MetricInfo("counter", "Runs that raised an error."),
    "dsagent_sampler_skipped_total": MetricInfo(
        "counter", "Runs not started: the previous run was still going, or the round was missed."
    ),
    "dsagent_sampler_timeouts_total": MetricInfo(
        "counter", "Runs of a blocking sampler not done by the round's deadline."
    ),
}


def grid_start(now: float, interval: float) -> float:
    """Return the next multiple of the interval, so rounds land on a fixed grid."""
    return math.ceil(now / interval) * interval


@dataclass(eq=False)
class Job:
    """One sampler or rule group on the loop: what it runs, how often, and how it went."""

    name: str
    run: Callable[[float], Iterable[Sample]]
    metrics: Mapping[str, MetricInfo]
    every: float
    on_tick: bool = False  # run at the round's grid time (a rule group), else the wall clock
    blocking: bool = False
    due: float = 0.0  # the first grid time it may run at
    skipped: int = 0
    errors: int = 0
    timeouts: int = 0
    failing: bool = False
    call: Call[list[Sample]] | None = None  # a blocking job's run in flight
    began: tuple[float, float] = (0.0, 0.0)  # that run's round and wall-clock start
    owner: object = field(default=None, repr=False)  # the sampler, closed when removed

    def is_due(self, tick: float) -> bool:
        """Return True if the job runs in the round at `tick` (or the wall clock went back)."""
        return tick >= self.due - 1e-6 or self.due - tick > self.every

    def ran(self, tick: float) -> None:
        """Move its due time to the next point of its own interval after `tick`."""
        self.due = (math.floor(tick / self.every + 1e-6) + 1) * self.every


@dataclass(eq=False)
class Task:
    """Something the loop does after its rounds' rules (the watchdog), on its own interval."""

    name: str
    every: float
    run: Callable[[float], None]
    due: float = 0.0  # on the monotonic clock
