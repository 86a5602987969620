"""A round's steps run one after another on one thread; a step that hangs keeps only that thread.

A long-lived thread per sampler, each kicked by the one before it, cost a thread wake-up per
sampler per round; on a VM that was most of a cheap sampler's CPU. Now one thread runs the
whole round. When a step outruns its share of the round, the round hands the steps after it
to another thread, and the stuck one is skipped (and counted) until it returns.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from agent.supervise import SUPERVISOR

log = logging.getLogger(__name__)


class Step:
    """One function a round runs; it runs on one thread at a time (its lock says it is busy).

    A step that is not `exclusive` runs even while an earlier run of it hangs: it knows what to
    do beside that run (the GPU sampler reads the GPUs it is not stuck on).
    """

    def __init__(self, name: str, run: Callable[[], None], exclusive: bool = True) -> None:
        self.name, self.run, self.exclusive = name, run, exclusive
        self.busy = threading.Lock()
        self.retired = False  # removed (a reload): a round already under way passes it by

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for a run in progress to end; False if it is still going."""
        if not self.exclusive:
            return True  # its runs are not waited for: a hung one is the step's own business
        if not self.busy.acquire(timeout=max(0.0, timeout)):
            return False
        self.busy.release()
        return True


class Hands:
    """Threads that run relay legs: an idle one is reused, else a new one is started.

    Only a step that hangs keeps a thread, and a busy step is never started twice, so there are
    at most as many threads as steps (and as the GPUs a reentrant GPU step is stuck on).
    """

    def __init__(self, name: str = "relay") -> None:
        self.name = name
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._count = 0

    def go(self, leg: Callable[[], None]) -> None:
        """Run `leg` on an idle thread, or on a new one."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                self._count += 1
                inbox = queue.SimpleQueue()
                name = f"{self.name}-{self._count}"
                threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(leg)

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            leg = inbox.get()
            try:
                leg()
            except Exception:  # a leg's own bug: counted and logged; this thread serves on
                if SUPERVISOR.count(self.name) == 1:
                    log.exception("%s: a leg failed", self.name)
            with self._lock:
                self._idle.append(inbox)


class Relay:
    """One round: runs its steps in order on a hand's thread, handing on past a hung one."""

    def __init__(self, steps: Sequence[Step], share: float, hands: Hands,
                 refused: Callable[[str], None]) -> None:  # fmt: skip
        self.steps, self.share, self.hands, self.refused = steps, share, hands, refused
        self.pos = 0  # the step running (or next to run); len(steps) when the round is through
        self.due = 0.0  # when the running step's share is up (monotonic)
        self.leg = 0  # which hand runs the round now; an earlier one stops after its step
        self._cond = threading.Condition()

    @property
    def clean(self) -> bool:
        """True while no step has been left running on a thread of its own."""
        return self.leg == 1

    def run(self) -> None:
        """Start the steps; return when the last is done or the one running overran its share."""
        with self._cond:
            self._hand_on(0)
            while self.pos < len(self.steps):
                left = self.due - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                else:
                    self._hand_on(self.pos + 1)  # the step hangs: its thread keeps it

    def _hand_on(self, start: int) -> None:
        """Give the steps from `start` on to a new leg (called holding the condition)."""
        self.leg += 1
        self.pos, self.due = start, time.monotonic() + self.share
        if start < len(self.steps):
            leg = self.leg
            self.hands.go(lambda: self._run_leg(leg, start))

    def _run_leg(self, leg: int, pos: int) -> None:
        """Run steps from `pos` until the round is through or another leg took it over."""
        while True:
            with self._cond:
                if leg != self.leg:
                    return  # the round went on without this thread while its step ran
                pos = self._claim(pos)
                self.pos, self.due = pos, time.monotonic() + self.share
                if pos >= len(self.steps):
                    self._cond.notify()
                    return
            step = self.steps[pos]
            try:
                step.run()
            finally:
                if step.exclusive:
                    step.busy.release()
            pos += 1

    def _claim(self, pos: int) -> int:
        """Mark busy the first step from `pos` that is free; return it (len(steps) if none)."""
        while pos < len(self.steps):
            step = self.steps[pos]
            if not step.retired and (not step.exclusive or step.busy.acquire(blocking=False)):
                return pos
            if not step.retired:
                self.refused(step.name)  # still running from an earlier round
            pos += 1
        return pos
