"""Data-driven evaluation: a group runs when the samplers it reads have reported, once a round."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from agent.alerting.engine import RuleEngine, RuleGroupJob
from agent.alerting.rules import parse_file
from agent.alerting.trigger import RuleTrigger
from agent.store import SeriesStore, sample
from tests.conftest import wait_for

RULES = """groups:
  - name: both
    rules:
      - {alert: A, expr: a_value, thresholds: {warning: 0}}
      - {alert: B, expr: b_value, thresholds: {warning: 0}}
  - name: only_a
    rules:
      - {alert: A2, expr: a_value, thresholds: {critical: 0}}
  - name: slow
    interval: 10s
    rules:
      - {alert: A3, expr: a_value, thresholds: {info: 0}}
"""


class Recorder:
    """Stands for the runner: records (group, round) and whether evaluations overlapped."""

    def __init__(self, trigger_round: list[float], hold: float = 0.0) -> None:
        self.runs: list[tuple[str, float]] = []
        self.skipped: list[str] = []
        self.round = trigger_round
        self.hold = hold
        self.done = threading.Event()

    def run(self, job: RuleGroupJob, tick: float) -> None:
        assert tick == self.round[0], "evaluated at the round it completes"
        self.runs.append((job.group.name, tick))
        time.sleep(self.hold)
        self.done.set()

    def skip(self, name: str) -> None:
        self.skipped.append(name)


def setup(tmp: Path, hold: float = 0.0,
          workers: int = 1) -> tuple[SeriesStore, RuleTrigger, Recorder, list[float]]:  # fmt: skip
    store = SeriesStore(900, 1)
    groups, problems = parse_file(RULES, str(tmp / "r.yml"))
    assert not problems
    engine = RuleEngine(store, groups, 0.0)
    tick = [0.0]
    rec = Recorder(tick, hold)
    trigger = RuleTrigger(store, rec.run, rec.skip, workers=workers)
    trigger.set_jobs([RuleGroupJob(engine, g) for g in groups], 1.0)
    return store, trigger, rec, tick


def settle(trigger: RuleTrigger) -> None:
    trigger._pool.submit(lambda: None).result(timeout=5)  # the one worker is idle again


def test_a_group_waits_for_every_sampler_it_reads(tmp_path: Path) -> None:
    store, trigger, rec, tick = setup(tmp_path)
    store.ingest("a", [sample("a_value", 1)], 100.0)  # teach the store who writes what
    store.ingest("b", [sample("b_value", 1)], 100.0)
    tick[0] = 101.0
    store.ingest("a", [sample("a_value", 1)], 101.01)
    trigger.ingested("a", 101.0)
    settle(trigger)
    assert sorted(rec.runs) == [("only_a", 101.0), ("slow", 101.0)], "both waits for b"
    store.ingest("b", [sample("b_value", 1)], 101.02)
    trigger.ingested("b", 101.0)
    settle(trigger)
    assert sorted(g for g, _ in rec.runs) == ["both", "only_a", "slow"]
    trigger.ingested("b", 101.0)
    trigger.fallback(101.0)
    settle(trigger)
    assert len(rec.runs) == 3, "once a round, whoever asks"
    trigger.close()


def test_the_fallback_runs_what_no_sampler_completed(tmp_path: Path) -> None:
    store, trigger, rec, tick = setup(tmp_path)
    store.ingest("a", [sample("a_value", 1)], 100.0)
    store.ingest("b", [sample("b_value", 1)], 100.0)
    tick[0] = 101.0
    store.ingest("a", [sample("a_value", 1)], 101.01)
    trigger.ingested("a", 101.0)  # b hangs this round
    trigger.fallback(101.0)
    settle(trigger)
    assert sorted(g for g, _ in rec.runs) == ["both", "only_a", "slow"]
    trigger.close()


def test_a_longer_group_interval_is_kept(tmp_path: Path) -> None:
    store, trigger, rec, tick = setup(tmp_path)
    for t in range(100, 125):
        tick[0] = float(t)
        store.ingest("a", [sample("a_value", 1)], t + 0.01)
        trigger.ingested("a", float(t))
        settle(trigger)
    slow = [t for g, t in rec.runs if g == "slow"]
    assert slow == [100.0, 110.0, 120.0]
    assert len([g for g, _ in rec.runs if g == "only_a"]) == 25
    trigger.close()


def test_an_overrunning_group_is_skipped_and_counted(tmp_path: Path) -> None:
    store, trigger, rec, _ = setup(tmp_path, hold=0.5)
    store.ingest("a", [sample("a_value", 1)], 100.0)
    trigger.ingested("a", 100.0)
    store.ingest("a", [sample("a_value", 1)], 101.0)
    trigger.ingested("a", 101.0)  # round 101 arrives while 100 still runs
    settle(trigger)
    assert "rules:only_a" in rec.skipped
    trigger.close()


def test_groups_completed_while_held_run_together_at_release(tmp_path: Path) -> None:
    store, trigger, rec, tick = setup(tmp_path)
    threads: list[threading.Thread] = []

    def run(job: RuleGroupJob, t: float) -> None:
        threads.append(threading.current_thread())
        rec.run(job, t)

    trigger._run = run
    store.ingest("a", [sample("a_value", 1)], 100.0)
    store.ingest("b", [sample("b_value", 1)], 100.0)
    tick[0] = 101.0
    trigger.hold()  # a round's samplers begin
    store.ingest("a", [sample("a_value", 1)], 101.01)
    trigger.ingested("a", 101.0)
    store.ingest("b", [sample("b_value", 1)], 101.02)
    trigger.ingested("b", 101.0)
    settle(trigger)
    assert rec.runs == [], "held while the samplers run"
    trigger.release()  # the round's last step: the batch runs here, before release returns
    assert sorted(g for g, _ in rec.runs) == ["both", "only_a", "slow"]
    assert set(threads) == {threading.current_thread()}, "one batch, on the releasing thread"
    trigger.close()


def test_a_group_that_another_group_completes_joins_its_batch(tmp_path: Path) -> None:
    store, trigger, rec, _ = setup(tmp_path, workers=2)  # two threads: a new task could go apart
    threads: dict[str, threading.Thread] = {}

    def run(job: RuleGroupJob, t: float) -> None:
        threads[job.group.name] = threading.current_thread()
        rec.runs.append((job.group.name, t))
        if job.group.name == "only_a":  # its result is what "both" waits for, as b
            store.ingest("b", [sample("b_value", 1)], t + 0.5)
            trigger.ingested("b", t)
            time.sleep(0.2)  # still busy: a task submitted now would start a second thread

    trigger._run = run
    store.ingest("a", [sample("a_value", 1)], 100.0)
    store.ingest("b", [sample("b_value", 1)], 100.0)
    store.ingest("a", [sample("a_value", 1)], 101.01)
    trigger.ingested("a", 101.0)
    wait_for(lambda: len(rec.runs) == 3, timeout=5, what="all three groups")
    assert sorted(g for g, _ in rec.runs) == ["both", "only_a", "slow"]
    assert threads["both"] is threads["only_a"], "run next on the same thread, no new wake-up"
    trigger.close()
