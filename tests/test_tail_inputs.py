"""What a log directory may hold besides logs (symlinks, FIFOs, holes): none stops an input."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.shipping.registry import Registry
from agent.shipping.tail import Tailer
from tests.conftest import AgentProcess, wait_for


def tailer(logs: Path, tmp: Path, follow: bool = False, pattern: str = "*.log") -> Tailer:
    return Tailer([str(logs / pattern)], Registry(tmp / "registry.json"), follow)


def read_all(t: Tailer) -> list[bytes]:
    t.discover()
    return [line.data for line in t.lines(1 << 30)]


def test_a_symlink_to_a_secret_is_not_read(tmp_path: Path) -> None:
    logs, secret = tmp_path / "logs", tmp_path / "token"
    logs.mkdir()
    secret.write_text("s3cr3t-token\n")
    (logs / "a.log").write_text("real line\n")
    (logs / "token.log").symlink_to(secret)
    t = tailer(logs, tmp_path)
    assert read_all(t) == [b"real line"]
    assert t.skipped["symlink"] == 1
    assert read_all(t) == [] and t.skipped["symlink"] == 1, "counted once, not each poll"


def test_follow_symlinks_reaches_only_files_the_globs_match(tmp_path: Path) -> None:
    logs, elsewhere = tmp_path / "logs", tmp_path / "etc"
    logs.mkdir()
    elsewhere.mkdir()
    (logs / "current.log.1").write_text("rotated line\n")
    (logs / "current.log").symlink_to(logs / "current.log.1")  # inside: followed
    (elsewhere / "shadow").write_text("root:x:0:0\n")
    (logs / "shadow.log").symlink_to(elsewhere / "shadow")  # outside: refused
    t = tailer(logs, tmp_path, follow=True, pattern="current.log*")
    assert read_all(t) == [b"rotated line"], "one file, read once through both names"
    t2 = tailer(logs, tmp_path, follow=True)
    assert read_all(t2) == [], "current.log.1 is not a *.log: neither link is followed"
    assert (str(logs / "shadow.log"), "symlink_target") in t2._left_out


def test_a_fifo_does_not_stop_the_input(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "pipe.log")
    (logs / "b.log").write_text("line one\n")
    t = tailer(logs, tmp_path)
    got: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: got.append(read_all(t)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "blocked on the FIFO"
    assert got == [[b"line one"]] and t.skipped["not_regular"] == 1
    with (logs / "b.log").open("a") as f:
        f.write("line two\n")
    assert read_all(t) == [b"line two"]


def test_a_fifo_swapped_in_after_the_look_is_not_opened(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "c.log"
    path.write_text("x\n")
    t = tailer(logs, tmp_path)
    st = os.stat(path)
    path.unlink()
    os.mkfifo(path)
    t._open(str(path), st, 0, 0)  # the race: a FIFO in its place between stat and open
    assert t.files == {}


def test_a_sparse_file_ships_its_lines_and_skips_the_hole(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "sparse.log"
    with path.open("wb") as f:
        f.write(b"before the hole\n")
        f.seek(2 << 30)  # 2 GiB of nothing on disk
        f.write(b"after the hole\n")
    with (logs / "pre.log").open("wb") as f:
        f.write(b"text\n" + b"\0" * 300_000 + b"cut before\0\0" + b"\0" * 100 + b"tail\n")
    t = tailer(logs, tmp_path)
    got = read_all(t) + read_all(t)
    assert got == [b"text", b"cut before", b"tail", b"before the hole", b"after the hole"]
    assert t.nul_bytes >= (2 << 30) - 16 and t.nul_bytes < (2 << 30) + 400_000


@pytest.mark.integration
def test_the_agent_ships_past_a_fifo_a_symlink_and_a_hole(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    os.mkfifo(logs / "pipe.log")
    (tmp_path / "token").write_text("never-ship-me\n")
    (logs / "token.log").symlink_to(tmp_path / "token")
    with (logs / "vllm.log").open("wb") as f:
        f.write(json.dumps({"request_id": "r1", "latency_ms": 5}).encode() + b"\n")
        f.seek(1 << 30)
        f.write(json.dumps({"request_id": "r2", "latency_ms": 7}).encode() + b"\n")
    agent = agent_factory(f'[[logs]]\nname = "vllm"\npaths = ["{logs}/*.log"]\n')
    shipped = agent.state / "shipped" / "llm.inference.ndjson"

    def ids() -> list[str]:
        if not shipped.exists():
            return []
        return [json.loads(x).get("request_id", "?") for x in shipped.read_text().splitlines()]

    wait_for(lambda: len(ids()) == 2, 20, f"both requests\n{agent.log()}")
    assert "never-ship-me" not in shipped.read_text()
    symlink = 'dsagent_log_files_skipped_total{input="vllm",reason="symlink"} 1.0'
    wait_for(lambda: symlink in agent.metrics(), 10, "the shipping job's next round")
    metrics = agent.metrics()
    assert 'dsagent_log_files_skipped_total{input="vllm",reason="not_regular"} 1.0' in metrics
    assert "left out: a symlink" in agent.log() and "run of NUL bytes" in agent.log()
