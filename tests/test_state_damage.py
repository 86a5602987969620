"""Damaged state files are moved aside and the agent starts with what it could read."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.alerting import persist
from agent.notify.channels import build
from agent.notify.dispatch import Dispatcher
from agent.notify.outbox import Outbox
from agent.notify.sender import Sender, Target
from agent.notify.silences import SilenceStore
from agent.shipping.registry import Registry, parse_entries
from agent.statedir import StateDirError, check, lock
from tests.conftest import AgentProcess, need, need_binary, wait_for
from tests.test_cli import dsagent
from tests.test_delivery import HOOK, T0, Transport, alert, cfg, notifier

Start = Callable[..., AgentProcess]


def aside(directory: Path, name: str) -> list[Path]:
    """The copies of a state file moved aside."""
    return sorted(directory.glob(f"{name}.corrupt-*"))


def started(agent_factory: Start, state: Path) -> AgentProcess:
    agent = agent_factory(f'[agent]\nstate_dir = "{state}"\n')
    agent.wait_healthy()
    wait_for(lambda: "dsagent_sampler_success" in agent.metrics(), 15, "the first round")
    return agent


def test_an_outbox_that_is_not_a_database(agent_factory: Start, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"this is no sqlite file" * 100)
    agent = started(agent_factory, state)
    assert len(aside(state, "outbox.db")) == 1
    assert "outbox.db is damaged" in agent.log() and "starting an empty outbox" in agent.log()


def test_alert_state_of_the_wrong_shape(agent_factory: Start, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "alerts.json").write_text("[1, 2, 3]")
    agent = started(agent_factory, state)
    assert len(aside(state, "alerts.json")) == 1
    assert "not an object with a list of alerts" in agent.log()


def test_damaged_alert_records_are_skipped_good_ones_kept(tmp_path: Path) -> None:
    good = {"rule": "g/Hot", "labels": [["alertname", "Hot"], ["severity", "warning"]],
            "state": "firing", "active_at": T0, "fired_at": T0}  # fmt: skip
    bad = [1, {"rule": "g/X"}, {**good, "state": "burning"}, {**good, "labels": 5}]
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"saved_at": T0, "alerts": [good, *bad]}))
    alerts = persist.restore(path, {"g/Hot": 0.0}, T0 + 1, 3600, 60)
    assert [a.rule for a in alerts] == ["g/Hot"] and path.exists(), "kept; the file is rewritten"


def test_a_damaged_nflog_row_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    n = notifier(tmp_path)
    n.deliver([alert("A"), alert("B")], [], T0)
    db = sqlite3.connect(tmp_path / "outbox.db")
    key = db.execute("SELECT key FROM nflog LIMIT 1").fetchone()[0]
    db.execute("UPDATE nflog SET state = '{not json' WHERE key = ?", (key,))
    db.commit()
    with caplog.at_level(logging.ERROR):
        dispatcher = Dispatcher(Outbox(tmp_path / "outbox.db"))
    assert len(dispatcher.groups) == 1 and key not in dispatcher.groups
    assert "1 damaged group(s) skipped" in caplog.text


def test_a_damaged_payload_row_does_not_stop_its_receiver(tmp_path: Path) -> None:
    n = notifier(tmp_path)
    n.deliver([alert("A"), alert("B", severity="warning")], [], T0)
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("UPDATE outbox SET payload = '{torn' WHERE id = (SELECT MIN(id) FROM outbox)")
    db.commit()
    sent = Transport()
    outbox = Outbox(tmp_path / "outbox.db")
    channel = build(cfg(tmp_path).receivers[0], HOOK)
    sender = Sender(outbox, Target("hook", 0), channel, 1.0, Counter(), post=sent)
    while sender.step(time.time() + 10) == 0.0:  # the rows carry the real clock here
        pass
    names = [a["labels"]["alertname"] for _, body, _ in sent.posts for a in body["alerts"]]
    assert names == ["B"] and outbox.head("hook#0") is None, "the torn one dropped, B delivered"


def test_a_truncated_silences_file_keeps_the_silences_in_force(tmp_path: Path) -> None:
    store = SilenceStore(tmp_path)
    first = store.add(['alertname="Hot"'], 3600, "me", "maintenance")
    assert [s.id for s in store.load()] == [first.id]  # the agent reads it every second
    text = store.path.read_text()
    store.path.write_text(text[: len(text) // 2])  # torn by a hand edit or a full disk
    store._forget()
    assert [s.id for s in store.load()] == [first.id], "the last good list stays in force"
    assert len(aside(tmp_path, "silences.json")) == 1
    second = store.add(['alertname="Cold"'], 60, "me", "mended through the API")
    assert {s.id for s in store.load()} == {first.id, second.id}


@pytest.mark.parametrize("text", ["[]", "null", '{"1:2:0": {"offset": "x", "path": "/l/a.log"}}',
                                  '{"1:2:0": {"offset": 5', "\0\0\0"])  # fmt: skip
def test_a_damaged_registry_falls_back_to_its_previous_copy(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "vllm.json"
    registry = Registry(path)
    registry.commit({"1:2:0": {"path": "/l/a.log", "offset": 100, "dev": 1, "ino": 2}})
    registry.commit({"1:2:0": {"offset": 250}})
    path.write_text(text)
    with caplog.at_level(logging.ERROR):
        again = Registry(path)
    if text.startswith('{"1:2:0": {"offset": "x"'):
        assert again.offset("1:2:0") == 0 and "/l/a.log" in caplog.text, "the file is named"
    else:
        assert again.offset("1:2:0") == 100, "the copy before the damaged one, not 0"
        assert len(aside(tmp_path, "vllm.json")) == 1 and "using the copy from" in caplog.text


def test_parse_entries_keeps_good_entries() -> None:
    good, bad = parse_entries('{"a": {"offset": 3}, "b": {"offset": -1}, "c": 7, "d": {}}')
    assert set(good) == {"a", "d"} and sorted(bad) == ["b", "c"]
    with pytest.raises(ValueError):
        parse_entries("[1]")


def test_a_second_agent_on_the_same_state_dir(agent_factory: Start, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = started(agent_factory, state)
    out = dsagent("run", "--config", str(first.config), env={"DSAGENT_HTTP__LISTEN": "127.0.0.1:1"})
    assert out.returncode == 2
    assert f"is in use by another dsagent (pid {first.proc.pid})" in out.stderr
    assert "Traceback" not in out.stderr
    assert first.proc.poll() is None, "the first one runs on"


def test_a_state_dir_that_is_a_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("oops")
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[agent]\nstate_dir = "{state}"\n')
    for command in ("check-config", "run"):
        out = dsagent(command, "--config", str(conf))
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert f"agent.state_dir {state} is not a directory" in out.stderr


def test_an_unwritable_state_dir(tmp_path: Path) -> None:
    need(os.geteuid() == 0, "a read-only mount needs root (root writes any directory)")
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run([need_binary("mount"), "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                   check=True)  # fmt: skip
    try:
        with pytest.raises(StateDirError, match="not writable"):
            check(ro)
        with pytest.raises(StateDirError, match="is not writable"):
            check(ro / "state", create=False)
        conf = tmp_path / "agent.toml"
        conf.write_text(f'[agent]\nstate_dir = "{ro / "state"}"\n')
        for command in ("check-config", "run"):
            out = dsagent(command, "--config", str(conf))
            assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
            assert f"agent.state_dir {ro / 'state'}" in out.stderr
        listed = dsagent("silence", "list", "--config", str(conf))
        assert listed.returncode == 0 and "no active silences" in listed.stdout, "reads only"
        added = dsagent("silence", "add", "alertname=X", "--comment", "c", "--config", str(conf))
        assert added.returncode == 2 and "Traceback" not in added.stderr, added.stderr
        assert "run as the agent's user, or give --token-file" in added.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_the_lock_names_its_holder(tmp_path: Path) -> None:
    fd = lock(tmp_path)
    try:
        assert (tmp_path / "dsagent.lock").read_text().strip() == str(os.getpid())
    finally:
        os.close(fd)
    os.close(lock(tmp_path))  # free again once the holder is gone
