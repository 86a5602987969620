"""One long-lived thread per sampler, woken by its round: no pool hand-off for every run.

A scheduler job per sampler cost, every second and for each sampler, a trigger computation, a
pool submit, a logger lookup and an event; the profile put that at an eighth of the agent's CPU.
Now the scheduler runs one job per round and each lane is woken with a condition variable.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

from agent.supervise import SUPERVISOR


class Lane:
    """Runs one function when kicked; a kick while the last run is unfinished is refused."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name, self._run = name, run
        self._cond = threading.Condition()
        self._kicked = self._busy = False
        self._then: Callable[[], None] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name=f"lane-{name}", daemon=True)
        self._thread.start()

    def kick(self, then: Callable[[], None] | None = None) -> bool:
        """Ask for one run, and `then` called on this lane's thread after it; False on overrun."""
        with self._cond:
            if self._busy or self._kicked or self._stopping.is_set():
                return False
            self._kicked, self._then = True, then
            self._cond.notify()
            return True

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for the kicked run to finish; False if it is still going."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._busy or self._kicked), timeout)

    def close(self) -> None:
        """Stop after the run in progress, if any."""
        with self._cond:
            self._stopping.set()
            self._cond.notify()

    def _supervised(self) -> None:
        SUPERVISOR.run(f"lane:{self.name}", self._loop, self._stopping)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._kicked and not self._stopping.is_set():
                    self._cond.wait()
                if self._stopping.is_set():
                    return
                self._kicked, self._busy, then = False, True, self._then
            try:
                self._run()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()  # whoever waits for this run (a round at its end)
                if then is not None:
                    then()  # the round's next lane: kicked from here, the round sleeps on


class Chain:
    """A round's lanes run one after another: each, when done, kicks the next itself.

    The round's thread sleeps until the last is done or the running one overruns its share;
    waking it between every two lanes cost as much as a lane's own wake-up.
    """

    def __init__(self, lanes: list[Lane], share: float, refused: Callable[[str], None]) -> None:
        self.lanes, self.share, self.refused = lanes, share, refused
        self.pos = -1  # the lane running now; len(lanes) when the chain is through
        self.due = 0.0  # when the running lane's share is up (monotonic)
        self._cond = threading.Condition()

    def run(self) -> None:
        """Kick the first lane and return when the last is done or kicked past its share."""
        with self._cond:
            self._advance(-1)
            while self.pos < len(self.lanes):
                left = self.due - time.monotonic()
                if left <= 0:
                    self._advance(self.pos)  # overran its share: the next goes anyway
                else:
                    self._cond.wait(left)

    def _done(self, pos: int) -> None:
        with self._cond:
            self._advance(pos)

    def _advance(self, pos: int) -> None:
        """Kick the lane after `pos` (unless the chain has moved on); skip the refused."""
        if pos != self.pos:
            return  # a lane that overran its share has finished: the chain is past it
        while (pos := pos + 1) < len(self.lanes):
            self.pos, self.due = pos, time.monotonic() + self.share
            if self.lanes[pos].kick(functools.partial(self._done, pos)):
                return
            self.refused(self.lanes[pos].name)  # still running from the last round
        self.pos = len(self.lanes)
        self._cond.notify()
