"""Log shipping into a real Elasticsearch, beside rsyslog's omelasticsearch in the same run.

Writes N request-log lines; the agent ships them (one [[logs]] input, ECS documents) and then
rsyslog does (`imfile` tailing the same file, `mmjsonparse`, `omelasticsearch` in bulk mode)
into the same node (the integ-test build the tests use), each to its own index. Each shipper is
started first and left to settle, as on a node where it runs for months; the file then appears
(a hard link, so it is whole at once), and CPU comes from a cgroup per process, from that moment
until every document is searchable. Prints CPU seconds per 100,000 lines and lines per second
per core for both, and the ratio. rsyslog needs Debian's `rsyslog` and
`rsyslog-elasticsearch` (installed here when run as root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.cgroups import CpuGroup
from bench.common import free_port, wait_until
from tests.es import Node

ROOT = Path(__file__).resolve().parent.parent
INDEX = "logs-llm.inference-run{run}"  # the agent's data stream, in a namespace per run
RSYSLOG_INDEX = "rsyslog-bench-{run}"
OMELASTICSEARCH = Path("/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so")
RSYSLOG_CONF = """module(load="imfile")
module(load="mmjsonparse")
module(load="omelasticsearch")
global(workDirectory="{work}")
template(name="doc" type="list") {{ property(name="$!all-json") }}
input(type="imfile" file="{log}" tag="req" ruleset="es" maxLinesAtOnce="0")
ruleset(name="es" queue.type="linkedlist" queue.size="200000" queue.dequeueBatchSize="2000") {{
  action(type="mmjsonparse" cookie="")
  action(type="omelasticsearch" server="127.0.0.1" serverport="{port}" template="doc"
         searchIndex="{index}" bulkmode="on" maxbytes="5m" esVersion.major="8"
         action.resumeRetryCount="-1")
}}
"""


def write_lines(path: Path, n: int) -> None:
    """Write n request-log lines in the ops guide's format."""
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"timestamp": "2026-11-29T10:00:00.000Z", "request_id": f"r{i:07d}",
                                "model_version": "deepseek-v3", "input_length": 100 + i % 50,
                                "output_length": 200, "latency_ms": 120.5, "gpu_util": 0.8,
                                "error_code": None}) + "\n")  # fmt: skip


SETTLE = 5.0  # seconds a shipper runs before its file appears: start-up is not shipping


def timed(name: str, cmd: list[str], feed: Callable[[], None],
          done: Callable[[], bool]) -> tuple[float, float]:  # fmt: skip
    """Start a shipper in a cgroup, let it settle, `feed` it, wait for `done`: (wall, CPU s)."""
    group = CpuGroup(name)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group.enter(proc.pid)
    try:
        time.sleep(SETTLE)
        if proc.poll() is not None:
            raise SystemExit(f"bench: {name} exited with {proc.returncode}")
        cpu, began = group.seconds(), time.monotonic()
        feed()
        wait_until(done, 900, f"{name}: every document")
        return time.monotonic() - began, group.seconds() - cpu
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        group.remove()


def ship_agent(es: Node, work: Path, source: Path, lines: int, run: int, *,
               events: bool = True) -> tuple[float, float]:  # fmt: skip
    """Ship with dsagent (with the default log-event patterns on, unless `events` is False)."""
    log = work / "agent.log"
    port = free_port()
    (work / "agent.toml").write_text(
        f'[agent]\nstate_dir = "{work / "state"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[elasticsearch]\nhosts = ["{es.url}"]\nship_alerts = false\nnamespace = "run{run}"\n'
        f'[[logs]]\nname = "bench"\npaths = ["{log}"]\n[events]\ndefaults = {str(events).lower()}\n'
    )
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(work / "agent.toml")]
    index = INDEX.format(run=run)
    return timed("dsagent", cmd, lambda: os.link(source, log), lambda: es.count(index) >= lines)


def ship_rsyslog(es: Node, work: Path, source: Path, lines: int,
                 run: int) -> tuple[float, float] | None:  # fmt: skip
    """Ship with rsyslog's omelasticsearch; None where rsyslog cannot be had."""
    log = work / "rsyslog.log"
    missing = shutil.which("rsyslogd") is None or not OMELASTICSEARCH.exists()
    if missing and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "rsyslog", "rsyslog-elasticsearch"],
                       check=False, capture_output=True)  # fmt: skip
    if shutil.which("rsyslogd") is None:
        return None
    spool = work / "rsyslog"
    spool.mkdir()
    conf = work / "rsyslog.conf"
    port = es.url.rsplit(":", 1)[1]
    index = RSYSLOG_INDEX.format(run=run)
    conf.write_text(RSYSLOG_CONF.format(work=spool, log=log, port=port, index=index))
    cmd = ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslog.pid")]
    return timed("rsyslog", cmd, lambda: os.link(source, log),
                 lambda: es.count(index) >= lines)  # fmt: skip


def main() -> None:
    """Run both shippers `--runs` times and print each run and the medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--events",
        choices=("on", "off"),
        default="on",
        help="the default log-event patterns (CUDA OOM, NCCL...): on as shipped",
    )
    args = parser.parse_args()
    es = Node(free_port())
    es.start()
    results: list[tuple[tuple[float, float], tuple[float, float] | None]] = []
    try:
        for run in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                log = work / "requests.ndjson"  # a new file (and inode) each run: new ids
                write_lines(log, args.lines)
                os.chmod(tmp, 0o755)
                agent = ship_agent(es, work, log, args.lines, run, events=args.events == "on")
                peer = ship_rsyslog(es, work, log, args.lines, run)
            print(f"run {run + 1} of {args.runs}:")
            report(args.lines, agent, peer)
            results.append((agent, peer))
    finally:
        es.cleanup()
    medians(args.lines, results)


def medians(lines: int, results: list[tuple[tuple[float, float], tuple[float, float] | None]],
            ) -> None:  # fmt: skip
    """Print the median lines per core of each shipper over the runs, and their ratio."""
    agent = statistics.median(lines / a[1] for a, _ in results)
    print(f"\nmedian over {len(results)} runs: dsagent {agent:,.0f} lines/s per core", end="")
    peers = [lines / p[1] for _, p in results if p]
    if peers:
        peer = statistics.median(peers)
        print(
            f", rsyslog {peer:,.0f}; dsagent / rsyslog {agent / peer:.2f}x  (runs: "
            f"{', '.join(f'{lines / a[1] / (lines / p[1]):.2f}' for a, p in results if p)})"
        )
    else:
        print()


def report(lines: int, agent: tuple[float, float], peer: tuple[float, float] | None) -> None:
    """Print CPU per 100,000 lines and lines per core for each, and the ratio."""
    rows = [("dsagent", agent)] + ([("rsyslog omelasticsearch", peer)] if peer else [])
    print(f"{lines} lines into Elasticsearch 8.15 on the same cores:")
    for name, (wall, cpu) in rows:
        print(f"  {name:24} {wall:6.1f} s wall, {100_000 * cpu / lines:5.2f} CPU s per 100,000 "
              f"lines = {lines / cpu:8,.0f} lines/s per core")  # fmt: skip
    if peer:
        print(f"  dsagent / rsyslog, lines per core: {(lines / agent[1]) / (lines / peer[1]):.2f}x")
    else:
        print("  rsyslog is not installed: apt-get install rsyslog rsyslog-elasticsearch")


if __name__ == "__main__":
    main()
