"""The benchmarks' CPU clock: ns per thread while no time goes missing, else ticks."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bench.common import CpuClock, thread_cpu_ns

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/task"), reason="needs Linux /proc"
)


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_clock_counts_the_cpu_of_the_live_threads_to_the_ns() -> None:
    clock = CpuClock(os.getpid())
    burn(0.1)
    used = clock.seconds()
    assert clock.precise
    assert 0.1 <= used < 5.0  # at least this thread's burn; a loose ceiling only
    assert threading.get_native_id() in thread_cpu_ns(os.getpid())


def gone(worker: threading.Thread) -> None:
    """Wait until the kernel has reaped a joined thread (join returns a moment before)."""
    task = f"/proc/{os.getpid()}/task/{worker.native_id}"
    deadline = time.monotonic() + 5
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_thread_that_ends_during_the_run_sends_the_clock_back_to_ticks() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    clock = CpuClock(os.getpid())  # the worker is alive when the clock starts
    stop.set()
    worker.join()
    gone(worker)
    clock.seconds()
    assert not clock.precise


def test_time_lost_with_a_thread_born_and_ended_in_the_run_is_noticed() -> None:
    clock = CpuClock(os.getpid())
    worker = threading.Thread(target=burn, args=(0.2,))
    worker.start()
    worker.join()  # its 0.2 s left schedstat with it; the process's ticks still hold it
    gone(worker)
    used = clock.seconds()
    assert not clock.precise and used >= 0.18
