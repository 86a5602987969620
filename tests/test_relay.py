"""Relay: a round's steps on one thread, a hung step left behind, an overrun refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import ClassVar

from agent.relay import Hands, Relay, Step
from agent.runner import SamplerRunner
from agent.store import MetricInfo, Sample, SeriesStore
from agent.supervise import SUPERVISOR
from tests.conftest import wait_for


def recorder(names: str, log: list[tuple[str, threading.Thread]]) -> list[Step]:
    """Steps that note their name and thread."""
    return [Step(n, lambda n=n: log.append((n, threading.current_thread()))) for n in names]


def test_a_round_runs_every_step_in_order_on_one_thread_of_its_own() -> None:
    log: list[tuple[str, threading.Thread]] = []
    hands = Hands("t-order")
    for _ in range(3):
        Relay(recorder("abc", log), 0.5, hands, lambda name: None).run()
    assert [n for n, _ in log] == list("abc" * 3), "run() returns once the last step is done"
    threads = {t for _, t in log}
    assert len(threads) == 1, "one thread runs the whole round, and the next rounds too"
    assert threading.current_thread() not in threads, "not the round's own thread"


def test_a_step_still_running_is_refused_and_the_round_goes_on() -> None:
    log: list[tuple[str, threading.Thread]] = []
    refused: list[str] = []
    a, b = recorder("ab", log)
    b.busy.acquire()  # b's run from an earlier round has not ended
    try:
        Relay([a, b, *recorder("c", log)], 0.5, Hands("t-busy"), refused.append).run()
    finally:
        b.busy.release()
    assert [n for n, _ in log] == ["a", "c"] and refused == ["b"]


def test_a_hung_step_keeps_its_thread_and_the_rest_go_on_another() -> None:
    log: list[tuple[str, threading.Thread]] = []
    gate = threading.Event()
    hung = Step("hung", lambda: (log.append(("hung", threading.current_thread())), gate.wait(5)))
    began = time.monotonic()
    Relay([hung, *recorder("ab", log)], 0.1, Hands("t-hung"), lambda name: None).run()
    assert time.monotonic() - began < 0.1 + 0.2, "the rest waited only for the hung one's share"
    assert [n for n, _ in log] == ["hung", "a", "b"]
    assert log[0][1] is not log[1][1] and log[1][1] is log[2][1]
    assert not hung.wait(0), "the hung step is still busy on its own thread"
    gate.set()
    assert hung.wait(5)
    time.sleep(0.1)
    assert len(log) == 3, "its thread's late end runs nothing: the round moved on"


def test_a_step_not_exclusive_runs_beside_its_own_hung_run() -> None:
    log: list[threading.Thread] = []
    refused: list[str] = []
    gate = threading.Event()
    step = Step("gpu", lambda: (log.append(threading.current_thread()), gate.wait(5)), False)
    hands = Hands("t-reentrant")
    try:
        for _ in range(2):  # the first run hangs; the next round runs it again, on another thread
            Relay([step], 0.05, hands, refused.append).run()
        assert len(log) == 2 and log[0] is not log[1] and refused == []
        assert step.wait(0), "nobody waits for it: a hung run is the step's own business"
    finally:
        gate.set()


def test_a_leg_that_raises_is_counted_and_its_thread_serves_on() -> None:
    hands = Hands("t-raise")
    before = SUPERVISOR.failures["t-raise"]
    ran = threading.Event()

    def boom() -> None:
        raise RuntimeError("boom")

    hands.go(boom)
    wait_for(lambda: SUPERVISOR.failures["t-raise"] == before + 1, timeout=5, what="the count")
    hands.go(ran.set)
    assert ran.wait(5), "the thread took the next leg"
    assert hands._count == 1, "and no second thread was needed"


class Tick:
    metrics: ClassVar[dict[str, MetricInfo]] = {}

    def __init__(self, name: str) -> None:
        self.name, self.runs = name, 0

    def sample(self, now: float) -> Iterator[Sample]:
        self.runs += 1
        yield from ()


def test_a_round_runs_its_samplers_and_a_removed_one_is_not_run() -> None:
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
        assert b.runs == 1 and "b" not in runner.steps
    finally:
        runner.stop()


class Reentrant:
    """A sampler whose first run hangs until let go, and whose runs may overlap."""

    metrics: ClassVar[dict[str, MetricInfo]] = {}
    name, reentrant = "gpu", True

    def __init__(self) -> None:
        self.gates = [threading.Event(), threading.Event()]
        self.runs = 0

    def sample(self, now: float) -> list[Sample]:
        run = self.runs
        self.runs += 1
        self.gates[run].wait(5)
        return [Sample("reading", float(run))]


def test_a_reentrant_samplers_late_run_is_dropped_and_the_later_one_stands() -> None:
    store = SeriesStore()
    runner = SamplerRunner(store)
    sampler = Reentrant()
    runner.add([sampler], 1.0)
    assert not runner.steps["gpu"].exclusive, "its step runs beside a hung run of its own"
    hung = threading.Thread(target=runner.run_once, args=(sampler, 1000.0))
    hung.start()
    wait_for(lambda: sampler.runs == 1, timeout=5, what="the first run under way")
    sampler.gates[1].set()
    runner.run_once(sampler, 1001.0)  # the next round's run, beside the hung one
    sampler.gates[0].set()
    hung.join(5)
    [series] = store.select("reading")
    assert list(zip(*store.window(series, 0, 2000), strict=True)) == [(1001.0, 1.0)]
    assert store.stats.out_of_order == 0, "the late answer was never offered to the store"


def test_rounds_the_clock_missed_count_a_skip_for_each_of_their_samplers() -> None:
    runner = SamplerRunner(SeriesStore())
    runner.schedule([Tick("a"), Tick("b"), Tick("slow")], 1.0, {"slow": 5.0})
    try:
        runner._missed("round:1", 2)
        runner._missed("round:5", 1)
    finally:
        runner.stop()
    assert dict(runner.skipped) == {"a": 2, "b": 2, "slow": 1}


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


def test_a_round_runs_its_samplers_one_after_another_then_the_fallback() -> None:
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


def test_a_hung_sampler_delays_the_next_only_by_its_share() -> None:
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
    assert b.spans[0][0] - began < 0.125 + 0.1, "a quarter round shared by two samplers"
    assert len(rounds) == 1 and rounds[0] - began < 0.5 + 0.2, "the fallback waits half a round"
    assert not hung.spans, "the hung sampler was still running when the round ended"


def test_a_sampler_still_running_is_skipped_and_counted_and_the_round_goes_on() -> None:
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
        assert len(b.spans) == 2, "the late end of a hung run runs nothing more: its round moved on"
    finally:
        runner.stop()


class Where(Tick):
    def __init__(self, name: str, log: list[tuple[str, threading.Thread]]) -> None:
        super().__init__(name)
        self.log = log

    def sample(self, now: float) -> Iterator[Sample]:
        self.log.append((self.name, threading.current_thread()))
        yield from ()


def test_the_base_round_releases_its_held_rule_groups_as_its_last_step() -> None:
    runner = SamplerRunner(SeriesStore())
    log: list[tuple[str, threading.Thread]] = []
    runner.hold = lambda: log.append(("hold", threading.current_thread()))
    runner.release = lambda: log.append(("release", threading.current_thread()))
    runner.schedule([Where("a", log), Where("b", log)], 1.0)
    try:
        runner._round("round:1", 1.0)
        runner._round("round:2", 2.0)  # another interval's round holds nothing
    finally:
        runner.stop()
    assert [n for n, _ in log] == ["hold", "a", "b", "release"]
    assert log[0][1] is threading.current_thread(), "held before the samplers start"
    assert log[1][1] is log[2][1] is log[3][1], "the groups run on the samplers' thread"


def test_a_sampler_removed_while_its_round_runs_is_passed_by_unrun_and_uncounted() -> None:
    runner = SamplerRunner(SeriesStore())
    log: list[tuple[str, threading.Thread]] = []
    b = Where("b", log)

    class Reloads(Where):
        def sample(self, now: float) -> Iterator[Sample]:
            runner.remove([b])  # a reload drops b (and closes it) while this round runs
            yield from super().sample(now)

    runner.schedule([Reloads("a", log), b, Where("c", log)], 1.0)
    try:
        runner._round("round:1", 1.0)
    finally:
        runner.stop()
    assert [n for n, _ in log] == ["a", "c"], "a closed sampler is not run once more"
    assert not runner.skipped["b"]


def test_groups_no_sampler_completed_join_the_last_step_unless_a_sampler_still_runs() -> None:
    runner = SamplerRunner(SeriesStore())
    log: list[tuple[str, threading.Thread]] = []
    runner.hold = lambda: None
    runner.release = lambda: log.append(("release", threading.current_thread()))
    called: list[float] = []
    runner.after_round = lambda tick: (
        log.append(("after", threading.current_thread())),
        called.append(time.time() - tick),
    )
    hung = Timed("hung", 0.0)
    runner.schedule([Where("a", log), hung], 1.0)
    try:
        runner._round("round:1", 1.0)  # every sampler done: the fallback is the last step's
        assert [n for n, _ in log] == ["a", "after", "release"]
        assert log[0][1] is log[1][1] is log[2][1], "all on the round's one thread"
        log.clear()
        hung.sleep = 1.0
        runner._round("round:1", 1.0)  # hung still runs: the groups wait half a round
        assert [n for n, _ in log] == ["a", "release", "after"]
        assert log[2][1] is threading.current_thread() and called[-1] >= 0.5
    finally:
        runner.stop()
