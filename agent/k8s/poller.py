"""Ask something on a thread of its own every interval; on failure count why and back off."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

log = logging.getLogger(__name__)


class Poller:
    """Calls `ask` every interval; a failure is counted by reason, and waits double to a cap."""

    what = "poll"  # names the thread and the log lines

    def __init__(self, interval: float, max_backoff: float) -> None:
        self.interval, self.max_backoff = interval, max_backoff
        self.up = False
        self.errors: Counter[str] = Counter()
        self.last_seconds = 0.0  # how long the latest ask took
        self._backoff = interval
        self._first = 0.0  # the wait after the ask start() makes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.what, daemon=True)

    def ask(self) -> None:
        """Ask once; raise on failure."""
        raise NotImplementedError

    def reason(self, exc: Exception) -> str:
        """Return a short label for a failure."""
        return type(exc).__name__.lower()

    def describe(self, exc: Exception) -> str:
        """Return the failure in one line for the log."""
        return str(exc)

    def refresh(self) -> float:
        """Ask once; return the wait before the next ask."""
        began = time.monotonic()
        try:
            self.ask()
        except Exception as exc:  # any failure is counted and retried, never the thread's end
            return self._failed(exc)
        finally:
            self.last_seconds = time.monotonic() - began
        if not self.up:
            log.info("%s: answering", self.what)
        self.up, self._backoff = True, self.interval
        return self.interval

    def _failed(self, exc: Exception) -> float:
        reason = self.reason(exc)
        self.errors[reason] += 1
        if self.up or sum(self.errors.values()) == 1:  # once per outage, not once per try
            log.warning("%s: %s (%s); keeping what it said last", self.what, reason,
                        self.describe(exc))  # fmt: skip
        self.up = False
        self._backoff = min(self._backoff * 2, self.max_backoff)
        return self._backoff

    def start(self) -> None:
        """Ask once now, on the caller's thread, then every interval on a thread of its own.

        The first answer is in before the samplers' first round: a reload, which builds the
        samplers anew, never shows a round of GPU series without their pod labels (a label set
        that changes resolves and re-fires an alert).
        """
        self._first = self.refresh()
        self._thread.start()

    def _loop(self) -> None:
        wait = self._first
        while not self._stop.wait(wait):
            wait = self.refresh()

    def close(self) -> None:
        """Stop asking."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)
