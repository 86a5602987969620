"""500 reloads that change the receivers leave no file descriptors or memory behind."""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.config import Config
from agent.notify.notifier import Notifier
from agent.notify.outbox import Outbox
from agent.notify.silences import SilenceStore
from tests.conftest import AgentProcess, Sink, wait_for
from tests.test_delivery import alert

pytestmark = pytest.mark.integration


def config(tmp: Path, url: str, i: int) -> Config:
    name = f"hook{i % 3}"
    return Config.model_validate({
        "agent": {"state_dir": str(tmp), "node_name": "n1"},
        "receivers": [{"name": name, "type": "webhook", "url": f"{url}/{name}"}],
        "routes": [{"receiver": name, "group_wait": "0s", "group_interval": "1s"}],
    })  # fmt: skip


@pytest.fixture
def notifier(tmp_path: Path) -> Iterator[Notifier]:
    n = Notifier(Outbox(tmp_path / "outbox.db"), SilenceStore(tmp_path))
    yield n
    n.close()


def test_500_receiver_changes_leak_nothing(notifier: Notifier, sink: Sink, tmp_path: Path) -> None:
    me = psutil.Process()

    def cycle(start: int, count: int) -> None:
        for i in range(start, start + count):
            notifier.configure(config(tmp_path, sink.url, i))
            notifier.deliver([alert("A", n=str(i))], [], time.time())
        wait_for(lambda: not notifier.outbox.stats(), 30, "the outbox to drain")
        assert sink.requests, "the receivers were sent to"

    cycle(0, 50)  # caches, pools and the allocator settle
    gc.collect()
    fds, rss = me.num_fds(), me.memory_info().rss
    cycle(50, 500)
    gc.collect()
    assert me.num_fds() - fds <= 2, [f.path for f in me.open_files()][-20:]
    grown = me.memory_info().rss - rss
    assert grown < 10 * 2**20, f"{grown / 2**20:.1f} MiB more after 500 reloads"


def test_500_sighups_through_the_whole_agent(agent_factory: Callable[..., AgentProcess]) -> None:
    def receivers(i: int) -> str:
        return (f'[[receivers]]\nname = "hook{i % 3}"\ntype = "webhook"\n'
                f'url = "http://127.0.0.1:9/hook{i % 3}"\n')  # fmt: skip

    agent = agent_factory(receivers(0))
    agent.wait_healthy()
    me = psutil.Process(agent.proc.pid)

    def reload_to(i: int) -> None:
        agent.config.write_text(agent.render(receivers(i)))
        agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while agent.log().count("configuration reloaded") < i:  # polled closely: 550 of them
            assert time.monotonic() < deadline, f"reload {i}\n{agent.log()[-2000:]}"
            time.sleep(0.005)

    for i in range(1, 51):
        reload_to(i)
    fds, rss = me.num_fds(), me.memory_info().rss
    for i in range(51, 551):
        reload_to(i)
    assert me.num_fds() - fds <= 3, "a sender or two may be between threads"
    assert me.memory_info().rss - rss < 8 * 2**20
