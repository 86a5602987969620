"""Kernel files kept open (samplers, process metrics); any other file opened every time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.files import KernelFile


def test_a_procfs_file_stays_open_and_each_read_is_fresh() -> None:
    uptime = KernelFile(Path("/proc/uptime"))
    try:
        first = float(uptime.read().split()[0])
        assert uptime._fd is not None, "a file procfs generates is kept open"
        time.sleep(0.05)
        second = float(uptime.read().split()[0])
        assert second > first, "read from offset 0 again: procfs wrote it anew"
    finally:
        uptime.close()
    assert uptime._fd is None


def test_a_regular_file_is_opened_each_time_and_a_replaced_one_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "stat"
    path.write_text("one\n")
    reader = KernelFile(path)
    assert reader.read() == "one\n" and reader._fd is None
    (tmp_path / "new").write_text("two\n")
    os.replace(tmp_path / "new", path)  # a fixture tree updated atomically
    assert reader.read() == "two\n"


def test_a_file_past_the_first_buffer_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big"
    text = "".join(f"line {i}\n" for i in range(30_000))  # about 300 KB
    path.write_text(text)
    assert KernelFile(path).read() == text


def test_process_metrics_are_prometheus_clients_own() -> None:
    from prometheus_client import ProcessCollector

    from agent.web.exporter import ProcessMetrics
    from agent.web.render import SUFFIX

    ours = {f.name: f for f in ProcessMetrics().families()}
    theirs = {m.name: m for m in ProcessCollector(registry=None).collect()}
    assert ours.keys() == theirs.keys() and len(ours) == 6
    for name, m in theirs.items():
        mine = ours[name]
        assert (mine.kind, mine.help) == (m.type, m.documentation), name
        assert [name + SUFFIX[mine.kind]] == [s.name for s in m.samples], name
        assert [labels for labels, _ in mine.samples] == [()], name
    for name in ("process_start_time_seconds", "process_max_fds"):
        assert ours[name].samples[0][1] == theirs[name].samples[0].value, name
    for name in ("process_resident_memory_bytes", "process_cpu_seconds"):
        assert ours[name].samples[0][1] == pytest.approx(theirs[name].samples[0].value, 0.2)


def test_a_json_lines_log_rotates_and_threads_append_whole_lines(tmp_path: Path) -> None:
    import json
    import threading

    from agent.files import JsonLinesLog

    log = JsonLinesLog(tmp_path / "x.log", max_bytes=4000, keep=50)

    def write(who: int) -> None:
        for i in range(100):
            log.append([{"who": who, "i": i, "pad": "x" * 50}])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = sorted(tmp_path.glob("x.log*"))
    assert len(files) > 5, "it rotated"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted((d["who"], d["i"]) for d in lines) == [(w, i) for w in range(4)
                                                          for i in range(100)]  # fmt: skip
    assert all(f.stat().st_size <= 4000 + 400 for f in files), "each about max_bytes"
