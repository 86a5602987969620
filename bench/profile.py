"""Where the agent's CPU goes: py-spy samples it as the overhead bench runs it.

The agent runs with 8 simulated GPUs, 2 simulated workers and the default rules, scraped once a
second. py-spy records the threads holding the GIL for `--seconds` and writes a flame graph
(build/profile.svg) and the raw stacks; the table printed is each function's share of the
samples, inclusive of what it calls. Then each thread's CPU from the kernel (bench.threads),
system time included, which py-spy does not see.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from bench import threads
from bench.common import free_port, wait_until
from bench.overhead import start_agent

ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = (("flamegraph", "profile.svg"), ("raw", "profile.txt"))


def table(raw: Path, top: int) -> list[tuple[float, str]]:
    """Return the `top` functions by inclusive share of the samples in py-spy's raw output."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):  # "function (path/file.py:line)"
            name, _, where = frame.partition(" (")
            where = where.rsplit("/", 1)[-1].split(":")[0]
            key = f"{name} ({where})" if where else name
            if key not in seen:
                inclusive[key] += n
                seen.add(key)
    return [(n / total, key) for key, n in inclusive.most_common(top)] if total else []


def main() -> None:
    """Profile the agent and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = ROOT / "build"
    out.mkdir(exist_ok=True)
    ports = [free_port() for _ in range(2)]
    sims = [subprocess.Popen([sys.executable, "-m", "agent", "sim-worker", "--port", str(p)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for p in ports]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        agent = start_agent(Path(tmp), "dsagent", 8, ports)
        url = f"http://{agent.target}/metrics"
        stop = threading.Event()
        try:
            wait_until(lambda: requests.get(url, timeout=2).ok, 30, "the agent")
            threading.Thread(target=scrape, args=(url, stop), daemon=True).start()
            time.sleep(10)
            before = threads.snapshot(agent.proc.pid)
            woken = threads.switches(agent.proc.pid)
            spies = [subprocess.Popen([spy, "record", "--pid", str(agent.proc.pid), "--gil",
                                       "--nonblocking", "--rate", "1000", "--duration",
                                       str(args.seconds), "--format", fmt, "--output",
                                       str(out / name)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
                      for fmt, name in OUTPUTS]  # fmt: skip
            for one in spies:
                one.wait(timeout=args.seconds + 60)
            labels = threads.names(spy, agent.proc.pid)
            by_thread = threads.table(before, threads.snapshot(agent.proc.pid), labels,
                                      args.seconds)  # fmt: skip
            rates = threads.switch_rates(woken, threads.switches(agent.proc.pid), labels,
                                         args.seconds)  # fmt: skip
        finally:
            stop.set()
            for p in (agent.proc, *sims):
                p.terminate()
                p.wait(timeout=20)
            agent.group.remove()
    print(f"flame graph: {out / 'profile.svg'}; share of GIL-holding samples, inclusive:")
    for share, key in table(out / "profile.txt", args.top):
        print(f"  {100 * share:5.1f} %  {key}")
    print("CPU by thread (kernel schedstat, user and system, % of a core), and its context"
          " switches a second (voluntary + involuntary):")  # fmt: skip
    for name, percent in by_thread:
        vol, invol = rates.get(name, (0.0, 0.0))
        print(f"  {percent:6.3f} %  {vol:5.1f} + {invol:4.1f}  {name}")


def scrape(url: str, stop: threading.Event) -> None:
    """Scrape once a second, as Prometheus would."""
    session = requests.Session()
    while not stop.wait(1.0):
        session.get(url, timeout=5)


if __name__ == "__main__":
    main()
