"""The round loop: on each point of a fixed grid, the due samplers in order, then the rule groups.

One thread runs each round top to bottom:

1. the samplers due this round; every sample is stamped with the round's grid time, as
   Prometheus stamps evaluations with their scheduled time. The samplers that wait on the
   network (`blocking`: workers, probes) run first, side by side, each on a thread of its own;
   then the rest, in order, on the loop's thread. A blocking one still running at the round's
   deadline is counted as a timeout, and its answer, when it comes, is stored with the round it
   began in. A sampler that can hang inside a call (NVML) bounds its own calls (`agent.tether`).
2. every rule group due this round, in order, on what the samplers just stored; the engine
   hands its transitions to the notifier's queue and returns.
3. the loop's tasks (the systemd watchdog).

A round still running at the next grid point makes the loop skip the points it missed; each
is counted as a skipped run of every sampler it would have run. Rounds never overlap.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from agent.jobs import METRICS, Job, Task, grid_start
from agent.nap import Nap
from agent.samplers import Sampler, close_all
from agent.store import Sample, SeriesStore
from agent.supervise import SUPERVISOR
from agent.tether import Call, Tether

log = logging.getLogger(__name__)

FIRST = 0.25  # of an interval: how long the rest of a round waits for its blocking samplers
DEADLINE = 0.9  # of an interval: when a round stops waiting for its blocking samplers


class RoundLoop:
    """Runs the rounds on one thread; samplers and groups are swapped whole by reloads."""

    def __init__(self, store: SeriesStore, interval: float,
                 on_round: Callable[[float], None] | None = None) -> None:  # fmt: skip
        self.store, self.interval, self.on_round = store, interval, on_round
        self.now = time.time  # the wall clock the grid is on (a test steps it)
        self.samplers: list[Job] = []
        self.groups: list[Job] = []
        self.tasks: list[Task] = []
        self.running = False
        self.last_round = time.monotonic()
        self.thread: threading.Thread | None = None
        self._stop = threading.Event()  # for the supervisor's waits before a restart
        self._nap: Nap | None = None  # the wait between rounds, cut short by stop()
        self._retired: queue.SimpleQueue[object] = queue.SimpleQueue()  # closed between rounds
        self._tether = Tether("blocking")
        store.describe(METRICS)

    def add(self, samplers: Sequence[Sampler],
            intervals: Mapping[str, float] | None = None) -> None:  # fmt: skip
        """Run these samplers too, after the others, each on its interval (default: the round)."""
        jobs = []
        for s in samplers:
            self.store.describe(s.metrics)
            every = (intervals or {}).get(s.name, self.interval)
            jobs.append(Job(s.name, s.sample, s.metrics, every,
                            blocking=getattr(s, "blocking", False), owner=s))  # fmt: skip
        self.samplers = [*self.samplers, *jobs]

    def remove(self, samplers: Sequence[Sampler]) -> None:
        """Stop running these samplers; they are closed once no round uses them."""
        gone = {id(s) for s in samplers}
        self.samplers = [j for j in self.samplers if id(j.owner) not in gone]
        if self.running:
            for s in samplers:
                self._retired.put(s)
        else:
            close_all(samplers)

    def set_groups(self, groups: Sequence[Job]) -> None:
        """Take a new list of rule groups; a group kept by name keeps its due time."""
        due = {g.name: g.due for g in self.groups}
        for g in groups:
            g.due = due.get(g.name, 0.0)
            self.store.describe(g.metrics)
        self.groups = list(groups)

    def every(self, name: str, every: float, run: Callable[[float], None]) -> None:
        """Add a task run after the rules of every round `every` seconds apart."""
        self.tasks = [*self.tasks, Task(name, every, run)]

    def start(self) -> None:
        """Start the loop's thread on the next grid point."""
        self.running = True
        self._nap = Nap()
        self.thread = threading.Thread(target=SUPERVISOR.run, name="rounds", daemon=True,
                                       args=("rounds", self._loop, self._stop))  # fmt: skip
        self.thread.start()

    def stop(self) -> None:
        """Stop after the round in progress; close every sampler."""
        self.running = False
        self._stop.set()
        if self._nap is not None:
            self._nap.wake()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
            if self._nap is not None and not self.thread.is_alive():
                self._nap.close()
                self._nap = None  # its descriptors may be reused: never woken again
        close_all([*self._drain_retired(), *(j.owner for j in self.samplers)])
        self.samplers = []
        self._tether.close()

    def _loop(self) -> None:
        nap, tick = self._nap, grid_start(self.now(), self.interval)
        assert nap is not None  # made by start()
        while not nap.sleep(self._sleep(tick)):
            now = self.now()
            if tick - now > self.interval:  # the wall clock was set back: re-align
                tick = grid_start(now, self.interval)
                continue
            if now < tick:  # a task due between rounds (a watchdog shorter than the round)
                self._tasks()
                continue
            missed = math.floor((now - tick) / self.interval + 1e-4)
            if missed > 0:  # held up for whole intervals: those points are skipped, not run late
                tick += missed * self.interval
                for job in self.samplers:
                    job.skipped += missed
            try:
                self.run_round(tick)
            except Exception:  # a bug of the loop itself: counted, logged once, the loop goes on
                if SUPERVISOR.count("rounds") == 1:
                    log.exception("round at %.3f failed", tick)
            self.last_round = time.monotonic()
            tick += self.interval

    def _drain_retired(self) -> list[object]:
        """Return the samplers removed since the last call."""
        out = []
        while not self._retired.empty():
            out.append(self._retired.get())
        return out

    def _sleep(self, tick: float) -> float:
        """Return how long to wait for the round at `tick` or a task, an interval at most."""
        wall, mono = tick - self.now(), [t.due - time.monotonic() for t in self.tasks]
        return max(0.0, min([wall, *mono, self.interval]))

    def run_round(self, tick: float) -> None:
        """Run one round: the due samplers, then the due rule groups, then the due tasks."""
        self._sample(tick)
        for job in self.groups:
            if job.is_due(tick):
                self._run(job, tick)
                job.ran(tick)
        self._tasks()
        close_all(self._drain_retired())
        if self.on_round is not None:
            self.on_round(tick)

    def _tasks(self) -> None:
        """Run the tasks that are due (on the monotonic clock: a step of the wall clock is none)."""
        for task in self.tasks:
            if (now := time.monotonic()) >= task.due - 1e-3:
                task.due = now + task.every
                task.run(self.now())

    def _sample(self, tick: float) -> None:
        """Run the samplers due at `tick`: the blocking ones side by side, then the rest in order.

        The round waits for the blocking ones up to a quarter of the interval before it runs
        the rest: sampled beside them, the rest would fight them for the GIL. One still going
        then is waited for after the rest, up to the round's deadline.
        """
        due = [j for j in self.samplers if j.is_due(tick)]
        blocking = [j for j in due if j.blocking]
        for job in blocking:
            self._start(job, tick)
        first = tick + FIRST * self.interval
        late = [job for job in blocking if not self._collect(job, tick, first)]
        for job in due:
            if not job.blocking:
                self._run(job, tick)
        for job in late:
            if not self._collect(job, tick, tick + DEADLINE * self.interval):
                self._timed_out(job, tick)
        for job in due:
            job.ran(tick)

    def _run(self, job: Job, tick: float) -> None:
        """Run a job on this thread and store what it reports."""
        start, began = self.now(), time.perf_counter()
        try:
            samples, error = list(job.run(tick if job.on_tick else start)), None
        except Exception as exc:  # the loop's boundary: counted and logged, it runs again
            samples, error = [], exc
        self._store(job, tick, samples, error, (start - tick, time.perf_counter() - began))

    def _start(self, job: Job, tick: float) -> None:
        """Start a blocking job's run on a thread of its own (not while one is in flight)."""
        call = job.call
        if call is not None and call.done.is_set():
            self._finish(job, call, None)  # late, but its answer is stored
        elif call is not None:  # still going: skipped, and said so while it hangs
            job.skipped += 1
            self._health(job, tick, False, self._going(job))
            return
        start = self.now()
        job.began = (tick, start)
        job.call = self._tether.submit(lambda: list(job.run(start)))

    def _collect(self, job: Job, tick: float, until: float) -> bool:
        """Wait for a blocking job's run of this round up to `until`; False if still going."""
        call = job.call
        if call is None or job.began[0] != tick:
            return True  # not started this round: the last one is still going
        if not call.wait(until - self.now()):
            return False
        self._finish(job, call, tick)
        return True

    def _timed_out(self, job: Job, tick: float) -> None:
        """Count a run not done by the deadline; its series stay as they were until it answers."""
        job.timeouts += 1
        self._health(job, tick, False, self._going(job))

    def _going(self, job: Job) -> tuple[float, float]:
        """Return the lateness and the time so far of a blocking job's run in flight."""
        began, start = job.began
        return start - began, self.now() - start

    def _finish(self, job: Job, call: Call[list[Sample]], tick: float | None) -> None:
        """Store a blocking run's answer with the round it began in, its health with `tick`.

        A late answer (tick None) has no health of its own: the run started in its place
        reports this round.
        """
        job.call = None
        error = call.error if isinstance(call.error, Exception) else None
        self._note(job, error)
        began, start = job.began
        self.store.describe(job.metrics)
        self.store.ingest(job.name, call.result or [], began)
        if tick is not None:
            self._health(job, tick, error is None, (start - began, call.elapsed))

    def _store(self, job: Job, tick: float, samples: list[Sample], error: Exception | None,
               timing: tuple[float, float]) -> None:  # fmt: skip
        """Put a run's samples and its health (its lateness and duration) into the store."""
        self._note(job, error)
        self.store.describe(job.metrics)  # some samplers learn their metrics as they read
        self.store.ingest(job.name, samples, tick)
        self._health(job, tick, error is None, timing)

    def _health(self, job: Job, tick: float, ok: bool, timing: tuple[float, float]) -> None:
        """Store how a job's run went: success, lateness, duration and its counters."""
        late, duration = timing
        labels = (("sampler", job.name),)
        health = [
            Sample("dsagent_sampler_success", 1.0 if ok else 0.0, labels),
            Sample("dsagent_sampler_duration_seconds", duration, labels),
            Sample("dsagent_sampler_lateness_seconds", max(0.0, late), labels),
            Sample("dsagent_sampler_errors_total", float(job.errors), labels),
            Sample("dsagent_sampler_skipped_total", float(job.skipped), labels),
        ]
        if job.blocking:
            health.append(Sample("dsagent_sampler_timeouts_total", float(job.timeouts), labels))
        self.store.ingest(f"self:{job.name}", health, tick)

    def _note(self, job: Job, error: Exception | None) -> None:
        """One log line when a job breaks and one when it recovers: no flood every round."""
        if error is None:
            if job.failing:
                job.failing = False
                log.info("%s recovered", job.name)
            return
        SUPERVISOR.count(f"job:{job.name}")
        job.errors += 1
        if not job.failing:
            job.failing = True
            log.error("%s failed; its series are missing until it recovers", job.name,
                      exc_info=error)  # fmt: skip
