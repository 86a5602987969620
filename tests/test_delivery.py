"""Delivery as one pipeline, on synthetic time: Notifier -> Dispatcher -> Outbox -> Sender.

A fake transport stands where the HTTP client was: it answers what the test says and
records what was posted. Each test breaks if the piece it names is broken (an HTTP 500
taken as delivered, an inhibited or silenced alert sent, a reload or restart that resends
or forgets a resolve).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.alerting.state import Alert
from agent.config import Config
from agent.notify.channels import build
from agent.notify.notifier import Notifier
from agent.notify.outbox import Outbox
from agent.notify.sender import Sender, Target
from agent.notify.silences import SilenceStore

T0 = 1_800_000_000.0
HOOK = "http://127.0.0.1:9/hook"
HOOK0 = Target("hook", 0)


class Transport:
    """Answers each post with `status` and records (url, json body, headers)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float
                 ) -> tuple[int, str]:  # fmt: skip
        self.posts.append((url, json.loads(body), headers))
        return self.status, "answer"

    def statuses(self) -> list[str]:
        """Every alert status posted, in order."""
        return [a["status"] for _, body, _ in self.posts for a in body["alerts"]]


@pytest.fixture(autouse=True)
def outbox_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox stamps rows at T0: synthetic time, as the rest of the pipeline here."""
    monkeypatch.setattr("agent.notify.outbox.time", SimpleNamespace(time=lambda: T0))


def cfg(tmp: Path, **extra: Any) -> Config:
    return Config.model_validate({
        "agent": {"state_dir": str(tmp), "node_name": "n1"},
        "receivers": [{"name": "hook", "type": "webhook", "url": HOOK}],
        "routes": [{"receiver": "hook", "group_wait": "0s", "group_interval": "30s"}],
        **extra,
    })  # fmt: skip


def alert(name: str = "Hot", state: str = "firing", severity: str = "critical",
          **labels: str) -> Alert:  # fmt: skip
    full = tuple(sorted({"alertname": name, "severity": severity, **labels}.items()))
    a = Alert(f"g/{name}", full, state, T0, value=1.0)  # type: ignore[arg-type]
    if state == "resolved":
        a.resolved_at = T0 + 60
    return a


def notifier(tmp: Path, config: Config | None = None) -> Notifier:
    """A Notifier over the state dir, configured without starting sender threads."""
    n = Notifier(Outbox(tmp / "outbox.db"), SilenceStore(tmp))
    n.configure(config or cfg(tmp))
    n.close()  # the tests drive a Sender by hand
    return n


def drain(tmp: Path, transport: Transport, now: float = T0 + 1e4) -> None:
    """Deliver everything queued for the hook through a Sender on the fake transport."""
    c = cfg(tmp)
    sender = Sender(Outbox(tmp / "outbox.db"), Target("hook", 0), build(c.receivers[0], HOOK), 1.0,
                    Counter(), post=transport)  # fmt: skip
    while sender.outbox.head("hook#0") is not None and sender.step(now) == 0.0:
        pass


def test_an_http_500_keeps_the_notification_and_backs_off(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    outbox = Outbox(tmp_path / "outbox.db")
    counts: Counter[tuple[str, str]] = Counter()
    failing = Transport(status=500)
    sender = Sender(outbox, Target("hook", 0), build(cfg(tmp_path).receivers[0], HOOK), 1.0, counts,
                    post=failing)  # fmt: skip
    wait = sender.step(T0 + 10)
    item = outbox.head("hook#0")
    assert item is not None and item.attempts == 1, "kept, with the try counted"
    assert wait > 0 and counts[("hook#0", "failed")] == 1
    assert sender.step(T0 + 10) > 0 and len(failing.posts) == 1, "not retried before its time"
    ok = Transport()
    sender._post = ok
    assert sender.step(item.next_at) == 0.0
    assert outbox.head("hook#0") is None and ok.statuses() == ["firing"]


def test_a_3xx_or_unreachable_receiver_is_a_failure_not_a_delivery(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    outbox = Outbox(tmp_path / "outbox.db")

    def refused(url: str, body: bytes, headers: dict[str, str], timeout: float
                ) -> tuple[int, str]:  # fmt: skip
        raise ConnectionRefusedError(111, "refused")

    channel = build(cfg(tmp_path).receivers[0], HOOK)
    for i, post in enumerate((Transport(status=307), refused)):
        sender = Sender(outbox, Target("hook", 0), channel, 1.0, Counter(), post=post)
        sender.step(T0 + (i + 1) * 1e3)
    item = outbox.head("hook#0")
    assert item is not None and item.attempts == 2


def test_critical_inhibits_the_warning_of_the_same_labels(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert(severity="warning", gpu="0"), alert(severity="critical", gpu="0"),
               alert(severity="warning", gpu="1")], [], T0)  # fmt: skip
    sent = Transport()
    drain(tmp_path, sent)
    (body,) = [b for _, b, _ in sent.posts]
    got = sorted((a["labels"]["gpu"], a["labels"]["severity"]) for a in body["alerts"])
    assert got == [("0", "critical"), ("1", "warning")]


def test_an_inhibit_rule_mutes_its_targets(tmp_path: Path) -> None:
    down = alert("WorkerDown", worker="w1")
    slow = alert("InferenceLatencyHigh", worker="w1")
    other = alert("InferenceLatencyHigh", worker="w2")
    n = notifier(tmp_path, cfg(tmp_path, routes=[{"receiver": "hook", "group_by": ["worker"]}]))
    n.deliver([down, slow, other], [], T0)
    sent = Transport()
    drain(tmp_path, sent)
    names = sorted((a["labels"]["alertname"], a["labels"]["worker"])
                   for _, body, _ in sent.posts for a in body["alerts"])  # fmt: skip
    assert names == [("InferenceLatencyHigh", "w2"), ("WorkerDown", "w1")]
    assert n.muted == {slow.labels: "inhibited"}


def test_a_silence_mutes_and_its_end_lets_the_alert_through(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    silence = n.silences.add(['alertname="Hot"'], 3600, "me", "maintenance")
    n.deliver([alert()], [], silence.starts_at)
    sent = Transport()
    drain(tmp_path, sent)
    assert sent.posts == [] and n.muted[alert().labels].startswith("silenced by ")
    n.silences.expire(silence.id)
    n.deliver([alert()], [], silence.starts_at + 1)  # the engine's snapshot: nothing changed
    n.tick(silence.starts_at + 1)  # the round's flush sees the silence gone
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"]


def test_a_reload_mid_group_neither_doubles_nor_drops(tmp_path: Path) -> None:
    slow = cfg(tmp_path, routes=[{"receiver": "hook", "group_wait": "10s"}])
    n = notifier(tmp_path, slow)
    n.deliver([alert()], [], T0)
    n.configure(slow)  # a reload with nothing changed, inside group_wait
    n.close()
    n.deliver([alert()], [], T0 + 5)
    sent = Transport()
    drain(tmp_path, sent)
    assert sent.posts == [], "group_wait runs on from the first sight, not from the reload"
    n.deliver([alert()], [], T0 + 10)
    n.tick(T0 + 10)  # the round's flush: group_wait is over
    n.configure(slow)
    n.close()
    n.deliver([alert()], [], T0 + 11)
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"], "sent once, not again after the reload"
    n.deliver([alert(state="resolved")], [], T0 + 100)
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing", "resolved"]


def test_a_restart_neither_resends_nor_forgets_the_resolve(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    sent = Transport()
    drain(tmp_path, sent)
    again = notifier(tmp_path)  # a new process over the same state dir
    again.deliver([alert()], [], T0 + 5)
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"], "what was sent is durable"
    third = notifier(tmp_path)
    third.deliver([alert(state="resolved")], [], T0 + 60)
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing", "resolved"], "a resolve it never saw fire is sent"


def test_an_alert_whose_rule_went_away_is_resolved(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert(), alert("Other")], [], T0)
    n.deliver([alert("Other")], [], T0 + 60)  # Hot's rule was removed by a reload
    sent = Transport()
    drain(tmp_path, sent)
    gone = [(a["labels"]["alertname"], a["status"]) for _, b, _ in sent.posts for a in b["alerts"]]
    assert ("Hot", "resolved") in gone and ("Other", "resolved") not in gone


def test_an_unchanged_group_is_not_repeated_before_repeat_interval(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    for i in range(0, 3600, 60):
        n.deliver([alert()], [], T0 + i)
    sent = Transport()
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"]


def test_a_channel_that_cannot_build_its_request_is_a_retry_not_a_dead_sender(
    tmp_path: Path,
) -> None:
    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    outbox = Outbox(tmp_path / "outbox.db")

    class Broken:
        def request(self, payload: dict[str, Any], key: str) -> tuple[str, bytes, dict[str, str]]:
            return "{title.foo}".format(title="x"), b"", {}  # AttributeError, as 0.1 died of

        def accepted(self, status: int, text: str) -> bool:
            return True

    counts: Counter[tuple[str, str]] = Counter()
    sender = Sender(outbox, Target("hook", 0), Broken(), 1.0, counts, post=Transport())
    assert sender.step(T0 + 1e3) > 0
    item = outbox.head("hook#0")
    assert item is not None and item.attempts == 1 and counts[("hook#0", "failed")] == 1


def test_a_signed_webhook_verifies_as_the_readme_shows(tmp_path: Path) -> None:
    import hashlib
    import hmac

    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    c = cfg(tmp_path, receivers=[{"name": "hook", "type": "webhook", "url": HOOK,
                                  "secret_file": str(secret)}])  # fmt: skip
    _, body, headers = build(c.receivers[0], HOOK).request({"alerts": []}, "k")

    def verify(secret: bytes, body: bytes, headers: dict[str, str], max_age: float = 300) -> bool:
        stamp = headers.get("X-Dsagent-Timestamp", "")
        mac = hmac.new(secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= max_age
        return fresh and hmac.compare_digest(
            headers.get("X-Dsagent-Signature", ""), "sha256=" + mac
        )

    assert verify(b"s3cret", body, headers)
    assert not verify(b"s3cret", body + b" ", headers), "another body"
    old = {**headers, "X-Dsagent-Timestamp": str(int(headers["X-Dsagent-Timestamp"]) - 3600)}
    assert not verify(b"s3cret", body, old), "a replay an hour later"


def test_after_a_restart_the_timer_waits_for_the_engine_before_judging_alerts_gone(
    tmp_path: Path,
) -> None:
    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    sent = Transport()
    drain(tmp_path, sent)
    again = notifier(tmp_path)
    again.tick(T0 + 100)  # the notifier's timer runs before the first evaluation
    again.deliver([alert()], [], T0 + 101)  # the restored instance, still firing
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"], "no false resolve, no second firing"


def test_a_bounded_queue_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    from agent.notify.sender import Policy

    outbox = Outbox(tmp_path / "outbox.db")
    for i in range(5):
        outbox.put("hook#0", f"k{i}", {"version": "4", "status": "firing", "alerts": [], "n": i})
    counts: Counter[tuple[str, str]] = Counter()
    ok = Transport()
    sender = Sender(outbox, Target("hook", 0), build(cfg(tmp_path).receivers[0], HOOK), 1.0, counts,
                    post=ok, policy=Policy(keep=3))  # fmt: skip
    while sender.step(T0) == 0.0 and outbox.head("hook#0") is not None:
        pass
    assert [body["n"] for _, body, _ in ok.posts] == [2, 3, 4], "the newest three, in order"
    assert counts[("hook#0", "dropped_overflow")] == 2
    outbox.put("hook#0", "old", {"version": "4", "status": "firing", "alerts": []})
    sender.policy = Policy(max_age=60.0)
    sender.step(T0 + 61)
    assert outbox.head("hook#0") is None and counts[("hook#0", "dropped_expired")] == 1


def test_a_late_notification_says_it_is_late(tmp_path: Path) -> None:
    from agent.config.notify import ReceiverConfig
    from agent.notify.sender import Policy

    n = notifier(tmp_path)
    n.deliver([alert()], [], T0)
    outbox = Outbox(tmp_path / "outbox.db")
    slack = build(ReceiverConfig(name="chat", type="slack", url=HOOK), HOOK)
    ok = Transport()
    sender = Sender(outbox, Target("hook", 0), slack, 1.0, Counter(), post=ok,
                    policy=Policy(stale_after=300.0))  # fmt: skip
    sender.step(T0 + 1800)
    text = ok.posts[0][1]["text"]
    assert "(late: queued 30 min ago)" in text and text.startswith("[FIRING:1] Hot")


def test_a_failing_receiver_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: Any
) -> None:
    from agent.backends import BACKENDS

    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put("hook#0", "k", {"version": "4", "status": "firing", "alerts": []})
    failing = Transport(status=503)
    sender = Sender(outbox, HOOK0, build(cfg(tmp_path).receivers[0], HOOK), 1.0, Counter(),
                    post=failing)  # fmt: skip
    now = T0
    for _ in range(4):
        now += 600  # past any backoff
        sender.step(now)
    sender._post = Transport()
    sender.step(now + 600)
    lines = [r.getMessage() for r in caplog.records if "receiver:hook#0" in r.getMessage()]
    assert len(failing.posts) == 4 and len(lines) == 2, lines
    assert "failing: HTTP 503" in lines[0] and "is back" in lines[1]
    assert BACKENDS.errors[("receiver:hook#0", "HTTP 503")] >= 4


def test_a_silence_another_process_wrote_is_seen_within_a_second(tmp_path: Path) -> None:
    agent_side, cli_side = SilenceStore(tmp_path), SilenceStore(tmp_path)
    assert agent_side.active(time.time()) == []  # looked at: none yet
    silence = cli_side.add(['alertname="Hot"'], 3600, "me", "from the CLI")
    began = time.monotonic()
    while not agent_side.active(time.time()):
        assert time.monotonic() - began < 3, "the agent never saw the other process's silence"
        time.sleep(0.05)
    assert [s.id for s in agent_side.active(time.time())] == [silence.id]


def test_a_snapshot_that_changed_no_state_is_kept_and_left_to_the_rounds_flush(
    tmp_path: Path,
) -> None:
    n = notifier(tmp_path)
    start = n.silences.add(['alertname="Hot"'], 3600, "me", "maintenance").starts_at
    n.deliver([alert()], [], start - 10)  # first sight, before the silence: flushed at once
    assert alert().labels not in n.muted
    later = alert()
    n.deliver([later], [], start + 1)  # the same instance in the same state
    assert n.alerts == [later], "the snapshot is kept"
    assert alert().labels not in n.muted, "but not muted or flushed again: nothing changed"
    n.deliver([later, alert("Cold")], [], start + 2)  # an instance more (a restore): at once
    assert n.muted[alert().labels].startswith("silenced by ")


def test_mutes_are_worked_out_again_only_when_something_they_follow_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.notify import notifier as module

    worked: list[int] = []
    original = module.outranked
    monkeypatch.setattr(module, "outranked", lambda alerts: worked.append(1) or original(alerts))
    n, now = notifier(tmp_path), time.time()  # silences run on the wall clock
    hot = alert(worker="w1")
    n.deliver([hot], [], now)
    for second in range(1, 4):  # rounds that change nothing: the mutes are the last ones
        n.tick(now + second)
    assert len(worked) == 1 and hot.labels not in n.muted
    n.silences.add(['alertname="Hot"'], 3600, "me", "maintenance")
    n.tick(now + 5)
    assert len(worked) == 2 and n.muted[hot.labels].startswith("silenced by ")
    rule = {"source_matchers": ['alertname="Cold"'], "target_matchers": ['alertname="Hot"']}
    n.configure(cfg(tmp_path, inhibit_rules=[rule]))
    n.close()
    n.tick(now + 6)
    assert len(worked) == 3, "new inhibit rules: worked out again"
    n.deliver([hot, alert("Cold", worker="w1")], [], now + 7)  # an instance more
    assert len(worked) == 4 and n.muted[hot.labels] == "inhibited"


def test_a_removed_receiver_s_queue_is_dropped_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    two = cfg(tmp_path, receivers=[{"name": "hook", "type": "webhook", "url": HOOK},
                                   {"name": "pager", "type": "webhook", "url": HOOK}],
              routes=[{"receiver": "hook", "group_wait": "0s", "continue": True},
                      {"receiver": "pager", "group_wait": "0s"}])  # fmt: skip
    n = notifier(tmp_path, two)
    n.deliver([alert()], [], T0)
    assert {i["receiver"] for i in n.outbox.items(10)} == {"hook#0", "pager#0"}
    n.configure(cfg(tmp_path))  # a reload without "pager"
    n.close()
    assert [i["receiver"] for i in n.outbox.items(10)] == ["hook#0"], "hook's is kept"
    said = [r for r in caplog.records if "no longer configured" in r.getMessage()]
    text = "receiver pager#0 is no longer configured: 1 queued notification(s) dropped"
    assert [r.getMessage() for r in said] == [text]
    n.configure(cfg(tmp_path, notify={"resend_delay": "2s"}))  # new senders, nothing to drop
    n.close()
    assert len([r for r in caplog.records if "no longer configured" in r.getMessage()]) == 1


class Locked:
    """Another process holding the outbox's write lock: every write of ours fails."""

    def __init__(self, path: Path, *outboxes: Outbox) -> None:
        import sqlite3

        for outbox in outboxes:  # fail fast instead of waiting 30 s for the lock
            outbox._db().execute("PRAGMA busy_timeout = 20")
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


