"""Calls that may hang run on threads of their owner: a hung call keeps its thread, no one waits."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Call(Generic[T]):
    """One call handed to a thread: its result or error once `done` is set."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.elapsed = 0.0  # how long it ran, once done

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds; True if the call has returned (or raised)."""
        return self.done.wait(max(0.0, timeout))

    def run(self) -> None:
        """Run the call, keeping what it returned or raised, and how long it took."""
        began = time.perf_counter()
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to whoever reads the call
            self.error = exc
        finally:
            self.elapsed = time.perf_counter() - began
            self.done.set()


class Tether:
    """Threads for one owner's calls: an idle thread takes the next, else a new one starts.

    A call that hangs keeps its thread until it returns; the next call gets another. So an owner
    whose calls seldom hang has one thread, and one more for each call hung at the time.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._idle: list[queue.SimpleQueue[Call[object] | None]] = []
        self._lock = threading.Lock()  # the idle list only: never held across a call
        self._started = 0
        self._closed = False

    def submit(self, fn: Callable[[], T]) -> Call[T]:
        """Run `fn` on an idle thread of this tether, or on a new one; return its call."""
        call: Call[T] = Call(fn)
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            if inbox is None:
                self._started += 1
                inbox = queue.SimpleQueue()
                name = f"{self.name}-{self._started}"
                threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(call)  # type: ignore[arg-type]
        return call

    def _serve(self, inbox: queue.SimpleQueue[Call[object] | None]) -> None:
        while (call := inbox.get()) is not None:
            call.run()
            if call.error is not None and not isinstance(call.error, Exception):
                return  # SystemExit and the like end the thread
            with self._lock:
                if self._closed:
                    return
                self._idle.append(inbox)

    def close(self) -> None:
        """End the idle threads; a call still running ends its thread when it returns."""
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for inbox in idle:
            inbox.put(None)
