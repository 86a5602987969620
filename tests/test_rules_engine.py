"""The engine over a real store on synthetic time: levels, hysteresis, absence, restarts."""

from __future__ import annotations

from pathlib import Path

from agent.alerting import persist
from agent.alerting.engine import RuleEngine
from agent.alerting.model import Group
from agent.alerting.rules import parse_file
from agent.notify.inhibit import outranked
from agent.store import SeriesStore, sample

T0 = 1_000_000.0


def groups(text: str) -> list[Group]:
    found, problems = parse_file(text, "t.yml")
    assert problems == []
    return found


def engine_for(text: str, store: SeriesStore, **kw: object) -> RuleEngine:
    return RuleEngine(store, groups(text), started_at=T0, **kw)  # type: ignore[arg-type]


def feed(
    store: SeriesStore, name: str, values: list[float | None], step: float = 10.0, **labels: str
) -> None:
    for i, v in enumerate(values):
        if v is not None:
            store.ingest(f"{name}{labels}", [sample(name, v, **labels)], T0 + i * step)


def states(engine: RuleEngine, ticks: int, step: float = 10.0) -> list[dict[str, str]]:
    """Evaluate every group at each tick; return {severity: state} after each."""
    out = []
    for i in range(ticks):
        for g in engine.groups:
            engine.evaluate_group(g, T0 + i * step)
        out.append({a.severity: a.state for a in engine.all_alerts()})
    return out


LEVELS = """
groups:
  - name: g
    rules:
      - alert: Hot
        expr: x
        thresholds: {warning: 80, critical: 90}
        clear: {critical: 85}
"""


def test_levels_are_separate_instances_and_clear_holds_critical() -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95, 87, 87, 84, 70])
    seen = states(engine_for(LEVELS, store), 5)
    assert seen[0] == {"warning": "firing", "critical": "firing"}
    assert seen[1] == {"warning": "firing", "critical": "firing"}  # 87: above clear 85
    assert seen[3] == {"warning": "firing", "critical": "resolved"}  # 84: past the clear
    assert seen[4] == {"warning": "resolved", "critical": "resolved"}


def test_critical_inhibits_warning_of_the_same_labels() -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95, 82], gpu="0")
    feed(store, "x", [82, 82], gpu="1")
    engine = engine_for(LEVELS, store)
    states(engine, 1)
    below = outranked(engine.all_alerts())
    inhibited = {
        (dict(a.labels)["gpu"], a.severity): a.labels in below for a in engine.all_alerts()
    }
    assert inhibited == {("0", "warning"): True, ("0", "critical"): False, ("1", "warning"): False}


def test_alerts_series_as_prometheus_exposes_them() -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95], gpu="3")
    engine = engine_for(LEVELS.replace("clear: {critical: 85}", "for: 1m"), store)
    states(engine, 1)
    rows = {
        (s.name, dict(s.labels)["severity"], dict(s.labels).get("alertstate")): s.value
        for s in engine.samples(engine.groups[0])
    }
    assert rows == {
        ("ALERTS", "warning", "pending"): 1.0,
        ("ALERTS", "critical", "pending"): 1.0,
        ("ALERTS_FOR_STATE", "warning", None): T0,
        ("ALERTS_FOR_STATE", "critical", None): T0,
    }


ABSENT = """
groups:
  - name: g
    rules:
      - alert: Silent
        expr: beat{job="a"}
        absent_for: 30s
        absent_severity: critical
"""


def test_absent_for_whole_and_per_series() -> None:
    store = SeriesStore(retention=3600, interval=10)
    engine = engine_for(ABSENT, store)
    seen = states(engine, 4)
    assert seen[2] == {} and seen[3] == {"critical": "firing"}, "nothing seen for 30s"
    (alert,) = engine.all_alerts()
    assert dict(alert.labels) == {
        "alertname": "Silent",
        "severity": "critical",
        "job": "a",
        "absent": "true",
    }

    store2 = SeriesStore(retention=3600, interval=10)
    feed(store2, "beat", [1, 1, 1, 1, 1, 1, 1, 1], job="a", sampler="disk")
    feed(store2, "beat", [1, 1], job="a", sampler="gpu")  # goes silent after t=10s
    engine2 = engine_for(ABSENT, store2)
    seen2 = states(engine2, 8)
    assert seen2[3] == {}, "silent for 20 s of 30"
    assert seen2[4] == {"critical": "firing"}, "silent for 30 s"
    firing = [dict(a.labels).get("sampler") for a in engine2.all_alerts() if a.state == "firing"]
    assert firing == ["gpu"], "the series that stopped reporting, and only it"


RATE = """
groups:
  - name: g
    rules:
      - alert: Errors
        expr: increase(errs_total[1m])
        thresholds: {warning: 4}
"""


def test_counter_reset_is_not_a_drop_and_gaps_are_tolerated() -> None:
    store = SeriesStore(retention=3600, interval=10)
    # 0,2,4 then the process restarts (reset to 1), then 3; a gap of one sample at t=60
    feed(store, "errs_total", [0, 2, 4, 1, 3, None, 5])
    seen = states(engine_for(RATE, store), 7)
    assert seen[2] == {}  # grew by 4 in 20s: not > 4
    assert seen[3] == {"warning": "firing"}  # 0->2->4->(reset)1: growth 5
    assert seen[6] == {"warning": "firing"}  # window 0..60s: 2+2+1+2+2 = 9, the gap is skipped


