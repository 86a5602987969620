"""The state dir's disk fills while alerts change: nothing lost, nothing sent twice."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import AgentProcess, Sink, demo, need, need_binary, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs under the test's own directory, unmounted after."""
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    mount = need_binary("mount")
    where = tmp_path / "state"
    where.mkdir()
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Write a file until the disk is full; return it."""
    filler = where / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    return filler


def posted(sink: Sink) -> list[tuple[str, str]]:
    """Every (alert name label, status) the webhook received, in order."""
    out = []
    for request in sink.on("/hook"):
        body = request["json"]
        assert isinstance(body, dict)
        out += [(a["labels"]["name"], a["status"]) for a in body["alerts"]]
    return out


def firing(agent: AgentProcess) -> set[str]:
    """The names of the alerts firing in the ALERTS series (it needs no disk to say so)."""
    found = re.findall(r"^ALERTS\{([^}]*)\} 1", agent.metrics(), re.M)
    return {re.search(r'(?:^|,)name="([^"]*)"', f).group(1) for f in found  # type: ignore[union-attr]
            if 'alertstate="firing"' in f}  # fmt: skip


def test_disk_full_during_a_resolve_and_a_fire(
    agent_factory: Callable[..., AgentProcess], sink: Sink, small_disk: Path, tmp_path: Path
) -> None:
    rules, prom = demo(tmp_path, {"a": 1, "c": 0})
    values = prom / "demo.prom"
    agent = agent_factory(
        f'[agent]\nstate_dir = "{small_disk}"\n'
        f'[rules]\ndefaults = false\npaths = ["{rules}"]\n[textfile]\ndirectory = "{prom}"\n'
        f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{sink.url}/hook"\n'
        '[[routes]]\nreceiver = "hook"\ngroup_by = ["name"]\ngroup_interval = "1s"\n'
    )
    wait_for(lambda: posted(sink) == [("a", "firing")], 20, f"a firing\n{agent.log()}")
    filler = fill(small_disk)
    values.write_text('demo_value{name="a"} 0\ndemo_value{name="c"} 1\n')
    wait_for(lambda: firing(agent) == {"c"}, 15, "the engine to see a resolve and c fire")
    try:
        api_answered = requests.get(agent.url + "/api/v1/alerts", timeout=5).ok
    except requests.RequestException:
        api_answered = False
    time.sleep(3)  # a few rounds of flushes meet the full disk
    assert posted(sink) == [("a", "firing")], "nothing can be queued while the disk is full"
    filler.unlink()  # space is back
    want = [("a", "firing"), ("a", "resolved"), ("c", "firing")]
    wait_for(lambda: sorted(posted(sink)) == want, 20, f"what was owed; got {posted(sink)}")
    with contextlib.suppress(AssertionError):
        wait_for(lambda: len(posted(sink)) > 3, 4, "a duplicate")
    assert sorted(posted(sink)) == want, "each sent once"
    log = agent.log()
    assert "write failed" in log and "writes succeed again" in log
    assert agent.proc.poll() is None, "the agent kept running"
    assert log.count("writes succeed again") == 1, "said once, not once a round"
    assert api_answered, "the admin API answers on a full disk (its audit entry goes to the log)"
