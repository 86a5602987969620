"""The round clock: runs on the grid, missed points counted, a failing job, stop, clock steps."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import pytest

from agent.clock import Clock
from agent.supervise import SUPERVISOR
from tests.conftest import wait_for

EVERY = 0.2


def test_runs_land_on_their_grid_points() -> None:
    runs: list[float] = []
    clock = Clock(lambda name, n: None, "clock-grid")
    start = time.time() + 0.05
    clock.add("a", EVERY, start, lambda: runs.append(time.time()))
    clock.start()
    try:
        wait_for(lambda: len(runs) >= 5, 5, "five runs")
    finally:
        clock.stop()
    points = [(t - start) / EVERY for t in runs[:5]]
    assert [math.floor(p) for p in points] == [0, 1, 2, 3, 4], points
    assert all(p - math.floor(p) < 0.5 for p in points), "each run starts soon after its point"


def test_a_held_up_clock_reports_the_points_it_missed_and_runs_the_latest() -> None:
    missed: Counter[str] = Counter()
    runs: list[float] = []

    def job() -> None:
        runs.append(time.time())
        if len(runs) == 2:
            time.sleep(4.5 * EVERY)  # holds the clock's thread past four more points

    clock = Clock(lambda name, n: missed.update({name: n}), "clock-held")
    start = time.time() + 0.05
    clock.add("a", EVERY, start, job)
    clock.start()
    try:
        wait_for(lambda: len(runs) >= 5, 5, "five runs")
    finally:
        clock.stop()
    indexes = [math.floor((t - start) / EVERY) for t in runs[:5]]
    assert missed["a"] >= 3, (missed, indexes)
    # Every grid point up to the last run was either run or reported: none lost, none twice.
    assert len(set(indexes)) == 5
    assert 5 + missed["a"] in (indexes[-1] + 1, indexes[-1] + 2), (missed, indexes)


def test_a_job_that_raises_is_counted_and_the_clock_goes_on() -> None:
    before = SUPERVISOR.failures["clock-raise"]
    runs: list[float] = []

    def boom() -> None:
        raise RuntimeError("boom")

    clock = Clock(lambda name, n: None, "clock-raise")
    clock.add("boom", EVERY, time.time(), boom)
    clock.add("ok", EVERY, time.time(), lambda: runs.append(time.time()))
    clock.start()
    try:
        wait_for(lambda: len(runs) >= 3, 5, "the other job's runs")
    finally:
        clock.stop()
    assert SUPERVISOR.failures["clock-raise"] >= before + 3


def test_stop_ends_a_long_wait_at_once() -> None:
    clock = Clock(lambda name, n: None, "clock-stop")
    clock.add("hourly", 3600.0, time.time() + 1800, lambda: None)
    clock.start()
    time.sleep(0.1)
    began = time.monotonic()
    clock.stop()
    assert clock.thread is not None
    clock.thread.join(2)
    assert not clock.thread.is_alive() and time.monotonic() - began < 1


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
def test_a_step_of_the_wall_clock_does_not_stop_the_rounds(step: float) -> None:
    offset = [0.0]
    runs: list[float] = []
    clock = Clock(lambda name, n: None, "clock-step", now=lambda: time.time() + offset[0])
    clock.add("a", EVERY, time.time(), lambda: runs.append(time.monotonic()))
    clock.start()
    try:
        wait_for(lambda: len(runs) >= 2, 5, "runs before the step")
        offset[0] = step  # NTP set the clock back (or on) an hour
        stepped = len(runs)
        wait_for(lambda: len(runs) >= stepped + 3, 5, "runs after the step")
    finally:
        clock.stop()
    gaps = [b - a for a, b in zip(runs[stepped:], runs[stepped + 1 :], strict=False)]
    assert all(g > EVERY / 2 for g in gaps), "after the step, runs are an interval apart again"


def test_missed_points_are_reported_without_the_clock_held() -> None:
    """The runner counts them under its own lock, which a reload holds while removing a job."""
    blocked: list[bool] = []
    runs: list[float] = []
    clock: Clock

    def missed(name: str, n: int) -> None:
        other = threading.Thread(target=clock.remove, args=("other",))  # as a reload would
        other.start()
        other.join(2)
        blocked.append(other.is_alive())

    def job() -> None:
        runs.append(time.time())
        if len(runs) == 1:
            time.sleep(3 * EVERY)  # past two more points

    clock = Clock(missed, "clock-report")
    clock.add("a", EVERY, time.time() + 0.05, job)
    clock.add("other", 3600.0, time.time() + 1800, lambda: None)
    clock.start()
    try:
        wait_for(lambda: bool(blocked), 10, "the missed points' report")
    finally:
        clock.stop()
    assert blocked == [False], "the clock's lock was held while reporting"
    assert "other" not in clock