ONLY_IF = """
groups:
  - name: g
    rules:
      - alert: SlowQps
        expr: qps
        op: "<"
        thresholds: {critical: 100}
        only_if: {expr: "up == 1", on: [worker]}
"""


def test_only_if_joins_on_the_given_labels() -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "qps", [10], worker="a")
    feed(store, "qps", [10], worker="b")
    feed(store, "up", [1], worker="a")
    feed(store, "up", [0], worker="b")
    engine = engine_for(ONLY_IF, store)
    states(engine, 1)
    assert [dict(a.labels)["worker"] for a in engine.all_alerts()] == ["a"]


def test_restart_keeps_firing_and_resumes_pending_timers(tmp_path: Path) -> None:
    rules = LEVELS.replace("clear: {critical: 85}", "for: 5m")
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95] * 40, gpu="0")
    engine = engine_for(rules, store)
    states(engine, 13)  # t = 0..120 s: both levels pending for 120 s of their 300 s
    path = tmp_path / "alerts.json"
    persist.save(path, engine.all_alerts(), T0 + 120)

    # back 60 s later: the timers resume where they stopped (shifted by the outage)
    restored = persist.restore(path, engine.holds(), T0 + 180, tolerance=3600, grace=60)
    assert {a.state for a in restored} == {"pending"}
    assert {a.active_at for a in restored} == {T0 + 60}

    states(engine, 31)  # on to t = 300 s: both fire
    persist.save(path, engine.all_alerts(), T0 + 300)
    restored = persist.restore(path, engine.holds(), T0 + 900, tolerance=3600, grace=60)
    assert {a.state for a in restored} == {"firing"}, "firing alerts stay firing"
    # an outage longer than the tolerance starts from scratch
    assert persist.restore(path, engine.holds(), T0 + 300 + 7200, tolerance=3600, grace=60) == []


def test_restored_state_drives_the_next_evaluation(tmp_path: Path) -> None:
    rules = LEVELS.replace("clear: {critical: 85}", "for: 5m")
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95] * 40, gpu="0")
    first = engine_for(rules, store)
    states(first, 31)
    path = tmp_path / "alerts.json"
    persist.save(path, first.all_alerts(), T0 + 300)
    second = RuleEngine(store, first.groups, started_at=T0 + 310)
    second.restore(persist.restore(path, second.holds(), T0 + 310, 3600, 60))
    second.evaluate_group(second.groups[0], T0 + 310)
    assert {a.state for a in second.all_alerts()} == {"firing"}, "no new 5-minute wait"


def test_grace_period_applies_when_little_was_left(tmp_path: Path) -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95] * 30, gpu="0")
    engine = engine_for(LEVELS.replace("clear: {critical: 85}", "for: 5m"), store)
    states(engine, 29)  # pending for 280 s of 300 s
    path = tmp_path / "a.json"
    persist.save(path, engine.all_alerts(), T0 + 280)
    restored = persist.restore(path, engine.holds(), T0 + 400, tolerance=3600, grace=60)
    # 20 s were left, less than the grace: it may fire no sooner than 60 s after the restart
    assert {a.active_at for a in restored} == {T0 + 400 + 60 - 300}


def test_unreadable_state_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{not json")
    assert persist.restore(path, {}, T0, 3600, 60) == []
    assert persist.restore(tmp_path / "missing.json", {}, T0, 3600, 60) == []


def test_restored_alerts_survive_a_warm_up_without_data(tmp_path: Path) -> None:
    rules = LEVELS.replace("clear: {critical: 85}", "for: 5m")
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95] * 10, gpu="0")
    first = engine_for(rules, store)
    states(first, 10)
    path = tmp_path / "a.json"
    persist.save(path, first.all_alerts(), T0 + 90)
    empty = SeriesStore(retention=3600, interval=10)  # the samplers have not reported yet
    restart = T0 + 100
    second = RuleEngine(empty, first.groups, started_at=restart, warmup=5)
    second.restore(persist.restore(path, second.holds(), restart, 3600, 60))
    second.evaluate_group(second.groups[0], restart + 1)
    assert len(second.all_alerts()) == 2, "kept during the warm-up"
    second.evaluate_group(second.groups[0], restart + 6)
    assert second.all_alerts() == [], "after it, no data means the condition does not hold"


def test_a_group_queued_before_a_reload_replaced_it_does_not_bring_its_rules_back() -> None:
    store = SeriesStore(retention=3600, interval=10)
    feed(store, "x", [95, 95])
    engine = engine_for(LEVELS, store)
    old = engine.groups[0]
    engine.evaluate_group(old, T0)
    assert {a.rule for a in engine.all_alerts()} == {"g/Hot"}
    engine.replace_groups(groups(LEVELS.replace("alert: Hot", "alert: Warm")))
    engine.evaluate_group(old, T0 + 10)  # it was held in the round's batch when the reload came
    assert {a.rule for a in engine.all_alerts()} == set(), "Hot was removed; nothing revives it"
    engine.evaluate_group(engine.groups[0], T0 + 10)
    assert {a.rule for a in engine.all_alerts()} == {"g/Warm"}
