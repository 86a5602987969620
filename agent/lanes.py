"""One long-lived thread per sampler, woken by its round: no pool hand-off for every run.

A scheduler job per sampler cost, every second and for each sampler, a trigger computation, a
pool submit, a logger lookup and an event; the profile put that at an eighth of the agent's CPU.
Now the scheduler runs one job per round and each lane is woken with a condition variable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.supervise import SUPERVISOR


class Lane:
    """Runs one function when kicked; a kick while the last run is unfinished is refused."""

    def __init__(self, name: str, run: Callable[[], None]) -> None:
        self.name, self._run = name, run
        self._cond = threading.Condition()
        self._kicked = self._busy = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervised, name=f"lane-{name}", daemon=True)
        self._thread.start()

    def kick(self) -> bool:
        """Ask for one run; False when the previous run has not finished (an overrun)."""
        with self._cond:
            if self._busy or self._kicked or self._stopping.is_set():
                return False
            self._kicked = True
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
                self._kicked, self._busy = False, True
            try:
                self._run()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()  # the round waiting to kick the next lane
