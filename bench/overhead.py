"""Agent overhead against node_exporter, measured as users run them.

A real Prometheus (Debian's) scrapes both every second over keep-alive connections; a second
phase opens a new connection for every scrape, as curl-style clients and health checkers do.
CPU comes from a cpuacct (cgroup v1) or cgroup v2 group per process, in ns, threads that
ended included; where no group can be made it falls back to the process's ticks, and says so.

Rows: dsagent on its defaults (0 GPUs); dsagent with 8 simulated GPUs (GPM on), 2 simulated
workers and the default rules; the same with a new connection per scrape; dsagent with 2 GPUs in
7 MIG instances each. Each against node_exporter 1.5 in the same run. The simulated GPUs run on
the NVML stand-in (make nvml-shim) through the real nvidia-ml-py. `--runs N` repeats it all and
prints the median ratio of each row.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from bench.cgroups import CpuGroup
from bench.common import free_port, percentile, wait_until

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Subject:
    """One measured process: its CPU group, peak RSS and (new-connection phase) latencies."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    group: CpuGroup
    peak_rss: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def target(self) -> str:
        """Return host:port."""
        return f"127.0.0.1:{self.port}"

    def note_rss(self) -> None:
        """Keep the peak resident set size."""
        with contextlib.suppress(psutil.Error):
            self.peak_rss = max(self.peak_rss, psutil.Process(self.proc.pid).memory_info().rss)


def start(name: str, cmd: list[str], port: int) -> Subject:
    """Start a command in a CPU group of its own."""
    group = CpuGroup(name)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    group.enter(proc.pid)  # all its threads, and the ones it starts later; measured after warm-up
    return Subject(name, port, proc, group)


def start_agent(work: Path, name: str, gpus: int, workers: list[int],
                scenario: str = "normal") -> Subject:  # fmt: skip
    """Start dsagent on its defaults, plus simulated GPUs and workers."""
    port = free_port()
    text = f'[agent]\nstate_dir = "{work / name}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
    if gpus:
        text += f'[gpu]\nsimulate = {gpus}\nscenario = "{scenario}"\n'
    for i, wport in enumerate(workers):
        text += f'[[workers]]\nname = "sim-{i}"\nurl = "http://127.0.0.1:{wport}"\n'
    (work / f"{name}.toml").write_text(text)
    cmd = [sys.executable, "-m", "agent", "run", "--config", str(work / f"{name}.toml")]
    return start(name, cmd, port)


def start_node_exporter() -> Subject:
    """Start Debian's node_exporter with its default collectors."""
    binary = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if binary is None:
        raise SystemExit("bench: node_exporter is not installed (make servers)")
    port = free_port()
    return start("node_exporter", [binary, f"--web.listen-address=127.0.0.1:{port}"], port)


