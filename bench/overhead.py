"""Agent overhead against node_exporter: both scraped every second, side by side.

Prints CPU % of one core, peak RSS and scrape latency p50/p99 of each, and the ratios.
Targets from the issue: agent CPU <= 0.7x node_exporter's, RSS <= 60 MB, scrape p99 <= peer's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from bench.common import CpuClock, free_port, percentile, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Subject:
    """One process under measurement."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    latencies: list[float] = field(default_factory=list)
    peak_rss: int = 0
    series: int = 0
    clock: CpuClock | None = None
    cpu: float = 0.0

    def scrape(self, session: requests.Session) -> None:
        """Scrape once, timing it, and note the RSS."""
        began = time.perf_counter()
        resp = session.get(self.url, timeout=5)
        self.latencies.append(time.perf_counter() - began)
        resp.raise_for_status()
        self.series = sum(1 for line in resp.text.splitlines() if line and line[0] != "#")
        rss = psutil.Process(self.proc.pid).memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)


def start_agent(state: Path, gpus: int) -> Subject:
    """Start dsagent on its defaults, on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "DSAGENT_HTTP__LISTEN": f"127.0.0.1:{port}",
        "DSAGENT_AGENT__STATE_DIR": str(state),
    }
    if gpus:
        env["DSAGENT_GPU__SIMULATE"] = str(gpus)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    return Subject("dsagent", f"http://127.0.0.1:{port}/metrics", proc)


def start_node_exporter() -> Subject:
    """Start Debian's node_exporter with its default collectors."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit("bench: node_exporter is not installed (make servers)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stderr=subprocess.DEVNULL
    )
    return Subject("node_exporter", f"http://127.0.0.1:{port}/metrics", proc)


def measure(subjects: list[Subject], duration: float) -> float:
    """Scrape every subject once a second for `duration`; return the wall time measured."""
    session = requests.Session()
    for s in subjects:
        wait_until(lambda s=s: session.get(s.url, timeout=2).ok, 30, s.name)  # type: ignore[misc]
    time.sleep(3)  # let the agent's first samples and imports settle
    for s in subjects:
        s.clock = CpuClock(s.proc.pid)
    began = time.monotonic()
    tick = began
    while time.monotonic() - began < duration:
        for s in subjects:
            s.scrape(session)
        tick += 1.0
        time.sleep(max(0.0, tick - time.monotonic()))
    wall = time.monotonic() - began
    for s in subjects:
        assert s.clock is not None
        s.cpu = s.clock.seconds()
    return wall


def report(agent: Subject, peer: Subject, wall: float) -> None:
    """Print the side-by-side table and the ratios."""
    rows: list[tuple[str, Callable[[Subject], float], str]] = [
        ("CPU, % of one core", lambda s: 100 * s.cpu / wall, "{:.2f}"),
        ("peak RSS, MB", lambda s: s.peak_rss / 1e6, "{:.1f}"),
        ("scrape p50, ms", lambda s: 1000 * percentile(s.latencies, 0.5), "{:.2f}"),
        ("scrape p99, ms", lambda s: 1000 * percentile(s.latencies, 0.99), "{:.2f}"),
        ("series exported", lambda s: float(s.series), "{:.0f}"),
    ]
    print(f"{'':22} {'dsagent':>10} {'node_exporter':>14} {'ratio':>7}")
    for label, get, fmt in rows:
        a, p = get(agent), get(peer)
        ratio = f"{a / p:.2f}x" if p else "-"
        print(f"{label:22} {fmt.format(a):>10} {fmt.format(p):>14} {ratio:>7}")
    print(
        f"\n{len(agent.latencies)} scrapes each over {wall:.0f} s, 1 s sampling, "
        f"{psutil.cpu_count()} cores; CPU time {clock_used(agent, peer)}"
    )


def clock_used(*subjects: Subject) -> str:
    """Say how the subjects' CPU time was counted."""
    if all(s.clock and s.clock.precise for s in subjects):
        return "per thread, in ns"
    return "in 10 ms ticks"  # a thread ended in the run, or the kernel has no schedstat


def report_gpus(plain: Subject, with_gpus: Subject, gpus: int, wall: float) -> float:
    """Print what the simulated GPUs add to the agent, measured in the same run; return it."""
    added = 100 * (with_gpus.cpu - plain.cpu) / wall
    print(
        f"\nwith {gpus} simulated GPUs (a second agent, same run): "
        f"CPU {100 * with_gpus.cpu / wall:.2f} % of a core ({added:+.2f} points), "
        f"peak RSS {with_gpus.peak_rss / 1e6:.1f} MB, {with_gpus.series} series, "
        f"CPU time {clock_used(plain, with_gpus)}, "
        f"scrape p99 {1000 * percentile(with_gpus.latencies, 0.99):.2f} ms"
    )
    return added


def run_once(duration: float, gpus: int) -> float | None:
    """Run every subject side by side once and print the tables; return what the GPUs added."""
    with tempfile.TemporaryDirectory() as tmp:
        agent, peer = start_agent(Path(tmp) / "plain", 0), start_node_exporter()
        subjects = [agent, peer]
        if gpus:
            subjects.append(start_agent(Path(tmp) / "gpus", gpus))
        try:
            wall = measure(subjects, duration)
        finally:
            for s in subjects:
                s.proc.terminate()
                s.proc.wait(timeout=10)
    report(agent, peer, wall)
    return report_gpus(agent, subjects[2], gpus, wall) if gpus else None


def main() -> None:
    """Run the benchmark, `--runs` times."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--gpus", type=int, default=0, help="simulated GPUs for the agent")
    parser.add_argument("--runs", type=int, default=1, help="repeat; the GPU cost varies by run")
    args = parser.parse_args()
    added = []
    for i in range(args.runs):
        if i:
            print()
        if (gpus_added := run_once(args.duration, args.gpus)) is not None:
            added.append(gpus_added)
    if len(added) > 1:
        runs = ", ".join(f"{a:+.2f}" for a in added)
        print(
            f"\n{args.gpus} GPUs added, over {len(added)} runs: {runs} points; "
            f"median {statistics.median(added):+.2f}"
        )


if __name__ == "__main__":
    main()
