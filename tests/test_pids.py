"""Naming GPU processes: a process's worker is found once, its name and identity re-checked."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from agent.config import WorkerConfig
from agent.workers import pids
from agent.workers.pids import WorkerMap
from tests.conftest import wait_for

# Renames itself (PR_SET_NAME) once "go" arrives on stdin, then sleeps.
RENAMER = (
    "import ctypes, sys, time\n"
    "sys.stdin.readline()\n"
    "ctypes.CDLL(None).prctl(15, b'renamed', 0, 0, 0)\n"
    "print('done', flush=True)\n"
    "time.sleep(30)\n"
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", RENAMER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record every walk of a process's ancestors (the costly part of a lookup)."""
    walked: list[int] = []
    original = WorkerMap._worker

    def counted(self: WorkerMap, proc: psutil.Process) -> str | None:
        walked.append(proc.pid)
        return original(self, proc)

    monkeypatch.setattr(WorkerMap, "_worker", counted)
    monkeypatch.setattr(pids, "RECHECK", 0.0)  # every call is past the recheck time
    return walked


def workers() -> WorkerMap:
    return WorkerMap([WorkerConfig(name="vllm-a", url="http://127.0.0.1:8000",
                                   pids=[os.getpid()])])  # fmt: skip


def test_a_known_process_keeps_its_worker_and_has_its_new_name_read(
    child: subprocess.Popen[str], lookups: list[int]
) -> None:
    wm = workers()
    first = wm.describe(child.pid)
    assert first[1] == "vllm-a" and first[0] != "renamed"
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.stdout.readline().strip() == "done"
    assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "renamed"
    assert wm.describe(child.pid) == ("renamed", "vllm-a")
    assert lookups == [child.pid], "the ancestors were walked once, not at every recheck"


def test_a_pid_that_is_another_process_now_is_looked_up_afresh(
    child: subprocess.Popen[str], lookups: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wm = workers()
    wm.describe(child.pid)
    # A reused pid: the process the map holds no longer runs (its start time differs).
    monkeypatch.setattr(psutil.Process, "is_running", lambda self: False)
    assert wm.describe(child.pid)[1] == "vllm-a"
    assert lookups == [child.pid, child.pid]


def test_a_process_that_ended_is_named_unknown(
    child: subprocess.Popen[str], lookups: list[int]
) -> None:
    wm = workers()
    assert wm.describe(child.pid)[1] == "vllm-a"
    child.kill()
    child.wait()
    wait_for(lambda: not psutil.pid_exists(child.pid), 5, "the child's pid to go")
    assert wm.describe(child.pid) == ("?", None)
