"""Two builds of the agent side by side: is a change cheaper, beyond the machine's own drift?

On the development VM the same agent's CPU moves by 10-25 % from one hour to the next, and
node_exporter's with it, so a change worth a few percent does not show in `make bench`'s ratio.
This runs a base checkout (a `git worktree` of the commit to compare against) and this one at
the same time, each with 8 simulated GPUs and the same 2 simulated workers, both scraped once a
second over keep-alive connections, and prints the ratio of their CPU (from a cgroup each) per
run and the median. Example:

    git worktree add /tmp/base HEAD~1 && cp -r build/nvml-shim /tmp/base/build/
    .venv/bin/python -m bench.paired --base /tmp/base --runs 3
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.cgroups import CpuGroup
from bench.common import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent


Agent = tuple[int, "subprocess.Popen[bytes]", CpuGroup]  # its port, its process, its CPU group


def start(root: Path, work: Path, name: str, workers: list[int]) -> Agent:
    """Start the agent of checkout `root` with 8 simulated GPUs and these workers."""
    port = free_port()
    text = (f'[agent]\nstate_dir = "{work / name}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
            '[gpu]\nsimulate = 8\nscenario = "normal"\n')  # fmt: skip
    for i, wport in enumerate(workers):
        text += f'[[workers]]\nname = "sim-{i}"\nurl = "http://127.0.0.1:{wport}"\n'
    (work / f"{name}.toml").write_text(text)
    group = CpuGroup(name)
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(work / f"{name}.toml")]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group.enter(proc.pid)
    return port, proc, group


def answers(port: int) -> bool:
    """Return True once the agent on this port serves /metrics."""
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).ok


def scrape(ports: list[int], stop: threading.Event) -> None:
    """Scrape each agent once a second over a kept connection."""
    sessions = [requests.Session() for _ in ports]
    while not stop.wait(1.0):
        for session, port in zip(sessions, ports, strict=True):
            session.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


def run_once(base: Path, workers: list[int], seconds: float, index: int) -> float:
    """Measure both side by side once; return this checkout's CPU over the base's."""
    with tempfile.TemporaryDirectory() as tmp:
        agents = [start(base, Path(tmp), f"base{index}", workers),
                  start(ROOT, Path(tmp), f"this{index}", workers)]  # fmt: skip
        stop = threading.Event()
        try:
            for port, _, _ in agents:
                wait_until(functools.partial(answers, port), 30, "the agent")
            threading.Thread(target=scrape, args=([p for p, _, _ in agents], stop),
                             daemon=True).start()  # fmt: skip
            time.sleep(15)
            before, began = [g.seconds() for _, _, g in agents], time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - began
            cpu = [
                1000 * (g.seconds() - b) / wall for b, (_, _, g) in zip(before, agents, strict=True)
            ]
        finally:
            stop.set()
            for _, proc, group in agents:
                proc.terminate()
                proc.wait(timeout=20)
                group.remove()
    print(f"run {index + 1}: base {cpu[0]:.3f} ms/s  this {cpu[1]:.3f} ms/s  "
          f"ratio {cpu[1] / cpu[0]:.3f}", flush=True)  # fmt: skip
    return cpu[1] / cpu[0]


def main() -> None:
    """Run the pairs; print each and the median ratio."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=Path, required=True, help="a checkout to compare against")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0, help="measured per run (40)")
    args = parser.parse_args()
    ports = [free_port() for _ in range(2)]
    sims = [subprocess.Popen([sys.executable, "-m", "agent", "sim-worker", "--port", str(p)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in ports]  # fmt: skip
    try:
        ratios = [run_once(args.base, ports, args.seconds, i) for i in range(args.runs)]
    finally:
        for sim in sims:
            sim.terminate()
    print(f"median CPU of this checkout over the base's: {statistics.median(ratios):.3f}x "
          f"over {len(ratios)} runs")  # fmt: skip


if __name__ == "__main__":
    main()
