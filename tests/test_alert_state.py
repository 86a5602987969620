"""The state machine, table-driven on synthetic time t0 + i*interval."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alerting.state import Alert, Timing, step

T0, STEP = 1000.0, 10.0


def run(pattern: str, timing: Timing) -> str:
    """Feed a pattern of active (1) / inactive (0) evaluations; return the state after each."""
    alert: Alert | None = None
    out = []
    for i, ch in enumerate(pattern):
        ts = T0 + i * STEP
        active = ch == "1"
        if active and alert is None:
            alert = Alert("g/r", (("alertname", "r"),), "pending", ts)
        alert = step(alert, active, ts, timing)
        out.append("." if alert is None else alert.state[0])  # p, f, r
    return "".join(out)


@pytest.mark.parametrize(
    ("pattern", "timing", "expect"),
    [
        # for = 0: fires on the first evaluation, resolves on the first miss
        ("1100", Timing(0), "ffrr"),
        # for = 30s (3 steps): pending until 30s have passed
        ("11110", Timing(30), "pppfr"),
        # a pending alert that stops holding is forgotten, never fired
        ("11011110", Timing(30), "pp.pppfr"),
        # keep_firing_for = 20s: stays firing through two inactive evaluations
        ("110001", Timing(0, keep_firing_for=20), "ffffrf"),
        # a brief dip inside keep_firing_for does not resolve, and the clock restarts after it
        ("1101000", Timing(0, keep_firing_for=20), "ffffffr"),
        # resolved alerts are kept for the retention, then forgotten
        ("10000", Timing(0, resolved_retention=20), "frr.."),
        # a resolved alert that holds again starts a new pending period
        ("11011", Timing(10), "pfrpf"),
        # gaps in a pending period restart it: for=20s needs three active steps in a row
        ("1101111", Timing(20), "pp.ppff"),
    ],
)
def test_transitions(pattern: str, timing: Timing, expect: str) -> None:
    assert run(pattern, timing) == expect


def test_firing_keeps_its_original_active_at() -> None:
    alert = Alert("g/r", (), "pending", T0)
    for i in range(5):
        alert = step(alert, True, T0 + i * STEP, Timing(20))  # type: ignore[assignment]
    assert alert.state == "firing"
    assert alert.active_at == T0 and alert.fired_at == T0 + 20


@given(st.text(alphabet="01", min_size=1, max_size=40), st.integers(0, 6), st.integers(0, 4))
def test_never_fires_before_for_has_held(pattern: str, hold_steps: int, keep_steps: int) -> None:
    timing = Timing(hold_steps * STEP, keep_steps * STEP, resolved_retention=5 * STEP)
    states = run(pattern, timing)
    for i, state in enumerate(states):
        if state == "f" and (i == 0 or states[i - 1] != "f"):
            # the step that fires is preceded by hold_steps consecutive active steps
            assert pattern[max(0, i - hold_steps) : i + 1] == "1" * min(i + 1, hold_steps + 1)
        if pattern[i] == "0":
            assert state != "p", "an inactive evaluation never leaves a pending alert"


def test_a_resolved_alert_that_comes_back_is_pending_anew_with_no_old_times() -> None:
    timing = Timing(30)
    alert = step(Alert("g/r", (("alertname", "r"),), "pending", T0), True, T0 + 30, timing)
    assert alert is not None and alert.state == "firing" and alert.fired_at == T0 + 30
    alert = step(alert, False, T0 + 40, timing)
    assert alert is not None and alert.state == "resolved" and alert.resolved_at == T0 + 40
    alert = step(alert, True, T0 + 50, timing)
    assert alert is not None and alert.state == "pending" and alert.active_at == T0 + 50
    assert alert.fired_at is None and alert.resolved_at is None


def test_a_copy_is_equal_and_independent() -> None:
    alert = Alert("g/r", (("alertname", "r"),), "firing", T0, fired_at=T0 + 1)
    copied = alert.copy()
    assert copied == alert and copied is not alert and type(copied) is Alert
    copied.state = "resolved"
    assert alert.state == "firing"
