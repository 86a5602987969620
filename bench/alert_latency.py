"""Alert latency: from a metric crossing its threshold to the webhook arriving.

One signal, `bench_signal{trial="N"}` in a textfile, is read both by the agent ([textfile])
and by node_exporter's textfile collector, which a real Prometheus scrapes and evaluates, and
sends to a real Alertmanager. Both pipelines end at one local webhook sink, so each trial times
the agent and the peer on the same flip. Each flip lands at a random point of the second,
so the median shows the wait for the next sample (half an interval on average) plus the
pipeline. Rows: `for: 0` and `for: 5s` against the peer tuned to 1 s scrape and evaluation
with group_wait 0; `--slow` adds the common 15 s / 15 s / 30 s peer setting.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from bench.common import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
RULE = "bench_signal > 0.5"


class Sink:
    """Records when each pipeline's first firing webhook of each trial arrives."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                for a in body.get("alerts", []):
                    if a["status"] == "firing":
                        sink.arrived.setdefault(
                            (self.path, a["labels"].get("trial", "")), time.time()
                        )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def binary(*names: str) -> str:
    """Find a Debian-packaged server."""
    for name in names:
        if path := shutil.which(name):
            return path
    raise SystemExit(f"bench: {names[0]} is not installed (make servers)")


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process with its output in a log file."""
    out = log.open("w")
    return subprocess.Popen(cmd, stdout=out, stderr=out, env=env, cwd=ROOT)


def agent(tmp: Path, textdir: Path, sink: Sink, hold: str) -> subprocess.Popen[bytes]:
    """The agent on 1 s sampling, one rule, a webhook receiver, group_wait 0."""
    (tmp / "rules.yml").write_text(
        "groups:\n  - name: bench\n    rules:\n      - alert: BenchSignal\n"
        f"        expr: bench_signal\n        thresholds: {{critical: 0.5}}\n        for: {hold}\n"
    )
    port = free_port()
    (tmp / "agent.toml").write_text(
        f'[agent]\nstate_dir = "{tmp / "state"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[textfile]\ndirectory = "{textdir}"\n'
        f'[rules]\ndefaults = false\npaths = ["{tmp / "rules.yml"}"]\n'
        f'[[receivers]]\nname = "sink"\ntype = "webhook"\nurl = "{sink.url}/agent"\n'
        '[[routes]]\nreceiver = "sink"\ngroup_by = ["trial"]\n'
    )
    return start(
        [sys.executable, "-m", "agent", "run", "--config", str(tmp / "agent.toml")],
        tmp / "agent.log",
    )


def peer(tmp: Path, textdir: Path, sink: Sink, setting: Setting) -> list[subprocess.Popen[bytes]]:
    """node_exporter -> Prometheus -> Alertmanager -> the sink."""
    ne, prom, am = free_port(), free_port(), free_port()
    scrape, wait = setting.scrape, setting.wait
    (tmp / "am.yml").write_text(
        f"route: {{receiver: sink, group_by: [trial], group_wait: {wait}, group_interval: 1s,"
        f" repeat_interval: 1h}}\nreceivers: [{{name: sink, webhook_configs: [{{url: "
        f"'{sink.url}/peer'}}]}}]\n"
    )
    (tmp / "prom-rules.yml").write_text(
        f"groups:\n  - name: bench\n    rules:\n      - alert: BenchSignal\n        expr: {RULE}\n"
        f"        for: {setting.hold}\n"
    )
    (tmp / "prom.yml").write_text(
        f"global: {{scrape_interval: {scrape}, evaluation_interval: {scrape}}}\n"
        f"rule_files: ['{tmp / 'prom-rules.yml'}']\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{am}']}}]}}]}}\n"
        f"scrape_configs: [{{job_name: ne, static_configs: [{{targets: ['127.0.0.1:{ne}']}}]}}]\n"
    )
    procs = [
        start(
            [
                binary("prometheus-node-exporter", "node_exporter"),
                f"--web.listen-address=127.0.0.1:{ne}",
                f"--collector.textfile.directory={textdir}",
            ],
            tmp / "ne.log",
        ),
        start(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={tmp / 'am.yml'}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{am}",
                "--cluster.listen-address=",
            ],
            tmp / "am.log",
        ),
        start(
            [
                binary("prometheus"),
                f"--config.file={tmp / 'prom.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom}",
            ],
            tmp / "prom.log",
        ),
    ]
    wait_until(
        lambda: requests.get(f"http://127.0.0.1:{prom}/-/ready", timeout=1).ok, 60, "prometheus"
    )
    return procs


def write_signal(textdir: Path, trial: int) -> float:
    """Raise this trial's signal (and lower the others) atomically; return the time."""
    lines = [f'bench_signal{{trial="{t}"}} {1 if t == trial else 0}' for t in range(trial + 1)]
    tmp = textdir / ".signal.prom.tmp"
    tmp.write_text("# TYPE bench_signal gauge\n" + "\n".join(lines) + "\n")
    os.replace(tmp, textdir / "signal.prom")
    return time.time()


