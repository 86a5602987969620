"""The round loop: samplers in order, then rule groups, then tasks; failures, overruns, timeouts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from agent.jobs import Job, grid_start
from agent.loop import DEADLINE, RoundLoop
from agent.store import MetricInfo, Sample, SeriesStore, sample
from agent.supervise import SUPERVISOR
from tests.conftest import wait_for


class Fake:
    metrics: ClassVar[dict[str, MetricInfo]] = {}

    def __init__(self, name: str, fail: bool = False, sleep: float = 0.0,
                 blocking: bool = False, log: list[str] | None = None) -> None:  # fmt: skip
        self.name, self.fail, self.sleep, self.blocking = name, fail, sleep, blocking
        self.log = log if log is not None else []
        self.runs: list[float] = []
        self.active = self.max_active = 0
        self.closed = False
        self._lock = threading.Lock()

    def sample(self, now: float) -> Iterator[Sample]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        self.runs.append(now)
        self.log.append(self.name)
        try:
            time.sleep(self.sleep)
            if self.fail:
                raise OSError("device vanished")
            yield sample(f"{self.name}_value", float(len(self.runs)))
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


def current(store: SeriesStore) -> dict[tuple[str, str], float]:
    return {(n, dict(lab).get("sampler", "")): v for n, lab, v in store.current()}


def test_one_failing_sampler_never_stops_the_others() -> None:
    store = SeriesStore()
    good, bad = Fake("good"), Fake("bad", fail=True)
    loop = RoundLoop(store, 1.0)
    loop.add([bad, good])
    before = SUPERVISOR.failures["job:bad"]
    loop.run_round(1.0)
    loop.run_round(2.0)
    assert SUPERVISOR.failures["job:bad"] == before + 2, "counted as component failures too"
    got = current(store)
    assert got[("good_value", "")] == 2.0
    assert ("bad_value", "") not in got
    assert got[("dsagent_sampler_success", "good")] == 1.0
    assert got[("dsagent_sampler_success", "bad")] == 0.0
    assert got[("dsagent_sampler_errors_total", "bad")] == 2.0


def test_a_round_runs_its_samplers_in_order_then_the_groups_then_the_tasks() -> None:
    store, log = SeriesStore(), []
    loop = RoundLoop(store, 1.0)
    loop.add([Fake("a", log=log), Fake("b", log=log)])
    seen: list[float | None] = []

    def group(ts: float) -> list[Sample]:
        log.append("rules")
        newest = store.newest(store.select("b_value")[0], 0.0, ts)
        seen.append(newest[0] if newest else None)
        return [sample("ALERTS", 1.0, alertname="x")]

    loop.set_groups([Job("rules:g", group, {}, 1.0, on_tick=True)])
    loop.every("task", 1.0, lambda now: log.append("task"))
    loop.run_round(5.0)
    assert log == ["a", "b", "rules", "task"]
    assert seen == [5.0], "the group reads what this round's samplers stored, at the round's time"
    assert current(store)[("dsagent_sampler_success", "rules:g")] == 1.0


def test_a_group_on_a_longer_interval_runs_on_its_own_grid_and_keeps_it_on_reload() -> None:
    loop, runs = RoundLoop(SeriesStore(), 1.0), []
    slow = Job("rules:slow", lambda ts: runs.append(ts) or [], {}, 5.0, on_tick=True)
    loop.set_groups([slow])
    for tick in range(100, 107):
        loop.run_round(float(tick))
        if tick == 102:  # a reload with the same group: its next run stays at 105
            loop.set_groups([Job("rules:slow", lambda ts: runs.append(ts) or [], {}, 5.0,
                                 on_tick=True)])  # fmt: skip
    assert runs == [100.0, 105.0]


def test_lateness_is_the_time_since_the_round_was_due() -> None:
    store = SeriesStore()
    loop = RoundLoop(store, 1.0)
    loop.add([Fake("slow", sleep=0.3), Fake("after")])
    tick = time.time()
    loop.run_round(tick)
    got = current(store)
    assert got[("dsagent_sampler_lateness_seconds", "slow")] < 0.1
    late = got[("dsagent_sampler_lateness_seconds", "after")]
    assert 0.3 <= late < 0.6, f"started after the slow one: 0.3 s late, not {late}"
    loop.run_round(time.time() + 5)  # a round not due yet: never negative
    assert current(store)[("dsagent_sampler_lateness_seconds", "slow")] == 0.0


def test_a_blocking_sampler_past_the_deadline_is_counted_and_stored_late() -> None:
    store = SeriesStore()
    loop = RoundLoop(store, 0.5)
    hung, quick = Fake("hung", sleep=0.7, blocking=True), Fake("quick")
    loop.add([hung, quick])
    tick = time.time()
    began = time.monotonic()
    loop.run_round(tick)
    assert time.monotonic() - began < DEADLINE * 0.5 + 0.1, "it stops waiting at its deadline"
    got = current(store)
    assert got[("dsagent_sampler_timeouts_total", "hung")] == 1.0
    assert got[("quick_value", "")] == 1.0
    assert ("hung_value", "") not in got
    loop.run_round(tick + 0.5)  # still going: skipped, not stacked
    assert hung.max_active == 1
    assert current(store)[("dsagent_sampler_skipped_total", "hung")] == 1.0
    time.sleep(0.4)
    loop.run_round(tick + 1.0)  # done now: its late answer is stored, and a new run starts
    newest = store.newest(store.select("hung_value")[0], 0.0, tick + 2)
    assert newest is not None and newest[0] == tick, "stored with the round it began in"
    assert len(hung.runs) == 2
    loop.stop()


def test_a_removed_sampler_is_not_run_again_and_is_closed() -> None:
    loop = RoundLoop(SeriesStore(), 1.0)
    keep, gone = Fake("keep"), Fake("gone")
    loop.add([keep, gone])
    loop.run_round(1.0)
    loop.remove([gone])
    assert gone.closed, "not running: closed at once"
    loop.run_round(2.0)
    assert len(gone.runs) == 1 and len(keep.runs) == 2


@pytest.mark.integration  # the real loop, on the real clock
def test_real_rounds_land_on_the_grid_without_drift() -> None:
    tick = Fake("tick")
    loop = RoundLoop(SeriesStore(), 1.0)
    loop.add([tick])
    loop.start()
    try:
        wait_for(lambda: len(tick.runs) >= 4, timeout=10, what="four runs")
    finally:
        loop.stop()
    assert tick.closed, "stop closes the samplers"
    first = tick.runs[0]
    offsets = [run - first - i for i, run in enumerate(tick.runs[:4])]
    assert all(abs(o) < 0.25 for o in offsets), offsets
    assert all(abs(r - round(r)) < 0.25 for r in tick.runs), "runs sit on whole seconds"


@pytest.mark.integration
def test_an_overrunning_round_skips_the_points_it_missed_and_counts_them() -> None:
    store = SeriesStore()
    slow = Fake("slow", sleep=1.2)
    loop = RoundLoop(store, 0.5)
    loop.add([slow])
    loop.start()
    try:
        wait_for(lambda: current(store).get(("dsagent_sampler_skipped_total", "slow"), 0) >= 4,
                 timeout=10, what="skips")  # fmt: skip
    finally:
        loop.stop()
    assert slow.max_active == 1, "rounds never overlap"
    gaps = [b - a for a, b in zip(slow.runs, slow.runs[1:], strict=False)]
    assert all(g >= 1.2 for g in gaps), gaps


@pytest.mark.parametrize("every", [1.0, 0.2, 7.5])
def test_grid_points_are_multiples_of_the_interval(every: float) -> None:
    start = grid_start(1_765_000_000.123, every)
    assert start >= 1_765_000_000.123
    assert abs(start / every - round(start / every)) < 1e-6


@pytest.mark.integration
def test_a_step_back_of_the_wall_clock_does_not_stop_the_rounds_or_the_tasks() -> None:
    step = [0.0]
    tick, beats = Fake("tick"), []
    loop = RoundLoop(SeriesStore(), 0.2)
    loop.now = lambda: time.time() + step[0]
    loop.add([tick])
    loop.every("watchdog", 0.2, beats.append)
    loop.start()
    try:
        wait_for(lambda: len(tick.runs) >= 2, 5, "rounds")
        step[0] = -3600.0  # the wall clock set back an hour
        runs, pings = len(tick.runs), len(beats)
        wait_for(lambda: len(tick.runs) >= runs + 3, 5, "rounds after the step")
        assert len(beats) >= pings + 3, "the watchdog goes on too"
        assert tick.runs[-1] < tick.runs[0] - 3000, "the grid followed the clock"
    finally:
        loop.stop()


def test_a_failure_is_logged_once_and_so_is_the_recovery(caplog: pytest.LogCaptureFixture) -> None:
    store = SeriesStore()
    flaky = Fake("flaky", fail=True)
    loop = RoundLoop(store, 1.0)
    loop.add([flaky])
    with caplog.at_level("INFO", logger="agent.loop"):
        for tick in (1.0, 2.0, 3.0):
            loop.run_round(tick)
        flaky.fail = False
        loop.run_round(4.0)
        loop.run_round(5.0)
        flaky.fail = True
        loop.run_round(6.0)
    said = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert said == [
        ("ERROR", "flaky failed; its series are missing until it recovers", True),
        ("INFO", "flaky recovered", False),
        ("ERROR", "flaky failed; its series are missing until it recovers", True),
    ]
    assert current(store)[("dsagent_sampler_errors_total", "flaky")] == 4.0


def test_a_blocking_sampler_that_raises_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SeriesStore()
    loop = RoundLoop(store, 1.0)
    loop.add([Fake("probe", fail=True, blocking=True)])
    with caplog.at_level("ERROR", logger="agent.loop"):
        loop.run_round(time.time())
    got = current(store)
    assert got[("dsagent_sampler_success", "probe")] == 0.0
    assert got[("dsagent_sampler_errors_total", "probe")] == 1.0
    assert got[("dsagent_sampler_timeouts_total", "probe")] == 0.0
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("device vanished",)]
    loop.stop()


def test_a_hung_blocking_sampler_counts_each_timeout_and_each_skip() -> None:
    store = SeriesStore()
    loop = RoundLoop(store, 0.2)
    hung = Fake("hung", sleep=1.0, blocking=True)
    loop.add([hung])
    tick = time.time()
    loop.run_round(tick)  # starts, times out
    for n in range(1, 3):  # still going: skipped, and its health says so
        loop.run_round(tick + 0.2 * n)
    got = current(store)
    assert got[("dsagent_sampler_timeouts_total", "hung")] == 1.0
    assert got[("dsagent_sampler_skipped_total", "hung")] == 2.0
    assert got[("dsagent_sampler_success", "hung")] == 0.0
    assert got[("dsagent_sampler_duration_seconds", "hung")] >= 0.15, "how long it has run"
    time.sleep(1.0)
    loop.run_round(tick + 1.2)  # its answer is in (stored late), and a new run starts
    assert current(store)[("hung_value", "")] == 1.0
    newest = store.newest(store.select("hung_value")[0], 0.0, tick + 9)
    assert newest is not None and newest[0] == tick, "stored with the round it began in"
    assert current(store)[("dsagent_sampler_timeouts_total", "hung")] == 2.0, "the new run's"
    time.sleep(1.1)
    loop.run_round(tick + 2.4)
    assert current(store)[("hung_value", "")] == 2.0
    loop.stop()


def test_the_blocking_samplers_run_before_the_rest_not_beside_them() -> None:
    loop, spans = RoundLoop(SeriesStore(), 1.0), {}

    class Timed(Fake):
        def sample(self, now: float) -> Iterator[Sample]:
            began = time.monotonic()
            yield from super().sample(now)
            spans[self.name] = (began, time.monotonic())

    loop.add([Timed("inline"), Timed("probe", sleep=0.1, blocking=True)])
    loop.run_round(time.time())
    assert spans["inline"][0] >= spans["probe"][1], spans
    loop.stop()


def test_samplers_get_the_wall_clock_groups_the_rounds_time_tasks_their_interval() -> None:
    store, calls = SeriesStore(), []
    loop = RoundLoop(store, 1.0, on_round=lambda tick: calls.append(("round", tick)))
    wall = Fake("wall")
    loop.add([wall])
    loop.set_groups([Job("rules:g", lambda ts: calls.append(("group", ts)) or [], {}, 1.0,
                         on_tick=True)])  # fmt: skip
    loop.every("slow", 3600.0, lambda now: calls.append(("task", now)))
    loop.every("fast", 0.0, lambda now: calls.append(("fast", now)))
    before = time.time()
    loop.run_round(100.0)
    loop.run_round(101.0)
    assert wall.runs[0] >= before, "a sampler is handed the wall clock, not the round"
    assert [c for c in calls if c[0] in ("group", "round")] == [
        ("group", 100.0), ("round", 100.0), ("group", 101.0), ("round", 101.0)]  # fmt: skip
    assert [c[0] for c in calls].count("task") == 1, "an hourly task ran once"
    assert [c[0] for c in calls].count("fast") == 2
    assert all(now >= before for name, now in calls if name in ("task", "fast"))


def test_a_sampler_removed_while_the_loop_runs_is_closed_after_its_round() -> None:
    loop = RoundLoop(SeriesStore(), 1.0)
    gone = Fake("gone")
    loop.add([gone])
    loop.running = True  # as between rounds of a started loop
    loop.remove([gone])
    assert not gone.closed, "a round may still hold it"
    loop.run_round(1.0)
    assert gone.closed and not gone.runs
    loop.running = False


def test_the_tether_reuses_an_idle_thread_and_starts_one_beside_a_hung_call() -> None:
    from agent.tether import Tether

    tether = Tether("t")
    first = tether.submit(threading.current_thread)
    assert first.wait(5) and first.result is not None
    again = tether.submit(threading.current_thread)
    assert again.wait(5) and again.result is first.result, "the idle thread took it"
    assert again.result.name == "t-1" and again.result.daemon
    release = threading.Event()
    hung = tether.submit(release.wait)
    beside = tether.submit(threading.current_thread)
    assert beside.wait(5) and beside.result is not None and beside.result.name == "t-2"
    assert not hung.done.is_set()
    failing = tether.submit(lambda: 1 / 0)
    assert failing.wait(5) and isinstance(failing.error, ZeroDivisionError)
    assert failing.result is None
    release.set()
    assert hung.wait(5) and hung.result is True and hung.error is None
    tether.close()
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name in ("t-1", "t-2")], "closed"


def test_stop_cuts_the_wait_between_rounds_short_and_frees_it() -> None:
    """The loop sleeps between rounds in an epoll wait that stop() ends at once."""
    loop = RoundLoop(SeriesStore(), interval=30.0)
    loop.start()
    time.sleep(0.2)  # asleep until the next 30 s grid point
    began = time.monotonic()
    loop.stop()
    assert time.monotonic() - began < 1.0 and loop.thread is not None
    assert not loop.thread.is_alive()
    loop.stop()  # a second stop wakes nothing (the descriptors are gone)