class Prometheus:
    """A real Prometheus scraping the subjects every second."""

    def __init__(self, work: Path, subjects: list[Subject]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("bench: prometheus is not installed (make servers)")
        jobs = "".join(f"  - job_name: {s.name}\n    static_configs: [{{targets: ['{s.target}']}}]"
                       "\n" for s in subjects)  # fmt: skip
        (work / "prometheus.yml").write_text(
            f"global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n{jobs}"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(lambda: requests.get(self.url + "/-/ready", timeout=2).ok, 60, "prometheus")

    def query(self, expr: str) -> dict[str, float]:
        """Evaluate an instant query; return its value per job."""
        resp = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        out = {}
        for item in resp.json()["data"]["result"]:
            out[item["metric"].get("job", "")] = float(item["value"][1])
        return out

    def stop(self) -> None:
        """Stop it."""
        self.proc.terminate()
        self.proc.wait(timeout=30)


def new_connection_scrapes(subjects: list[Subject], stop: threading.Event) -> None:
    """Scrape each subject once a second, every time over a new connection."""
    tick = time.monotonic()
    while not stop.is_set():
        for s in subjects:
            began = time.perf_counter()
            try:
                requests.get(f"http://{s.target}/metrics", timeout=5).raise_for_status()
            except requests.RequestException:
                continue
            s.latencies.append(time.perf_counter() - began)
        tick += 1.0
        stop.wait(max(0.0, tick - time.monotonic()))


@dataclass
class Row:
    """One subject's figures in one phase."""

    cpu: float  # % of one core
    rss: float  # MB
    p50: float  # ms
    p99: float
    series: float


def window(subjects: list[Subject], warmup: float, seconds: float) -> dict[str, float]:
    """Wait the warm-up, then measure each subject's CPU % over `seconds`."""
    time.sleep(warmup)
    start = {s.name: s.group.seconds() for s in subjects}
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for s in subjects:
            s.note_rss()
        time.sleep(1.0)
    wall = time.monotonic() - began
    return {s.name: 100 * (s.group.seconds() - start[s.name]) / wall for s in subjects}


def keep_alive_phase(work: Path, subjects: list[Subject], warmup: float,
                     seconds: float) -> dict[str, Row]:  # fmt: skip
    """Prometheus scrapes every subject; return each one's row."""
    prom = Prometheus(work, subjects)
    try:
        cpu = window(subjects, warmup, seconds)
        span = f"[{int(seconds)}s]"
        q = {k: prom.query(f"quantile_over_time({k}, scrape_duration_seconds{span})")
             for k in (0.5, 0.99)}  # fmt: skip
        series = prom.query(f"max_over_time(scrape_samples_scraped{span})")
    finally:
        prom.stop()
    return {s.name: Row(cpu[s.name], s.peak_rss / 1e6, 1000 * q[0.5].get(s.name, 0.0),
                        1000 * q[0.99].get(s.name, 0.0), series.get(s.name, 0.0))
            for s in subjects}  # fmt: skip


def new_connection_phase(subjects: list[Subject], warmup: float,
                         seconds: float) -> dict[str, Row]:  # fmt: skip
    """A client opens a new connection per scrape; return each subject's row."""
    stop = threading.Event()
    client = threading.Thread(target=new_connection_scrapes, args=(subjects, stop), daemon=True)
    client.start()
    try:
        cpu = window(subjects, warmup, seconds)
    finally:
        stop.set()
        client.join(timeout=10)
    return {s.name: Row(cpu[s.name], s.peak_rss / 1e6, 1000 * percentile(s.latencies, 0.5),
                        1000 * percentile(s.latencies, 0.99), 0.0) for s in subjects}  # fmt: skip


def run_once(gpus: int, warmup: float, seconds: float) -> dict[str, tuple[Row, Row]]:
    """Measure the three rows once; return (dsagent row, node_exporter row) by row name."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ports = [free_port() for _ in range(2)]
        sims = [subprocess.Popen([sys.executable, "-m", "agent", "sim-worker", "--port", str(p)],
                                 cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for p in ports]  # fmt: skip
        subjects = [
            start_agent(work, "dsagent-0", 0, []),
            start_agent(work, "dsagent-gpus", gpus, ports),
            start_agent(work, "dsagent-mig", 2, [], "mig7"),
            start_node_exporter(),
        ]
        try:
            keep = keep_alive_phase(work, subjects, warmup, seconds)
            fresh = new_connection_phase([subjects[1], subjects[3]], warmup / 2, seconds)
        finally:
            for p in [*(s.proc for s in subjects), *sims]:
                p.terminate()
                p.wait(timeout=20)
            for s in subjects:
                s.group.remove()
    peer = "node_exporter"
    return {
        "keep-alive, 0 GPUs": (keep["dsagent-0"], keep[peer]),
        f"keep-alive, {gpus} GPUs + 2 workers": (keep["dsagent-gpus"], keep[peer]),
        f"new connection, {gpus} GPUs + 2 workers": (fresh["dsagent-gpus"], fresh[peer]),
        "keep-alive, 2 GPUs x 7 MIG": (keep["dsagent-mig"], keep[peer]),
    }


def print_run(rows: dict[str, tuple[Row, Row]]) -> None:
    """Print one run's table."""
    print(f"{'row':38} {'CPU %':>6} {'peer %':>7} {'ratio':>6} {'RSS MB':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'peer p99':>8} {'series':>7}")  # fmt: skip
    for name, (a, p) in rows.items():
        print(f"{name:38} {a.cpu:6.2f} {p.cpu:7.2f} {a.cpu / p.cpu:5.2f}x {a.rss:7.1f} "
              f"{a.p50:7.2f} {a.p99:7.2f} {p.p99:8.2f} {a.series:7.0f}")  # fmt: skip


def main() -> None:
    """Run the benchmark `--runs` times; print each run and the median ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured (default 60)")
    parser.add_argument("--warmup", type=float, default=20.0, help="before measuring (20)")
    parser.add_argument("--gpus", type=int, default=8, help="simulated GPUs (default 8)")
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {}
    for i in range(args.runs):
        print(f"run {i + 1} of {args.runs} ({time.strftime('%Y-%m-%d %H:%M')}, "
              f"{psutil.cpu_count()} cores, CPU from {CpuGroup.how()}):")  # fmt: skip
        rows = run_once(args.gpus, args.warmup, args.seconds)
        print_run(rows)
        for name, (a, p) in rows.items():
            ratios.setdefault(name, []).append(a.cpu / p.cpu)
    print(f"\nmedian CPU ratio to node_exporter over {args.runs} runs:")
    for name, values in ratios.items():
        print(f"  {name:38} {statistics.median(values):.2f}x  (runs: "
              f"{', '.join(f'{v:.2f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
