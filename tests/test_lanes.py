"""Lanes: one thread per sampler, a kick per round, an overrun refused, a failure restarted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

from agent.lanes import Lane
from agent.runner import SamplerRunner
from agent.store import MetricInfo, Sample, SeriesStore
from agent.supervise import SUPERVISOR
from tests.conftest import wait_for


def test_a_kick_while_the_last_run_is_unfinished_is_refused() -> None:
    release, started, runs = threading.Event(), threading.Event(), []

    def run() -> None:
        runs.append(time.monotonic())
        started.set()
        release.wait(5)

    lane = Lane("slow", run)
    try:
        assert lane.kick()
        assert started.wait(5)
        assert not lane.kick(), "the run in progress makes a second kick an overrun"
        release.set()
        wait_for(lane.kick, timeout=5, what="the lane free again")
        wait_for(lambda: len(runs) == 2, timeout=5, what="the second run")
    finally:
        release.set()
        lane.close()


def test_a_closed_lane_runs_no_more() -> None:
    runs: list[int] = []
    lane = Lane("x", lambda: runs.append(1))
    lane.close()
    assert not lane.kick()
    time.sleep(0.1)
    assert runs == []


def test_a_lane_that_raises_is_counted_and_keeps_running() -> None:
    calls: list[int] = []

    def run() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")

    before = SUPERVISOR.failures["lane:flaky"]
    SUPERVISOR.first_delay, saved = 0.01, SUPERVISOR.first_delay
    lane = Lane("flaky", run)
    try:
        lane.kick()
        wait_for(lambda: SUPERVISOR.failures["lane:flaky"] == before + 1, timeout=5, what="count")
        wait_for(lane.kick, timeout=5, what="the restarted lane taking a kick")
        wait_for(lambda: len(calls) == 2, timeout=5, what="a run after the restart")
    finally:
        SUPERVISOR.first_delay = saved
        lane.close()


class Tick:
    metrics: ClassVar[dict[str, MetricInfo]] = {}

    def __init__(self, name: str) -> None:
        self.name, self.runs = name, 0

    def sample(self, now: float) -> Iterator[Sample]:
        self.runs += 1
        yield from ()


def test_a_round_kicks_its_lanes_and_a_removed_sampler_is_not_run() -> None:
    runner = SamplerRunner(SeriesStore())
    a, b = Tick("a"), Tick("b")
    runner.schedule([a, b], 1.0)
    try:
        runner._round("round:1", 1.0)
        wait_for(lambda: a.runs == 1 and b.runs == 1, timeout=5, what="one run each")
        runner.remove([b])
        runner._round("round:1", 1.0)
        wait_for(lambda: a.runs == 2, timeout=5, what="a's second run")
        time.sleep(0.1)
        assert b.runs == 1 and "b" not in runner.lanes
    finally:
        runner.stop()


def test_a_missed_round_counts_a_skip_for_each_of_its_lanes_and_a_timer_for_itself() -> None:
    from apscheduler.events import EVENT_JOB_MISSED, JobEvent

    runner = SamplerRunner(SeriesStore())
    runner.schedule([Tick("a"), Tick("b")], 1.0)
    try:
        runner._on_skip(JobEvent(EVENT_JOB_MISSED, "round:1", "default"))
        runner._on_skip(JobEvent(EVENT_JOB_MISSED, "rules", "default"))
    finally:
        runner.stop()
    assert dict(runner.skipped) == {"a": 1, "b": 1, "rules": 1}


class Timed:
    metrics: ClassVar[dict[str, MetricInfo]] = {}

    def __init__(self, name: str, sleep: float) -> None:
        self.name, self.sleep = name, sleep
        self.spans: list[tuple[float, float]] = []

    def sample(self, now: float) -> Iterator[Sample]:
        began = time.monotonic()
        time.sleep(self.sleep)
        self.spans.append((began, time.monotonic()))
        yield from ()


def test_a_round_runs_its_lanes_one_after_another_then_the_fallback() -> None:
    runner = SamplerRunner(SeriesStore())
    a, b = Timed("a", 0.05), Timed("b", 0.05)
    rounds: list[tuple[float, float]] = []
    runner.after_round = lambda tick: rounds.append((tick, time.monotonic()))
    runner.schedule([a, b], 1.0)
    try:
        runner._round("round:1", 1.0)
        wait_for(lambda: a.spans and b.spans, timeout=5, what="one run each")
    finally:
        runner.stop()
    assert b.spans[0][0] >= a.spans[0][1], "b starts once a is done: no fight for the GIL"
    assert len(rounds) == 1 and rounds[0][1] >= b.spans[0][1], "the fallback comes after both"


def test_a_hung_lane_delays_the_next_only_by_its_share() -> None:
    runner = SamplerRunner(SeriesStore())
    hung, b = Timed("hung", 2.0), Timed("b", 0.0)
    rounds: list[float] = []
    runner.after_round = lambda tick: rounds.append(time.monotonic())
    runner.schedule([hung, b], 1.0)
    began = time.monotonic()
    try:
        runner._round("round:1", 1.0)
        wait_for(lambda: b.spans, timeout=5, what="b's run")
    finally:
        runner.stop()
    assert b.spans[0][0] - began < 0.125 + 0.1, "a quarter round shared by two lanes"
    assert len(rounds) == 1 and rounds[0] - began < 0.5 + 0.2, "the fallback waits half a round"
    assert not hung.spans, "the hung lane was still running when the round ended"


class Memory(Tick):
    in_memory = True

    def sample(self, now: float) -> Iterator[Sample]:
        self.runs += 1
        self.thread = threading.current_thread()
        yield Sample("memory_value", float(self.runs))


def test_an_in_memory_sampler_runs_on_the_round_thread_without_a_lane() -> None:
    store = SeriesStore()
    runner = SamplerRunner(store)
    mem, lane = Memory("mem"), Tick("lane")
    runner.schedule([mem, lane], 1.0)
    try:
        runner._round("round:1", 1.0)
        assert mem.runs == 1 and mem.thread is threading.current_thread()
        assert "mem" not in runner.lanes and "lane" in runner.lanes
        assert [s.name for s in store.select("memory_value")], "its samples reach the store"
        runner.remove([mem])
        runner._round("round:1", 1.0)
        assert mem.runs == 1, "a removed one runs no more"
    finally:
        runner.stop()


def test_a_lane_still_running_is_skipped_and_counted_and_the_chain_goes_on() -> None:
    runner = SamplerRunner(SeriesStore())
    hung, b = Timed("hung", 1.5), Timed("b", 0.0)
    runner.schedule([hung, b], 1.0)
    try:
        runner._round("round:1", 1.0)  # hung overruns its share; b goes after the share
        wait_for(lambda: len(b.spans) == 1, timeout=5, what="b's first run")
        runner._round("round:1", 1.0)  # hung is still running: refused, and b goes at once
        wait_for(lambda: len(b.spans) == 2, timeout=5, what="b's second run")
        assert runner.skipped["hung"] == 1 and not runner.skipped["b"]
        wait_for(lambda: len(hung.spans) == 1, timeout=5, what="the hung run's end")
        time.sleep(0.1)
        assert len(b.spans) == 2, "the late end of a lane kicks nothing: its round moved on"
    finally:
        runner.stop()
