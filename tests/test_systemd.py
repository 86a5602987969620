"""The unit file and sd_notify, tested without systemd."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent import sdnotify
from agent.loop import RoundLoop
from agent.store import Sample, SeriesStore
from tests.conftest import ROOT, AgentProcess, need_binary, wait_for


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def seen(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.messages) if m.startswith(prefix)]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    s = NotifySocket(tmp_path / "notify.sock")
    yield s
    s.stop.set()
    s.thread.join(timeout=2)
    s.sock.close()


def test_unit_is_hardened_to_at_most_2_5() -> None:
    analyze = need_binary("systemd-analyze")
    out = subprocess.run(
        [
            analyze,
            "security",
            "--offline=true",
            "--no-pager",
            str(ROOT / "systemd" / "dsagent.service"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    score = re.search(r"Overall exposure level for dsagent.service: ([\d.]+)", out.stdout)
    assert score, out.stdout + out.stderr
    assert float(score.group(1)) <= 2.5


def test_unit_file_declares_what_the_service_needs() -> None:
    unit = (ROOT / "systemd" / "dsagent.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=dsagent",
        "LogsDirectory=dsagent",
        "ConfigurationDirectory=dsagent",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_RAW",
        "DeviceAllow=/dev/nvidiactl rw",
        "User=dsagent",
    ):
        assert line in unit, line


def test_ready_watchdog_reload_and_stopping(
    agent_factory: Callable[..., AgentProcess], notify_socket: NotifySocket, tmp_path: Path
) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    agent = agent_factory("", env)
    wait_for(lambda: bool(notify_socket.seen("READY=1")), 20, "READY=1")
    assert agent.metrics().count("dsagent_sampler_success{") >= 1, "READY came after a sample"
    first = notify_socket.seen("READY=1")[0]
    time.sleep(3)
    beats = [t for t in notify_socket.seen("WATCHDOG=1") if t > first]
    assert 4 <= len(beats) <= 9, (
        f"WATCHDOG every 0.5 s (half of WatchdogSec), got {len(beats)} in 3 s"
    )
    agent.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(notify_socket.seen("READY=1")) >= 2, 10, "READY=1 after the reload")
    reloading = notify_socket.seen("RELOADING=1")
    assert reloading and reloading[0] < notify_socket.seen("READY=1")[1]
    assert notify_socket.seen("MONOTONIC_USEC=")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=10) == 0
    wait_for(lambda: bool(notify_socket.seen("STOPPING=1")), 5, "STOPPING=1")


def test_a_stalled_loop_stops_the_watchdog(
    notify_socket: NotifySocket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    going = threading.Event()
    going.set()

    class Stall:  # a sampler that holds the loop's thread while `going` is clear
        name, metrics = "stall", {}

        def sample(self, now: float) -> list[Sample]:
            while not going.is_set():
                time.sleep(0.05)
            return []

    loop = RoundLoop(SeriesStore(), 0.2)
    loop.add([Stall()])
    loop.every("watchdog", 0.2, sdnotify.keep_alive)
    loop.start()
    try:
        wait_for(lambda: len(notify_socket.seen("WATCHDOG=1")) >= 3, 5, "beats")
        going.clear()
        time.sleep(0.3)
        before = len(notify_socket.seen("WATCHDOG=1"))
        time.sleep(1.5)
        assert len(notify_socket.seen("WATCHDOG=1")) == before
        going.set()
        wait_for(lambda: len(notify_socket.seen("WATCHDOG=1")) > before, 5, "beats again")
    finally:
        going.set()
        loop.stop()


def test_notify_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert sdnotify.watchdog_interval() is None, "the watchdog is for another process"
