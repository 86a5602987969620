"""When rule groups run: as soon as the samplers they read have reported for the round."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from agent.alerting.engine import RuleGroupJob
from agent.store import SeriesStore

Run = Callable[[RuleGroupJob, float], None]  # the runner's run_once(job, round)
Skip = Callable[[str], None]  # counts an overrun, by job name


class RuleTrigger:
    """Runs each group once per round, right after the last sampler it reads has ingested.

    A group waits for every source that writes one of its families, so a rule over several
    samplers sees one consistent round. A sampler that hangs, or a group nobody feeds, is not
    waited for past half a round: the runner's round calls `fallback` then. A group still running
    when its next round is due is skipped and counted, as an overrunning scheduler job is.

    While a round's samplers run (between `hold` and `release`) the groups they complete are held
    and then run together, one after another on the thread that calls `release` (the round's
    last step); so are the groups that a group's own result completes (the agent's rules read
    the other groups' health). A group evaluated beside the samplers fought them for the GIL,
    and each was a pool thread's wake-up.
    """

    def __init__(self, store: SeriesStore, run: Run, skip: Skip, workers: int = 2) -> None:
        self.store, self._run, self._skip = store, run, skip
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rules")
        self._lock = threading.Lock()
        self._jobs: list[RuleGroupJob] = []
        self._due: dict[str, float] = {}  # job name -> the first round it may run in
        self._running: set[str] = set()
        self._interval = 1.0
        self._held: list[tuple[RuleGroupJob, float]] | None = None  # while a round's samplers run
        self._local = threading.local()  # .batch: the batch this pool thread is running

    def set_jobs(self, jobs: Sequence[RuleGroupJob], interval: float) -> None:
        """Take a new set of groups (at start and on reload); a kept group keeps its due time."""
        with self._lock:
            self._jobs, self._interval = list(jobs), interval
            self._due = {j.name: self._due.get(j.name, 0.0) for j in jobs}

    def ingested(self, source: str, tick: float) -> None:
        """Run the groups that a source's run of round `tick`, now in the store, completes."""
        written = self.store.families_of(source)
        if not written:
            return
        for job in self._jobs:
            if job.families.isdisjoint(written):
                continue
            if self.store.reported(job.families, tick):
                self._submit(job, tick)

    def hold(self) -> None:
        """Hold the groups completed from now on, to run them together at `release`."""
        with self._lock:
            self._held = []

    def release(self) -> None:
        """Run the groups completed while held, as one batch, on this thread."""
        with self._lock:
            held, self._held = self._held or [], None
        if held:
            self._evaluate(held)

    def fallback(self, tick: float) -> None:
        """Half a round on: run every group due in round `tick` that no sampler completed."""
        for job in self._jobs:
            self._submit(job, tick)

    def _submit(self, job: RuleGroupJob, tick: float) -> None:
        with self._lock:
            if tick < self._due.get(job.name, math.inf):
                return  # already run this round, or not due yet (a longer group interval)
            if job.name in self._running:
                self._skip(job.name)
                return
            every = job.group.interval or self._interval
            self._due[job.name] = (math.floor(tick / every + 1e-6) + 1) * every
            self._running.add(job.name)
            batch = self._held if self._held is not None else getattr(self._local, "batch", None)
            if batch is not None:  # held for the round's end, or next on this pool thread
                batch.append((job, tick))
                return
        self._start([(job, tick)])

    def _start(self, batch: list[tuple[RuleGroupJob, float]]) -> None:
        try:
            self._pool.submit(self._evaluate, batch)
        except RuntimeError:  # the pool is shut down: the agent is stopping
            with self._lock:
                self._running.difference_update(job.name for job, _ in batch)

    def _evaluate(self, batch: list[tuple[RuleGroupJob, float]]) -> None:
        """Run a batch in order; groups its results complete join it."""
        self._local.batch = batch
        try:
            for job, tick in batch:  # grows as it goes: a list iterator sees appended items
                try:
                    self._run(job, tick)
                finally:
                    with self._lock:
                        self._running.discard(job.name)
        finally:
            self._local.batch = None

    def close(self) -> None:
        """Take no more work; evaluations in flight finish on their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
