"""Log shipping throughput into a local Elasticsearch: lines per second and CPU per line.

Writes N request-log lines, starts the agent with one [[logs]] input shipping to a real
Elasticsearch node (the integ-test zip, as the tests use), and times it until every document
is searchable. Filebeat is not packaged for these machines, so it is not measured here: its
published figure, about 15-17k events/s per core, is printed for context only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import cpu_seconds, free_port, wait_until
from tests.es import Node

ROOT = Path(__file__).resolve().parent.parent
INDEX = "logs-llm.inference-default"


def write_lines(path: Path, n: int) -> None:
    """Write n request-log lines in the ops guide's format."""
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"timestamp": "2026-11-29T10:00:00.000Z", "request_id": f"r{i:07d}",
                                "model_version": "deepseek-v3", "input_length": 100 + i % 50,
                                "output_length": 200, "latency_ms": 120.5, "gpu_util": 0.8,
                                "error_code": None}) + "\n")  # fmt: skip


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    es = Node(free_port())
    es.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            log = work / "requests.log"
            write_lines(log, args.lines)
            port = free_port()
            (work / "agent.toml").write_text(
                f'[agent]\nstate_dir = "{work / "state"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
                f'[elasticsearch]\nhosts = ["{es.url}"]\nship_alerts = false\n'
                f'[[logs]]\nname = "bench"\npaths = ["{log}"]\n'
            )
            began = time.monotonic()
            agent = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config",
                                      str(work / "agent.toml")], cwd=ROOT,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
            proc = psutil.Process(agent.pid)
            try:
                wait_until(lambda: es.count(INDEX) >= args.lines, 600, "every document")
                wall = time.monotonic() - began
                cpu = cpu_seconds(proc)
            finally:
                agent.terminate()
                agent.wait(timeout=20)
    finally:
        es.cleanup()
    per_core = args.lines / cpu
    print(
        f"{args.lines} lines shipped in {wall:.1f} s: {args.lines / wall:,.0f} lines/s wall "
        f"(start-up and Elasticsearch's own indexing on the same 2 cores included)"
    )
    print(
        f"agent CPU: {cpu:.1f} s = {100_000 * cpu / args.lines:.2f} CPU s per 100,000 lines = "
        f"{per_core:,.0f} lines/s per agent core ({per_core / 25_000:.2f}x the 25k target; "
        f"Filebeat publishes about 15-17k events/s per core, not measured here)"
    )


if __name__ == "__main__":
    main()