def _arrived(sink: Sink, keys: tuple[tuple[str, str], ...]) -> bool:
    return all(k in sink.arrived for k in keys)


@dataclass(frozen=True)
class Setting:
    """One row: the rule's `for`, and the peer's scrape/evaluation interval and group_wait."""

    label: str
    hold: str
    scrape: str
    wait: str


SETTINGS = [
    Setting("for: 0, peer 1 s scrape/eval, group_wait 0", "0s", "1s", "0s"),
    Setting("for: 5s, peer 1 s scrape/eval, group_wait 0", "5s", "1s", "0s"),
]
SLOW = Setting("for: 0, peer 15 s scrape/eval, group_wait 30s", "0s", "15s", "30s")


def run_setting(setting: Setting, trials: int, timeout: float) -> tuple[list[float], list[float]]:
    """Run one row; return the agent's and the peer's delays in seconds."""
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        textdir = tmp / "text"
        textdir.mkdir()
        write_signal(textdir, -1)
        sink = Sink()
        procs = [agent(tmp, textdir, sink, setting.hold), *peer(tmp, textdir, sink, setting)]
        try:
            time.sleep(3)  # first scrapes and samples
            ours, theirs = [], []
            for trial in range(trials):
                time.sleep(random.uniform(0, 1))  # cross at any point of the sampling second
                t0 = write_signal(textdir, trial)
                keys = (("/agent", str(trial)), ("/peer", str(trial)))
                arrived = partial(_arrived, sink, keys)
                wait_until(arrived, timeout, f"trial {trial}")
                ours.append(sink.arrived[keys[0]] - t0)
                theirs.append(sink.arrived[keys[1]] - t0)
            return ours, theirs
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=20)
            sink.server.shutdown()


def main() -> None:
    """Run the rows and print them side by side."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=30, help="crossings per row (default 30)")
    parser.add_argument("--slow", action="store_true", help="add the 15 s / 30 s peer row")
    args = parser.parse_args()
    print(f"{'row':46} {'dsagent p50 / max':>18} {'Prometheus+AM p50 / max':>24} {'ratio':>6}")
    for setting in [*SETTINGS, *([SLOW] if args.slow else [])]:
        ours, theirs = run_setting(setting, args.trials, timeout=120)
        a, p = statistics.median(ours), statistics.median(theirs)
        print(
            f"{setting.label:46} {a:>8.2f} / {max(ours):4.2f} s {p:>13.2f} / {max(theirs):5.2f} s"
            f" {a / p:>6.2f}x"
        )
    print(
        f"\n{args.trials} crossings per row, each at a random point of the second; the agent "
        "samples every 1 s with group_wait 0 in every row; times run from the textfile write "
        "to the webhook's arrival."
    )


if __name__ == "__main__":
    main()
