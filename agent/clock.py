"""The round clock: one thread starts every round on its interval's fixed grid.

The rounds were APScheduler jobs. For each run its loop did datetime and time-zone arithmetic,
built job events and went through an executor, and the agent runs a round every second: side by
side under a real Prometheus, APScheduler's thread used 0.036 % of a core, this loop's 0.021 %
(3 % of the agent's CPU). A grid point the clock could not start on time (its thread was held
up for whole intervals) is not run late: it is reported as missed, and the latest one runs.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Beat:
    """One job on the clock: its grid (start + n * every) and the next point due on it."""

    name: str
    start: float
    every: float
    run: Callable[[], None]
    n: int = 0

    @property
    def due(self) -> float:
        """The wall-clock time of the next grid point (computed, so no error builds up)."""
        return self.start + self.n * self.every

    def point_at(self, now: float) -> int:
        """Return the index of the latest grid point at or before `now`.

        The tolerance (a ten-thousandth of an interval) absorbs the rounding of epoch seconds.
        """
        return math.floor((now - self.start) / self.every + 1e-4)

    def advance(self, now: float) -> int:
        """Move past the latest point due at `now` (the one run); return how many were missed."""
        latest = max(self.n, self.point_at(now))
        missed, self.n = latest - self.n, latest + 1
        return missed


class Clock:
    """Runs each job on its own grid, from one thread: a job must return promptly."""

    def __init__(self, missed: Callable[[str, int], None], name: str = "clock",
                 now: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.missed, self.name, self.now = missed, name, now
        self.running = False
        self.thread: threading.Thread | None = None
        self._beats: dict[str, Beat] = {}
        self._cond = threading.Condition()

    def __contains__(self, name: str) -> bool:
        with self._cond:
            return name in self._beats

    def add(self, name: str, every: float, start: float, run: Callable[[], None]) -> None:
        """Run `run` at start + n * every from the first such time still to come."""
        beat = Beat(name, start, every, run)
        beat.n = max(0, beat.point_at(self.now() - 1e-6) + 1)
        with self._cond:
            self._beats[name] = beat
            self._cond.notify()

    def remove(self, name: str) -> None:
        """Stop running a job (a run in progress ends)."""
        with self._cond:
            self._beats.pop(name, None)

    def start(self) -> None:
        """Start the clock's thread."""
        with self._cond:
            self.running = True
        self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop the clock; a job running now finishes on its own."""
        with self._cond:
            self.running = False
            self._cond.notify()

    def _loop(self) -> None:
        while (due := self._wait()) is not None:
            beat, missed = due
            try:
                if missed:  # reported outside the lock: the runner's own lock is taken there
                    self.missed(beat.name, missed)
                beat.run()
            except Exception:  # a job's own bug: counted and logged once; the clock goes on
                if SUPERVISOR.count(self.name) == 1:
                    log.exception("%s: job %s failed", self.name, beat.name)

    def _wait(self) -> tuple[Beat, int] | None:
        """Wait for the earliest job due; return it and the points it missed (None: stopped)."""
        with self._cond:
            while self.running:
                now = self.now()
                beat = min(self._beats.values(), key=lambda b: b.due, default=None)
                if beat is None:
                    self._cond.wait()
                elif beat.due - now > beat.every:  # the wall clock was set back: re-align
                    beat.n = beat.point_at(now) + 1
                elif beat.due > now:
                    self._cond.wait(beat.due - now)
                else:
                    return beat, beat.advance(now)
            return None
