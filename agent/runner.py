"""Runs the samplers on a grid, one clock job per round, and records how each run went."""

from __future__ import annotations

import functools
import itertools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence

from agent.clock import Clock
from agent.relay import Hands, Relay, Step
from agent.samplers import Sampler, close_all
from agent.store import MetricInfo, Sample, SeriesStore
from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)

METRICS = {
    "dsagent_sampler_success": MetricInfo("gauge", "1 if the sampler's last run succeeded."),
    "dsagent_sampler_duration_seconds": MetricInfo("gauge", "How long the last run took."),
    "dsagent_sampler_lateness_seconds": MetricInfo(
        "gauge", "How long after its scheduled time the last run started."
    ),
    "dsagent_sampler_errors_total": MetricInfo("counter", "Runs that raised an error."),
    "dsagent_sampler_skipped_total": MetricInfo(
        "counter", "Runs skipped because the previous run was still going (overrun)."
    ),
}


def grid_start(now: float, interval: float) -> float:
    """Return the next multiple of the interval, so runs land on a fixed grid."""
    return math.ceil(now / interval) * interval


class SamplerRunner:
    """One step per sampler, run by its round; an overrun is skipped and counted, not stacked."""

    def __init__(self, store: SeriesStore, on_run: Callable[[str], None] | None = None,
                 on_ingest: Callable[[str, float], None] | None = None) -> None:  # fmt: skip
        self.store = store
        self.on_run = on_run
        self.on_ingest = on_ingest  # (source, round): the rule trigger listens here
        self.after_round: Callable[[float], None] | None = None  # (round): the rules' fallback
        # Around a base round's steps: the rule trigger holds the groups they complete, and
        # `release` runs them as the round's last step.
        self.hold: Callable[[], None] | None = None
        self.release: Callable[[], None] | None = None
        self.skipped: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_run = time.monotonic()
        self._failing: set[str] = set()
        self._started: dict[str, int] = {}  # reentrant sampler -> the number of its latest run
        self._runs = itertools.count()
        self._lock = threading.Lock()
        self._grid = (0.0, 1.0)
        self.samplers: list[Sampler] = []
        self.steps: dict[str, Step] = {}
        self.hands = Hands()
        self.rounds: dict[str, list[str]] = {}  # a round's job id -> the steps it runs
        self._slot: dict[str, float] = {}  # step -> the grid time of the round it last ran in
        self.clock = Clock(self._missed)
        store.describe(METRICS)

    def start(self) -> None:
        """Start the clock on the rounds given to schedule()."""
        self.clock.start()

    def schedule(self, samplers: Sequence[Sampler], interval: float,
                 intervals: Mapping[str, float] | None = None) -> None:  # fmt: skip
        """Replace every sampler with these, on an interval grid; close the old samplers.

        `intervals` gives some samplers (the watchdog) their own interval instead of `interval`.
        """
        self.remove(list(self.samplers))
        self.add(samplers, interval, intervals)

    def add(self, samplers: Sequence[Sampler], interval: float,
            intervals: Mapping[str, float] | None = None) -> None:  # fmt: skip
        """Add samplers beside the running ones (a reload replaces only those that changed)."""
        self.samplers += samplers
        start = grid_start(time.time() + 0.05, interval)
        self._grid = (start, interval)
        for s in samplers:
            self.store.describe(s.metrics)
            every = (intervals or {}).get(s.name, interval)
            # A reentrant sampler (the GPUs') runs beside an earlier run of its own that hangs.
            reentrant = getattr(s, "reentrant", False)
            self.steps[s.name] = Step(s.name, functools.partial(self.run_once, s), not reentrant)
            job = f"round:{every:g}"
            with self._lock:
                self.rounds.setdefault(job, []).append(s.name)
            if job not in self.clock:
                # The base round runs on the clock's own thread: it is bounded by half a round
                # (see _round), and a hand-off a second cost more than the round's own work.
                # Rounds of other intervals may wait longer for their steps: never on the clock.
                run = functools.partial(self._round, job, every)
                if every != interval:
                    run = functools.partial(self.hands.go, run)
                self.clock.add(job, every, start, run)

    def _round(self, job: str, every: float) -> None:
        """Run the round's steps one after another on one thread (a busy one: a skip).

        Each step may take its share of a quarter round before the round hands the steps after
        it to another thread: steps run all at once fought for the GIL, and a hung sampler only
        delays the next by its share. The base round holds the rule groups its samplers complete
        (`hold`) and runs them as its last step (`release`). A group no sampler completed (one
        fed by a slower interval, or by a sampler still busy) is due as well: with no sampler
        of the round still running, it joins that last step (`after_round` while held); else
        the round waits for the overrunning ones until half the round, then calls it.
        """
        tick = self.round_of(time.time())
        with self._lock:
            steps = [step for name in self.rounds.get(job, ()) if (step := self.steps.get(name))]
            self._slot.update((step.name, tick) for step in steps)
        base = every == self._grid[1]
        hold, release, after = self.hold, self.release, self.after_round
        early = False  # the last step ran `after` itself
        if base and hold is not None and release is not None:

            def last() -> None:
                nonlocal early
                if after is not None and relay.clean:  # nothing of this round left to wait for
                    early = True
                    after(tick)
                release()

            hold()
            steps.append(Step("rules", last))  # this round's own: never refused
        relay = Relay(steps, every / 4 / max(1, len(steps)), self.hands, self.count_skip)
        relay.run()
        if after is None or not base:
            return
        for step in steps:
            step.wait(tick + every / 2 - time.time())
        if not early:
            after(tick)

    def remove(self, samplers: Sequence[Sampler]) -> None:
        """Stop and close some samplers (a reload replacing them)."""
        names = {s.name for s in samplers}
        with self._lock:
            for job, kicked in list(self.rounds.items()):
                self.rounds[job] = [n for n in kicked if n not in names]
                if not self.rounds[job]:  # no sampler left on this interval: stop its beat
                    del self.rounds[job]
                    self.clock.remove(job)
        for name in names:
            self._started.pop(name, None)
            if (step := self.steps.pop(name, None)) is not None:
                step.retired = True  # a run in progress ends on its thread
        close_all(samplers)
        self.samplers = [s for s in self.samplers if s not in samplers]

    def round_of(self, ts: float) -> float:
        """Return the grid time of the round a run started at `ts` belongs to."""
        grid, interval = self._grid
        return grid + math.floor((ts - grid) / interval + 1e-6) * interval

    def count_skip(self, name: str) -> None:
        """Count a run skipped because the previous one was still going."""
        with self._lock:
            self.skipped[name] += 1

    def stop(self) -> None:
        """Stop the clock and release the samplers; runs in progress finish on their threads."""
        self.clock.stop()
        self.remove(list(self.samplers))

    def _missed(self, job: str, rounds: int) -> None:
        """Count rounds the clock could not start as skipped runs of each of their steps."""
        with self._lock:
            for name in self.rounds.get(job, ()):
                self.skipped[name] += rounds

    def run_once(self, sampler: Sampler, at: float | None = None) -> None:
        """Run one sampler once and put its samples and its own health into the store.

        Samples are stamped with the round's grid time, as Prometheus stamps evaluations with
        their scheduled time: a rule's `for` then spans whole rounds, not rounds plus jitter.
        The sampler itself is handed the wall-clock time (rates divide by the real interval),
        or `at` when the caller runs it for a given round (a rule group).
        """
        start, began = time.time(), time.perf_counter()
        tick = self.round_of(start) if at is None else at
        slot = at if at is not None else self._slot.get(sampler.name, tick)  # when it was due
        run = self._begin(sampler)
        try:
            samples = list(sampler.sample(start if at is None else at))
            ok = True
        except Exception:  # the one catch-all, at the scheduler boundary: counted and logged
            samples, ok = [], False
            self._note_failure(sampler.name)
        else:
            self._note_success(sampler.name)
        duration = time.perf_counter() - began
        if run is not None and self._started.get(sampler.name) != run:
            return  # a later run of this reentrant sampler began while this one hung: it stands
        self.store.describe(sampler.metrics)  # some samplers learn their metrics as they read
        self.store.ingest(sampler.name, samples, tick)
        self.store.ingest(
            f"self:{sampler.name}", self._health(sampler.name, ok, duration, start - slot), tick
        )
        self.last_run = time.monotonic()
        if self.on_ingest is not None:
            self.on_ingest(sampler.name, tick)
            self.on_ingest(f"self:{sampler.name}", tick)
        if self.on_run:
            self.on_run(sampler.name)

    def _begin(self, sampler: Sampler) -> int | None:
        """Give a reentrant sampler's run a number, to tell a late run from the latest."""
        step = self.steps.get(sampler.name)
        if step is None or step.exclusive:  # its runs never overlap: none can be late
            return None
        with self._lock:
            run = self._started[sampler.name] = next(self._runs)
        return run

    def _note_failure(self, name: str) -> None:
        SUPERVISOR.count(f"job:{name}")  # the scheduler is this job's supervisor: it runs again
        with self._lock:
            self.errors[name] += 1
            first = name not in self._failing
            self._failing.add(name)
        if first:  # one line when it breaks, one when it recovers: no flood every second
            log.exception("sampler %s failed; its series are missing until it recovers", name)

    def _note_success(self, name: str) -> None:
        with self._lock:
            recovered = name in self._failing
            self._failing.discard(name)
        if recovered:
            log.info("sampler %s recovered", name)

    def _health(self, name: str, ok: bool, duration: float, late: float) -> Iterator[Sample]:
        lateness = max(0.0, late)  # seconds after its round's grid time the run started
        with self._lock:
            skipped, errors = self.skipped[name], self.errors[name]
        labels = (("sampler", name),)
        yield Sample("dsagent_sampler_success", 1.0 if ok else 0.0, labels)
        yield Sample("dsagent_sampler_duration_seconds", duration, labels)
        yield Sample("dsagent_sampler_lateness_seconds", lateness, labels)
        yield Sample("dsagent_sampler_errors_total", float(errors), labels)
        yield Sample("dsagent_sampler_skipped_total", float(skipped), labels)