def test_a_failed_outbox_write_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert("A")], [], T0)
    sent = Transport()
    drain(tmp_path, sent)
    assert sent.statuses() == ["firing"]
    locked = Locked(tmp_path / "outbox.db", n.outbox)
    n.deliver([alert("A", state="resolved"), alert("C")], [], T0 + 100)
    n.tick(T0 + 101)  # the notify sampler's flush, still refused
    failures = n.outbox.write_failures
    assert failures >= 2, "each refused write is counted"
    n.tick(T0 + 102)
    written = {s.name: s.value for s in n.sample(T0 + 102)}
    assert written["dsagent_outbox_write_failures_total"] >= failures
    locked.release()
    n.tick(T0 + 131)  # space back: the owed change is queued on the next flush
    n.tick(T0 + 132)
    drain(tmp_path, sent)
    posted = sorted((a["labels"]["alertname"], a["status"]) for _, body, _ in sent.posts
                    for a in body["alerts"])  # fmt: skip
    assert posted == [("A", "firing"), ("A", "resolved"), ("C", "firing")]
    n.tick(T0 + 500)
    drain(tmp_path, sent)
    assert len(sent.posts) == 3, "and none is sent again"


def test_a_delivered_notification_the_outbox_cannot_remove_is_not_resent(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert("A"), alert("B", severity="warning")], [], T0)
    outbox = Outbox(tmp_path / "outbox.db")
    held: list[Locked] = []

    def post_then_lock(url: str, body: bytes, headers: dict[str, str], timeout: float
                       ) -> tuple[int, str]:  # fmt: skip
        if not held:  # the disk fails between the answer and the removal
            held.append(Locked(tmp_path / "outbox.db", outbox))
        return sent(url, body, headers, timeout)

    sent = Transport()
    sender = Sender(outbox, HOOK0, build(cfg(tmp_path).receivers[0], HOOK), 1.0, Counter(),
                    post=post_then_lock)  # fmt: skip
    assert sender.step(T0 + 10) == 1.0, "the removal failed: wait, do not resend"
    assert sender.step(T0 + 11) == 1.0 and len(sent.posts) == 1
    held[0].release()
    while sender.step(T0 + 12) == 0.0:
        pass
    names = [a["labels"]["alertname"] for _, body, _ in sent.posts for a in body["alerts"]]
    assert names == ["A", "B"] and outbox.head("hook#0") is None, "each sent once, in order"


