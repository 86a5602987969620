"""A two-node Elasticsearch cluster loses its data node mid-stream: lost, doubled, stall.

Node `es-1` is master and data, `es-2` data only; the agent lists `es-2` first, so the kill
also tests failover. Lines keep coming while `es-2` is killed with SIGKILL and its shards are
promoted on `es-1`. Printed: documents expected, found, lost, doubled; the longest stall
(seconds with no new document searchable); documents the agent retried; the agent's backend
state and the log lines it wrote about it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.common import free_port, wait_until
from bench.shipping import INDEX, write_lines
from tests.es import Node

ROOT = Path(__file__).resolve().parent.parent


def cluster() -> tuple[Node, Node]:
    """Start es-1 (master, data) and es-2 (data) on loopback."""
    t1, t2 = free_port(), free_port()
    seeds = f'discovery.seed_hosts: ["127.0.0.1:{t1}"]\n'
    one = Node(free_port(), settings=f"transport.port: {t1}\n{seeds}cluster.initial_master_nodes:"
               " [es-1]\nnode.roles: [master, data, ingest]\n", name="es-1")  # fmt: skip
    two = Node(free_port(), settings=f"transport.port: {t2}\n{seeds}"
               "node.roles: [data, ingest]\n", name="es-2")  # fmt: skip
    one.start()
    two.start()
    wait_until(lambda: requests.get(f"{one.url}/_cluster/health", timeout=5).json()
               ["number_of_nodes"] == 2, 120, "a two-node cluster")  # fmt: skip
    return one, two


class Progress(threading.Thread):
    """Samples the document count every 0.5 s; the longest time it did not move is the stall."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node, self.stop, self.longest = node, threading.Event(), 0.0

    def run(self) -> None:
        last, since = -1, time.monotonic()
        while not self.stop.wait(0.5):
            try:
                count = self.node.count(INDEX)
            except requests.RequestException:
                continue
            if count != last:
                last, since = count, time.monotonic()
            elif count > 0:
                self.longest = max(self.longest, time.monotonic() - since)


def metric(url: str, prefix: str) -> list[str]:
    """Return the agent's /metrics lines that start with `prefix`."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith(prefix)]


def main() -> None:
    """Run it and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=100_000, help="lines before the kill")
    args = parser.parse_args()
    one, two = cluster()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), one, two, args.lines)
    finally:
        one.cleanup()
        two.cleanup()


def run(work: Path, one: Node, two: Node, lines: int) -> None:
    """Ship `lines`, kill es-2 mid-stream, ship as many again; print the figures."""
    log, port = work / "requests.log", free_port()
    write_lines(log, lines)
    (work / "agent.toml").write_text(
        f'[agent]\nstate_dir = "{work / "state"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[elasticsearch]\nhosts = ["{two.url}", "{one.url}"]\nship_alerts = false\n'
        f'[[logs]]\nname = "bench"\npaths = ["{log}"]\n'
    )
    stderr = (work / "agent.log").open("w")
    agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config",
                              str(work / "agent.toml")], cwd=ROOT, stderr=stderr)  # fmt: skip
    progress = Progress(one)
    progress.start()
    try:
        wait_until(lambda: one.count(INDEX) >= lines // 2, 300, "half of the first lines")
        assert two.proc is not None
        os.kill(two.proc.pid, signal.SIGKILL)  # mid-stream
        killed = time.monotonic()
        with log.open("a") as f:  # lines keep coming
            for i in range(lines, 2 * lines):
                f.write(f'{{"request_id": "r{i:07d}", "latency_ms": 1.0}}\n')
        wait_until(lambda: one.count(INDEX) >= 2 * lines, 600, "every document")
        caught_up = time.monotonic() - killed
        time.sleep(3)
        report(one, 2 * lines, caught_up, progress.longest, f"http://127.0.0.1:{port}")
    finally:
        progress.stop.set()
        agent.terminate()
        agent.wait(timeout=30)
        stderr.close()
    said = [x for x in (work / "agent.log").read_text().splitlines() if "elasticsearch" in x]
    print("agent log lines about elasticsearch:", len(said))
    for x in said[:6]:
        print("  ", x[:160])


def report(es: Node, expected: int, caught_up: float, stall: float, agent: str) -> None:
    """Print lost, doubled, the stall and what the agent retried."""
    found = es.count(INDEX)
    dupes = requests.post(f"{es.url}/{INDEX}/_search", timeout=60, json={
        "size": 0, "aggs": {"d": {"terms": {"field": "transaction.id", "min_doc_count": 2}}},
    }).json()["aggregations"]["d"]["buckets"]  # fmt: skip
    print(f"expected {expected}, found {found}: lost {expected - found}, doubled {len(dupes)}")
    print(f"longest stall {stall:.1f} s; all searchable {caught_up:.1f} s after the kill")
    for line in metric(agent, "dsagent_log_docs_failed_total") + metric(agent, "dsagent_backend"):
        print("  ", line)


if __name__ == "__main__":
    main()
