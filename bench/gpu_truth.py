"""Truth check on real hardware: the agent's GPU readings against nvidia-smi, same moments.

Runs `dsagent run` with [gpu] enabled = true for --duration seconds; every second it scrapes
/metrics and runs `nvidia-smi --query-gpu=... --format=csv` (and, where installed, `dcgmi dmon`
for the GPM fields), then prints per field and GPU the mean and largest difference, and which
fields one side has and the other lacks.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import requests

from bench.common import free_port, wait_until
from bench.gpu_truth_dcgm import DCGM_FIELDS, Table, dmon, parse_dmon

ROOT = Path(__file__).resolve().parent.parent

# nvidia-smi field -> (our metric, extra labels, factor from ours to nvidia-smi's unit)
FIELDS: Table = {
    "utilization.gpu": ("gpu_utilization_ratio", {}, 100),
    "utilization.memory": ("gpu_memory_copy_utilization_ratio", {}, 100),
    "memory.used": ("gpu_memory_used_bytes", {}, 1 / 2**20),
    "memory.total": ("gpu_memory_total_bytes", {}, 1 / 2**20),
    "temperature.gpu": ("gpu_temperature_celsius", {}, 1),
    "temperature.memory": ("gpu_memory_temperature_celsius", {}, 1),
    "power.draw": ("gpu_power_watts", {}, 1),
    "enforced.power.limit": ("gpu_power_limit_watts", {}, 1),
    "clocks.sm": ("gpu_sm_clock_hertz", {}, 1e-6),
    "clocks.mem": ("gpu_memory_clock_hertz", {}, 1e-6),
    "fan.speed": ("gpu_fan_speed_ratio", {}, 100),
    "ecc.errors.corrected.volatile.total": (
        "gpu_ecc_errors_total", {"type": "corrected", "scope": "volatile"}, 1),
    "ecc.errors.uncorrected.aggregate.total": (
        "gpu_ecc_errors_total", {"type": "uncorrected", "scope": "aggregate"}, 1),
    "clocks_throttle_reasons.sw_power_cap": (
        "gpu_throttle_reason", {"reason": "sw_power_cap"}, 1),
    "clocks_throttle_reasons.sw_thermal_slowdown": (
        "gpu_throttle_reason", {"reason": "sw_thermal_slowdown"}, 1),
}  # fmt: skip
# Drivers from 535 on name the throttle reasons "clocks_event_reasons"; either may be missing.
RENAMED = ("clocks_throttle_reasons.", "clocks_event_reasons.")


def query_names(help_text: str) -> dict[str, str]:
    """Map each field this nvidia-smi knows (its `--help-query-gpu`) to its name in FIELDS.

    An unknown name makes nvidia-smi refuse the whole query, so fields it lacks are left out.
    """
    known = {}
    for field in FIELDS:
        for name in (field, field.replace(*RENAMED)):
            if f'"{name}"' in help_text:
                known[name] = field
                break
    return known


def parse_smi(
    text: str, fields: Sequence[str] = tuple(FIELDS)
) -> dict[str, dict[str, float | None]]:
    """Parse `nvidia-smi --query-gpu=index,<fields> --format=csv,noheader,nounits` by GPU."""
    out: dict[str, dict[str, float | None]] = {}
    for row in csv.reader(io.StringIO(text)):
        if len(row) != len(fields) + 1:
            continue
        values: dict[str, float | None] = {}
        for name, cell in zip(fields, row[1:], strict=True):
            raw = cell.strip()
            flags = {"Active": 1.0, "Not Active": 0.0}
            try:
                values[name] = flags[raw] if raw in flags else float(raw)
            except ValueError:
                values[name] = None  # [N/A], [Not Supported]
        out[row[0].strip()] = values
    return out


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the agent's /metrics text into {(name, labels): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split('",') if "=" in p]
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def ours(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], gpu: str,
         field: str, table: Table = FIELDS) -> float | None:  # fmt: skip
    """Return our value for a field of the other tool on one GPU, in its unit."""
    name, extra, factor = table[field]
    for (metric, labels), value in metrics.items():
        lab = dict(labels)
        if metric == name and lab.get("gpu") == gpu and extra.items() <= lab.items():
            return value * factor
    return None


def compare(pairs: list[tuple[str, str]], fields: Sequence[str] = tuple(FIELDS),
            dcgm: bool = False) -> list[str]:  # fmt: skip
    """Compare (metrics text, nvidia-smi csv or dcgmi dmon) pairs; return the report lines."""
    diffs: dict[tuple[str, str], list[float]] = defaultdict(list)
    presence: dict[tuple[str, str], set[str]] = defaultdict(set)
    table = DCGM_FIELDS if dcgm else FIELDS
    for metrics_text, their_text in pairs:
        metrics = parse_metrics(metrics_text)
        rows = parse_dmon(their_text, list(fields)) if dcgm else parse_smi(their_text, fields)
        for gpu, row in rows.items():
            for field, theirs in row.items():
                mine = ours(metrics, gpu, field, table)
                if theirs is None or mine is None:
                    presence[(field, gpu)].add(
                        f"smi {theirs is not None}, agent {mine is not None}"
                    )
                    continue
                diffs[(field, gpu)].append(abs(mine - theirs))
    lines = [f"{'field':44} {'gpu':>3} {'n':>4} {'mean |diff|':>12} {'max |diff|':>11}"]
    for (field, gpu), values in sorted(diffs.items()):
        mean = sum(values) / len(values)
        lines.append(f"{field:44} {gpu:>3} {len(values):>4} {mean:>12.3f} {max(values):>11.3f}")
    for (field, gpu), seen in sorted(presence.items()):
        lines.append(f"{field:44} {gpu:>3} present: {'; '.join(sorted(seen))}")
    return lines


def smi_fields(smi: str) -> dict[str, str]:
    """Ask nvidia-smi which of FIELDS it can query; say which it cannot."""
    help_text = subprocess.run(
        [smi, "--help-query-gpu"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    names = query_names(help_text)
    if missing := sorted(set(FIELDS) - set(names.values())):
        print(f"nvidia-smi cannot query: {', '.join(missing)}", file=sys.stderr)
    return names


def query_smi(smi: str, names: Sequence[str]) -> str:
    """One nvidia-smi reading of the fields."""
    cmd = [smi, f"--query-gpu=index,{','.join(names)}", "--format=csv,noheader,nounits"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout


Pairs = list[tuple[str, str]]  # (the agent's /metrics, the other tool's output) at one moment


def collect(
    duration: int, smi: str, names: Sequence[str], dcgmi: str | None
) -> tuple[Pairs, Pairs]:
    """Run the agent and sample it, nvidia-smi and dcgmi (if given) once a second."""
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "DSAGENT_GPU__ENABLED": "true",
            "DSAGENT_AGENT__STATE_DIR": state,
            "DSAGENT_HTTP__LISTEN": f"127.0.0.1:{port}",
        }
        agent = subprocess.Popen([sys.executable, "-m", "agent", "run"], cwd=ROOT, env=env)
        url = f"http://127.0.0.1:{port}/metrics"
        with_smi: Pairs = []
        with_dcgm: Pairs = []
        try:
            wait_until(lambda: "gpu_up{" in requests.get(url, timeout=2).text, 30, "GPU metrics")
            for _ in range(duration):
                metrics = requests.get(url, timeout=5).text
                with_smi.append((metrics, query_smi(smi, names)))
                if dcgmi is not None:
                    with_dcgm.append((metrics, dmon(dcgmi, list(DCGM_FIELDS))))
                time.sleep(1)
        finally:
            agent.terminate()
            agent.wait(timeout=10)
    return with_smi, with_dcgm


def main() -> None:
    """Run the truth check and print the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=30, help="seconds (default 30)")
    args = parser.parse_args()
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise SystemExit("gpu_truth: nvidia-smi not found: run this on a machine with a GPU")
    names = smi_fields(smi)
    dcgmi = shutil.which("dcgmi")
    with_smi, with_dcgm = collect(args.duration, smi, list(names), dcgmi)
    print("nvidia-smi --query-gpu:")
    print("\n".join(compare(with_smi, list(names.values()))))
    if dcgmi is None:
        print("dcgmi not found: GPM fields not compared")
    else:
        print("dcgmi dmon (GPM against DCGM's profiling fields):")
        print("\n".join(compare(with_dcgm, list(DCGM_FIELDS), dcgm=True)))


if __name__ == "__main__":
    main()