def levels_seen(sent: Transport) -> list[tuple[str, str, str]]:
    """(status, severity, transition) of every alert posted, in order."""
    return [(a["status"], a["labels"]["severity"], a["annotations"].get("transition", ""))
            for _, body, _ in sent.posts for a in body["alerts"]]  # fmt: skip


def test_a_critical_easing_to_warning_is_an_update_not_a_page(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    sent = Transport()
    crit, warn = alert("Hot", severity="critical"), alert("Hot", severity="warning")
    n.deliver([crit, warn], [], T0)  # the warning is inhibited by the critical
    drain(tmp_path, sent)
    crit_done = alert("Hot", state="resolved", severity="critical")
    n.deliver([crit_done, warn], [], T0 + 100)  # on the way down: critical cleared, warning not
    drain(tmp_path, sent)
    n.deliver([crit_done, alert("Hot", state="resolved", severity="warning")], [], T0 + 200)
    drain(tmp_path, sent)
    assert levels_seen(sent) == [("firing", "critical", ""),
                                 ("firing", "warning", "downgrade from critical"),
                                 ("resolved", "warning", "")]  # fmt: skip
    ids = {body["alerts"][0]["fingerprint"] for _, body, _ in sent.posts}
    assert len(ids) == 1, "one alert throughout"


def test_a_warning_rising_to_critical_is_an_upgrade(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    sent = Transport()
    n.deliver([alert("Hot", severity="warning")], [], T0)
    drain(tmp_path, sent)
    n.deliver([alert("Hot", severity="warning"), alert("Hot", severity="critical")], [], T0 + 60)
    drain(tmp_path, sent)
    assert levels_seen(sent) == [("firing", "warning", ""),
                                 ("firing", "critical", "upgrade from warning")]  # fmt: skip


def test_separate_levels_page_as_prometheus_does(tmp_path: Path) -> None:
    n = notifier(tmp_path, cfg(tmp_path, notify={"levels": "separate"}))
    sent = Transport()
    crit, warn = alert("Hot", severity="critical"), alert("Hot", severity="warning")
    n.deliver([crit, warn], [], T0)
    drain(tmp_path, sent)
    n.deliver([alert("Hot", state="resolved", severity="critical"), warn], [], T0 + 100)
    drain(tmp_path, sent)
    statuses = [(s, sev) for s, sev, _ in levels_seen(sent)]
    assert ("firing", "warning") in statuses and ("resolved", "critical") in statuses, statuses


def test_a_reload_does_not_wait_long_for_a_notifier_held_up_by_its_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    from agent.notify import notifier as module

    monkeypatch.setattr(module, "HANDOVER", 0.3)
    n = Notifier(Outbox(tmp_path / "outbox.db"), SilenceStore(tmp_path))
    n.configure(cfg(tmp_path))
    n.start()
    disk = threading.Event()
    n._inbox.put(disk.wait)  # the notifier's thread, stuck in a write
    try:
        began = time.monotonic()
        with caplog.at_level("WARNING"):
            n.configure(cfg(tmp_path, notify={"resend_delay": "2s"}))
        assert time.monotonic() - began < 1.0, "the reload went on"
        assert "the notifier is busy" in caplog.text
        assert n.dispatcher.resend_delay == 60.0, "not applied while the thread is held"
        disk.set()
        deadline = time.monotonic() + 5
        while n.dispatcher.resend_delay != 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert n.dispatcher.resend_delay == 2.0, "applied once the thread is free"
    finally:
        disk.set()
        n.close()


def test_the_round_asks_for_each_tick_and_asks_never_pile_up(tmp_path: Path) -> None:
    """A tick follows each round's ask at once (not the thread's timer); a held thread finds one."""
    n = Notifier(Outbox(tmp_path / "outbox.db"), SilenceStore(tmp_path))
    ticks: list[float] = []
    n.tick = lambda now: ticks.append(time.monotonic())  # type: ignore[method-assign]
    n.start()
    try:
        time.sleep(0.3)  # the thread's first tick, on its own
        asked = time.monotonic()
        n.sample(0.0)
        deadline = time.monotonic() + 1.0
        while len(ticks) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(ticks) == 2 and ticks[1] - asked < 0.2, "ticked when asked, not a second later"
        held = Counter[str]()
        n._inbox.put(lambda: (held.update(["in"]), time.sleep(0.5)))  # a hung disk, for a while
        time.sleep(0.05)
        for _ in range(50):
            n.sample(0.0)
        assert n._inbox.qsize() == 1, "one ask waits for the held thread, not one per round"
    finally:
        n.close()
