"""The scheduler: isolation of failing samplers, overruns, and no drift."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from agent.clock import Beat
from agent.runner import SamplerRunner, grid_start
from agent.store import MetricInfo, Sample, SeriesStore, sample
from agent.supervise import SUPERVISOR
from tests.conftest import wait_for


class Fake:
    metrics: ClassVar[dict[str, MetricInfo]] = {}

    def __init__(self, name: str, fail: bool = False, sleep: float = 0.0) -> None:
        self.name, self.fail, self.sleep = name, fail, sleep
        self.runs: list[float] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def sample(self, now: float) -> Iterator[Sample]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.runs.append(now)
        try:
            time.sleep(self.sleep)
            if self.fail:
                raise OSError("device vanished")
            yield sample(f"{self.name}_value", 1.0)
        finally:
            with self._lock:
                self.active -= 1


def current(store: SeriesStore) -> dict[tuple[str, str], float]:
    return {(n, dict(lab).get("sampler", "")): v for n, lab, v in store.current()}


def test_one_failing_sampler_never_stops_the_others() -> None:
    store = SeriesStore()
    good, bad = Fake("good"), Fake("bad", fail=True)
    runner = SamplerRunner(store)
    before = SUPERVISOR.failures["job:bad"]
    runner.run_once(good, at=1.0)
    runner.run_once(bad, at=1.0)
    runner.run_once(bad, at=2.0)  # the next round
    assert SUPERVISOR.failures["job:bad"] == before + 2, "counted as component failures too"
    got = current(store)
    assert got[("good_value", "")] == 1.0
    assert ("bad_value", "") not in got
    assert got[("dsagent_sampler_success", "good")] == 1.0
    assert got[("dsagent_sampler_success", "bad")] == 0.0
    assert got[("dsagent_sampler_errors_total", "bad")] == 2.0


@pytest.mark.integration  # the real scheduler, on the real clock
def test_overrunning_sampler_is_skipped_and_counted_never_stacked() -> None:
    store = SeriesStore()
    slow = Fake("slow", sleep=2.5)
    runner = SamplerRunner(store)
    runner.schedule([slow], 1.0)
    runner.start()
    try:
        wait_for(lambda: runner.skipped["slow"] >= 2, timeout=10, what="skips")
    finally:
        runner.stop()
    assert slow.max_active == 1
    assert len(slow.runs) <= 3


@pytest.mark.parametrize("every", [1.0, 0.2, 7.5])
def test_the_clock_stays_on_the_grid_for_a_day(every: float) -> None:
    start = grid_start(time.time(), 1.0)
    beat = Beat("round", start, every, lambda: None)
    for _ in range(int(86_400 / every)):  # woken right at each point, as the clock is
        assert beat.advance(beat.due) == 0
    assert beat.due == pytest.approx(start + 86_400, abs=1e-6)
    assert beat.point_at(start + 86_400 - 1e-3) == int(86_400 / every) - 1


@pytest.mark.integration  # the real scheduler, on the real clock
def test_real_runs_land_on_the_grid_without_accumulating_lateness() -> None:
    store = SeriesStore()
    tick = Fake("tick")
    runner = SamplerRunner(store)
    runner.schedule([tick], 1.0)
    runner.start()
    try:
        wait_for(lambda: len(tick.runs) >= 6, timeout=12, what="six runs")
    finally:
        runner.stop()
    first = tick.runs[0]
    offsets = [run - first - i for i, run in enumerate(tick.runs[:6])]
    # Each run starts within a quarter second of its slot on the 1 s grid: no drift builds up.
    assert all(abs(o) < 0.25 for o in offsets), offsets
    assert all(abs(r - round(r)) < 0.25 for r in tick.runs), "runs sit on whole seconds"


def test_lateness_is_the_time_since_the_round_was_due() -> None:
    store = SeriesStore()
    runner = SamplerRunner(store)
    late = Fake("late")
    runner._slot["late"] = time.time() - 0.6  # its round was due 0.6 s ago (others ran first)
    runner.run_once(late)
    got = current(store)[("dsagent_sampler_lateness_seconds", "late")]
    assert 0.6 <= got < 1.0, f"0.6 s late, not {got} (a remainder of half an interval says 0.1)"
    on_time = Fake("on_time")
    runner._slot["on_time"] = time.time() + 5  # not due yet: never negative
    runner.run_once(on_time)
    assert current(store)[("dsagent_sampler_lateness_seconds", "on_time")] == 0.0
