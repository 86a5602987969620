"""Long-lived parts under the supervisor: a failure is counted, logged and restarted."""

from __future__ import annotations

import logging
import threading

import pytest

from agent.supervise import Supervisor


def test_a_failing_loop_is_restarted_counted_and_logged_once_in_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor(first_delay=0.01)
    runs: list[int] = []

    def loop() -> None:
        runs.append(1)
        if len(runs) <= 3:
            raise RuntimeError(f"boom {len(runs)}")

    with caplog.at_level(logging.WARNING):
        sup.run("shipper:x", loop, threading.Event())
    assert len(runs) == 4, "restarted after each failure until it returned"
    assert [(s.labels, s.value) for s in sup.sample(0)] == [((("component", "shipper:x"),), 3.0)]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "boom 1" in str(tracebacks[0].exc_info[1])
    assert sum("failed again" in r.getMessage() for r in caplog.records) == 2


def test_stopping_ends_the_backoff() -> None:
    sup = Supervisor(first_delay=30)
    stopping = threading.Event()
    stopping.set()

    def loop() -> None:
        raise OSError("always")

    sup.run("sender:hook#0", loop, stopping)  # returns at once instead of waiting 30 s
    assert sup.failures["sender:hook#0"] == 1
