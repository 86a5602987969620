"""Delivery pieces on synthetic time: payloads, routes, groups, inhibition, silences, outbox."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alerting.state import Alert
from agent.config.notify import ReceiverConfig, RouteConfig
from agent.notify.channels import build
from agent.notify.dispatch import Dispatcher, build_routes, matching
from agent.notify.inhibit import DEFAULTS, inhibited
from agent.notify.outbox import MAX_BACKOFF, Outbox, backoff
from agent.notify.payload import notice, webhook_v4
from agent.notify.silences import SilenceStore, matcher_from_cli

T0 = 1_800_000_000.0


def alert(name: str, state: str = "firing", severity: str = "critical", **labels: str) -> Alert:
    full = tuple(sorted({"alertname": name, "severity": severity, **labels}.items()))
    a = Alert(f"g/{name}", full, state, T0, annotations={"summary": f"{name} {labels}"})  # type: ignore[arg-type]
    if state == "resolved":
        a.resolved_at = T0 + 60
    return a


def test_webhook_v4_has_every_field_alertmanager_receivers_read() -> None:
    a = notice(alert("GpuLost", gpu="1"), "gpu-07", "http://gpu-07:9840")
    payload = webhook_v4("oncall", "0:{}", {"alertname": "GpuLost"}, [a], "http://gpu-07:9840")
    assert set(payload) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["commonLabels"] == {
        "alertname": "GpuLost",
        "severity": "critical",
        "gpu": "1",
        "node": "gpu-07",
    }
    (item,) = payload["alerts"]
    assert set(item) == {
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    }
    assert item["startsAt"] == "2027-01-15T08:00:00.000Z" and item["endsAt"].startswith("0001-")


def receivers(*names: str) -> list[ReceiverConfig]:
    return [ReceiverConfig(name=n, type="webhook", url=f"http://127.0.0.1:9/{n}") for n in names]


def route(receiver: str, **kw: Any) -> RouteConfig:
    return RouteConfig.model_validate({"receiver": receiver, **kw})


def test_routes_first_match_wins_unless_continue() -> None:
    routes = build_routes(
        [
            route("gpu", matchers=['alertname=~"Gpu.*"'], **{"continue": True}),
            route("crit", matchers=['severity="critical"']),
            route("rest"),
        ],
        receivers("gpu", "crit", "rest"),
    )
    names = lambda labels: [r.cfg.receiver for r in matching(routes, labels)]  # noqa: E731
    assert names({"alertname": "GpuLost", "severity": "critical"}) == ["gpu", "crit"]
    assert names({"alertname": "DiskIoWaitHigh", "severity": "warning"}) == ["rest"]
    every = build_routes([], receivers("a", "b"))
    assert [r.cfg.receiver for r in matching(every, {"alertname": "X"})] == ["a", "b"]
    assert all(r.cfg.group_wait == 0 for r in every)


def dispatcher(outbox: Outbox, routes: list[RouteConfig], recv: list[ReceiverConfig]) -> Dispatcher:
    d = Dispatcher(outbox)
    d.configure(build_routes(routes, recv), recv, "", resend_delay=60)
    return d


def rows(outbox: Outbox, receiver: str) -> list[dict[str, Any]]:
    out = []
    while (item := outbox.head(receiver)) is not None:
        out.append(item.payload)
        outbox.done(item)
    return out


def test_grouping_timers_as_alertmanager(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    cfg = route("hook", group_wait=10, group_interval=30, repeat_interval=300)
    d = dispatcher(outbox, [cfg], receivers("hook"))
    gpu0 = notice(alert("Hot", gpu="0"), "n", "")
    gpu1 = notice(alert("Hot", gpu="1"), "n", "")
    assert d.flush([gpu0], T0) == 0, "group_wait"
    assert d.flush([gpu0, gpu1], T0 + 10) == 1, "both in one group after group_wait"
    (sent,) = rows(outbox, "hook#0")
    assert len(sent["alerts"]) == 2 and sent["groupLabels"] == {"alertname": "Hot"}
    assert d.flush([gpu0, gpu1], T0 + 20) == 0, "nothing new"
    resolved = notice(alert("Hot", state="resolved", gpu="1"), "n", "")
    assert d.flush([gpu0, resolved], T0 + 30) == 0, "within group_interval"
    assert d.flush([gpu0, resolved], T0 + 40) == 1, "after group_interval: the resolve"
    (update,) = rows(outbox, "hook#0")
    assert sorted(a["status"] for a in update["alerts"]) == ["firing", "resolved"]
    assert d.flush([gpu0, resolved], T0 + 300) == 0, "the resolve is not sent again"
    assert d.flush([gpu0, resolved], T0 + 340) == 1, "repeat_interval (to the second) re-sends"
    assert [a["status"] for a in rows(outbox, "hook#0")[0]["alerts"]] == ["firing"]


def test_a_restart_keeps_each_group_and_counts_damaged_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    d = dispatcher(outbox, [route("hook", group_wait=0)], receivers("hook"))
    assert d.flush([notice(alert("Hot", gpu="0"), "n", "")], T0) == 1
    assert d.flush([notice(alert("Cold", gpu="0"), "n", "")], T0) == 1
    with outbox._db() as db:
        db.execute("INSERT INTO nflog (key, state, updated) VALUES ('x', '{\"route\": 1}', 0)")
        db.execute("INSERT INTO nflog (key, state, updated) VALUES ('y', 'not json', 0)")
    again = Dispatcher(outbox)
    assert sorted(again.groups) == sorted(d.groups) and len(again.groups) == 2
    assert all(state.key == key for key, state in again.groups.items())
    assert "notification log: 2 damaged group(s) skipped" in caplog.text


def test_no_resolve_for_an_alert_never_notified_as_firing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    d = dispatcher(outbox, [], receivers("hook"))
    crit = notice(alert("Hot", severity="critical"), "n", "")
    assert d.flush([crit], T0) == 1  # the warning was inhibited: never sent
    warn_resolved = notice(alert("Hot", state="resolved", severity="warning"), "n", "")
    crit_resolved = notice(alert("Hot", state="resolved", severity="critical"), "n", "")
    assert d.flush([warn_resolved, crit_resolved], T0 + 120) == 1
    (_, update) = rows(outbox, "hook#0")
    assert [a["labels"]["severity"] for a in update["alerts"]] == ["critical"]


def test_send_resolved_false_keeps_quiet(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    cfg = route("hook", send_resolved=False)
    d = dispatcher(outbox, [cfg], receivers("hook"))
    assert d.flush([notice(alert("Hot"), "n", "")], T0) == 1
    assert d.flush([notice(alert("Hot", state="resolved"), "n", "")], T0 + 600) == 0


def test_alertmanager_receivers_resend_like_prometheus(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    am = [ReceiverConfig(name="am", type="alertmanager", urls=["http://a:9093", "http://b:9093"])]
    d = dispatcher(outbox, [], am)
    firing = notice(alert("GpuLost"), "n", "")
    assert d.flush([firing], T0) == 1
    assert d.flush([firing], T0 + 30) == 0
    assert d.flush([firing], T0 + 60) == 1, "re-sent while firing"
    gone = notice(alert("GpuLost", state="resolved"), "n", "")
    assert d.flush([gone], T0 + 70) == 1 and d.flush([gone], T0 + 200) == 0
    for target in ("am#0", "am#1"):  # to every Alertmanager, coalesced: its state now, once
        assert [a["status"] for a in rows(outbox, target)] == ["resolved"]


def test_default_inhibition_mutes_a_down_workers_own_alerts() -> None:
    down = {"alertname": "WorkerDown", "worker": "vllm-0"}
    slow0 = {"alertname": "InferenceLatencyHigh", "worker": "vllm-0"}
    slow1 = {"alertname": "InferenceLatencyHigh", "worker": "vllm-1"}
    assert inhibited(slow0, [down], DEFAULTS)
    assert not inhibited(slow1, [down], DEFAULTS)
    assert not inhibited(down, [down], DEFAULTS)


def test_silences_add_match_expire(tmp_path: Path) -> None:
    store = SilenceStore(tmp_path)
    s = store.add(
        [matcher_from_cli("alertname=GpuLost"), matcher_from_cli('gpu=~"1|2"')],
        3600,
        "bob",
        "swap GPU 1",
    )
    now = time.time()
    assert store.silencing({"alertname": "GpuLost", "gpu": "2"}, now) == s
    assert store.silencing({"alertname": "GpuLost", "gpu": "3"}, now) is None
    assert SilenceStore(tmp_path).load()[0].comment == "swap GPU 1", "persisted"
    assert store.expire(s.id) and not store.expire(s.id)
    assert store.silencing({"alertname": "GpuLost", "gpu": "2"}, time.time()) is None


@pytest.mark.parametrize("bad", ["gpu", "=x", 'a=~"("'])
def test_bad_silence_matchers(bad: str) -> None:
    with pytest.raises(ValueError):
        matcher_from_cli(bad)


def test_outbox_keeps_order_and_ignores_a_repeated_key(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    for i in range(5):
        assert outbox.put("r", f"k{i}", {"i": i})
    assert not outbox.put("r", "k3", {"i": 99})
    item = outbox.head("r")
    assert item is not None
    outbox.failed(item, "HTTP 500", time.time())
    assert [p["i"] for p in rows(Outbox(tmp_path / "o.db"), "r")] == [0, 1, 2, 3, 4]


@given(st.integers(0, 60))
def test_backoff_grows_with_jitter_and_is_capped(attempts: int) -> None:
    delay = backoff(attempts)
    base = min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1))
    assert 0.5 * base <= delay <= 1.5 * base


PAYLOAD = webhook_v4(
    "r", "k", {"alertname": "GpuLost"}, [notice(alert("GpuLost", gpu="1"), "n", "")], ""
)


def test_dingtalk_signature_verifies_with_the_published_algorithm() -> None:
    secret = "SEC0123456789abcdef"
    cfg = ReceiverConfig(
        name="d", type="dingtalk", url="https://oapi.example/robot/send?access_token=t"
    )
    cfg = cfg.model_copy(update={"secret_env": None})
    channel = build(cfg, cfg.url)
    channel.secret = secret.encode()  # type: ignore[attr-defined]
    url, body, _ = channel.request(PAYLOAD, "k")
    query = parse_qs(urlsplit(url).query)
    ts = query["timestamp"][0]
    # DingTalk's documented Python sample, written out independently:
    string_to_sign = f"{ts}\n{secret}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest())
    assert query["sign"][0] == expected.decode()  # parse_qs decodes once, as DingTalk does
    assert abs(int(ts) / 1000 - time.time()) < 5
    assert json.loads(body)["msgtype"] == "markdown"


def test_feishu_signature_verifies_with_the_published_algorithm() -> None:
    secret = "feishu-secret"
    cfg = ReceiverConfig(name="f", type="feishu", url="https://open.example/bot/v2/hook/x")
    channel = build(cfg, cfg.url)
    channel.secret = secret.encode()  # type: ignore[attr-defined]
    _, body, _ = channel.request(PAYLOAD, "k")
    data = json.loads(body)
    # Feishu's documented sample: the key is "timestamp\nsecret", the message is empty.
    key = f"{data['timestamp']}\n{secret}".encode()
    assert (
        data["sign"] == base64.b64encode(hmac.new(key, digestmod=hashlib.sha256).digest()).decode()
    )
    assert data["msg_type"] == "text" and "GpuLost" in data["content"]["text"]


def test_chat_channels_read_the_robots_error_codes() -> None:
    for kind in ("dingtalk", "wecom"):
        ch = build(ReceiverConfig(name="x", type=kind, url="http://h/x"), "http://h/x")  # type: ignore[arg-type]
        assert ch.accepted(200, '{"errcode":0,"errmsg":"ok"}')
        assert not ch.accepted(200, '{"errcode":310000,"errmsg":"sign not match"}')
        assert not ch.accepted(502, "")
    feishu = build(ReceiverConfig(name="f", type="feishu", url="http://h/f"), "http://h/f")
    assert feishu.accepted(200, '{"code":0}') and not feishu.accepted(200, '{"code":19021}')


def test_chat_text_says_a_resolved_value_is_the_last_firing_one() -> None:
    from agent.notify.payload import render_text

    firing = dataclasses.replace(notice(alert("Slow"), "n", ""),
                                 annotations={"summary": "p95 latency 1.9s on vllm-0"})  # fmt: skip
    done = dataclasses.replace(firing, status="resolved")
    payload = webhook_v4("chat", "k", {}, [firing, done], "")
    lines = render_text(payload, None).splitlines()
    assert lines[1].endswith("p95 latency 1.9s on vllm-0")
    assert lines[2].endswith("p95 latency 1.9s on vllm-0 (as it last fired)")


def test_a_failed_post_names_no_part_of_a_chat_webhook_url() -> None:
    from agent.secrets import scrub

    url = "https://oapi.dingtalk.com/robot/send?access_token=ding-token-e5f6"
    error = ("HTTPSConnectionPool(host='oapi.dingtalk.com', port=443): Max retries exceeded "
             "with url: /robot/send?access_token=ding-token-e5f6 (Caused by timeout)")  # fmt: skip
    assert "ding-token" not in scrub(error, url) and "oapi.dingtalk.com" in scrub(error, url)
    slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX"
    path = "/services/T000/B000/XXXXXXXXXXXX"
    assert "XXXXXXXXXXXX" not in scrub(f"Max retries exceeded with url: {path}", slack)
    assert scrub("connection refused", "http://127.0.0.1:9/h") == "connection refused"


def test_a_failed_write_for_one_group_leaves_the_others_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.notify.outbox import OutboxWriteError

    outbox = Outbox(tmp_path / "o.db")
    d = dispatcher(outbox, [route("hook", group_wait=0)], receivers("hook"))
    commit, calls = outbox.commit, []

    def first_fails(*args: Any, **kw: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise OutboxWriteError("disk full")
        commit(*args, **kw)

    monkeypatch.setattr(outbox, "commit", first_fails)
    alerts = [notice(alert(name), "n", "") for name in ("Hot", "Cold", "Warm")]
    assert d.flush(alerts, T0) == 2, "the two groups after the failed one are queued"
    assert len(rows(outbox, "hook#0")) == 2
    assert d.flush(alerts, T0 + 1) == 1, "the failed one is queued on the next flush"


def test_an_alertmanager_route_that_continues_leaves_the_next_route_its_alert(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "o.db")
    recv = [ReceiverConfig(name="am", type="alertmanager", url="http://a:9093"),
            *receivers("hook")]  # fmt: skip
    routes = [RouteConfig.model_validate({"receiver": "am", "continue": True}),
              route("hook", group_wait=0)]  # fmt: skip
    d = Dispatcher(outbox)
    d.configure(build_routes(routes, recv), recv, "http://gpu-07:9840", resend_delay=60)
    assert d.flush([notice(alert("Hot"), "n", "")], T0) == 2
    assert [a["labels"]["alertname"] for a in rows(outbox, "am#0")] == ["Hot"]
    (payload,) = rows(outbox, "hook#0")
    assert payload["receiver"] == "hook" and payload["externalURL"] == "http://gpu-07:9840"
    assert payload["groupKey"] in d.groups, "the group key names its group"


def test_a_group_whose_route_a_reload_removed_is_forgotten_for_good(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    recv = receivers("hook")
    d = dispatcher(outbox, [route("hook", group_wait=0)], recv)
    assert d.flush([notice(alert("Hot"), "n", "")], T0) == 1
    (old,) = d.groups
    d.configure(build_routes([route("hook", group_wait=5)], recv), recv, "", resend_delay=60)
    d.flush([], T0 + 1)
    assert old not in d.groups
    assert old not in Dispatcher(outbox).groups, "gone from the notification log too"


def test_failed_outbox_writes_are_counted_and_said_once_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.notify.outbox import OutboxWriteError

    outbox = Outbox(tmp_path / "o.db")
    assert outbox.put("hook#0", "a", {"n": 1})
    db = outbox._db()
    with caplog.at_level("WARNING", logger="agent.notify.outbox"):
        db.execute("PRAGMA query_only = ON")  # every write now fails, as on a full disk
        for key in ("b", "c", "d"):
            with pytest.raises(OutboxWriteError):
                outbox.put("hook#0", key, {"n": 1})
        db.execute("PRAGMA query_only = OFF")
        assert outbox.put("hook#0", "e", {"n": 1})
        assert outbox.put("hook#0", "f", {"n": 1})
        db.execute("PRAGMA query_only = ON")
        with pytest.raises(OutboxWriteError):
            outbox.put("hook#0", "g", {"n": 1})
        db.execute("PRAGMA query_only = OFF")
    assert outbox.write_failures == 4
    said = [(r.levelname, r.getMessage().split(": ", 1)[1]) for r in caplog.records]
    failed, again = ("ERROR", "write failed"), ("WARNING", "writes succeed again")
    assert [(level, text.split(" (")[0]) for level, text in said] == [failed, again, failed]
    assert [r.payload["n"] for r in outbox.batch("hook#0", 10)] == [1, 1, 1], "a, e and f"
