"""One screen of the node at 3 a.m.: GPUs, workers, alerts, node, hardware, pipelines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from agent.status.hardware import hardware
from agent.status.series import Series, find, fmt, grown, latest, one

SPARKS, ASCII_SPARKS = "▁▂▃▄▅▆▇█", "_.-~=+*#"
RED, YELLOW, GREEN, DIM, RESET = "\x1b[31m", "\x1b[33m", "\x1b[32m", "\x1b[2m", "\x1b[0m"
GPU_ROW = " {:>3} {:16} {:>5} {:>11} {:>5} {:>5} {:>3} {} {}"
WORKER_ROW = " {:10} {} {:>6} {:>6} {:>6} {:>5} {:>7} {:>4}  {} {}"
QUIET = {"readiness", "model", "pci_bus_id", "uuid", "node"}  # labels that do not tell which


class Style:
    """Colour (or none) and the sparkline alphabet the terminal can show."""

    def __init__(self, color: bool, ascii_only: bool) -> None:
        self.color, self.sparks = color, ASCII_SPARKS if ascii_only else SPARKS

    def paint(self, text: str, code: str) -> str:
        """Wrap text in a colour when colour is on."""
        return f"{code}{text}{RESET}" if self.color and code else text


def spark(series: Series | None, style: Style, lo: float | None = None,
          hi: float | None = None) -> str:  # fmt: skip
    """Draw a series' values as a sparkline (a blank where it had no sample)."""
    values: list[float | None] = series["values"] if series else []
    seen = [v for v in values if v is not None]
    if not seen:
        return ""
    low = min(seen) if lo is None else lo
    high = max(seen) if hi is None else hi
    top = len(style.sparks) - 1
    out = []
    for v in values:
        if v is None:
            out.append(" ")
            continue
        share = 0.0 if high <= low else (min(max(v, low), high) - low) / (high - low)
        out.append(style.sparks[round(share * top)])
    return "".join(out)


def _gpu_row(series: Sequence[Series], up: Series, style: Style) -> str:
    gpu = up["labels"].get("gpu", "?")

    def value(name: str) -> float | None:
        return latest(one(series, name, gpu=gpu))

    # SM activity where GPM gives it, else utilization (and utilization from an older agent)
    util = one(series, "gpu_saturation_ratio", gpu=gpu) or one(series, "gpu_utilization_ratio",
                                                               gpu=gpu)  # fmt: skip
    used, total = value("gpu_memory_used_bytes"), value("gpu_memory_total_bytes")
    mem = f"{fmt(used, 'GiB')}/{fmt(total, 'GiB')}"
    xid = sum(grown(s) for s in find(series, "gpu_xid_errors_total", gpu=gpu))
    alive = latest(up) == 1
    state = style.paint("up" if alive else "LOST", GREEN if alive else RED)
    model = up["labels"].get("model", "").removeprefix("NVIDIA ")[:16]
    temp, power = value("gpu_temperature_celsius"), value("gpu_power_watts")
    temp_text = "-" if temp is None else f"{temp:.0f}C"
    power_text = "-" if power is None else f"{power:.0f}W"
    cells = (gpu, model, fmt(latest(util), "%"), mem, temp_text, power_text, f"{xid:.0f}")
    return GPU_ROW.format(*cells, state + " " * (4 - len("up" if alive else "LOST")),
                          spark(util, style, 0, 1)[-16:])  # fmt: skip


def _pods(series: Sequence[Series], gpu: str) -> list[str]:
    """Return a line per container the kubelet allocated this GPU (or a MIG device of it) to."""
    out = []
    for info in find(series, "gpu_pod_info", gpu=gpu):
        if info.get("stale"):  # a pod that has gone
            continue
        at = info["labels"]
        mig = f" (MIG {at['mig_profile']})" if "mig_profile" in at else ""
        out.append(f"    pod {at['namespace']}/{at['pod']} container {at['container']}{mig}")
    return sorted(out)


def gpus(series: Sequence[Series], style: Style) -> list[str]:
    """Return the GPUs section: a row each, with a utilisation sparkline."""
    rows = [GPU_ROW.format("GPU", "MODEL", "BUSY", "MEM GiB", "TEMP", "POWER", "XID", "UP  ",
                           "BUSY 15m")]  # fmt: skip
    for up in sorted(find(series, "gpu_up"), key=lambda s: int(s["labels"].get("gpu", 0))):
        rows.append(_gpu_row(series, up, style))
        rows.extend(_pods(series, up["labels"].get("gpu", "?")))
    return rows if len(rows) > 1 else [" no GPUs sampled"]


def _worker_state(series: Sequence[Series], up: Series, worker: str) -> tuple[str, str]:
    if latest(one(series, "worker_ready", worker=worker)) == 1:
        return "ready", GREEN
    if latest(one(series, "worker_loading", worker=worker)) == 1:
        return "loading", YELLOW
    return ("not ready", YELLOW) if latest(up) == 1 else ("DOWN", RED)


def _worker_row(series: Sequence[Series], up: Series, style: Style) -> str:
    w = up["labels"].get("worker", "")

    def pick(name: str, **labels: str) -> Series | None:
        return one(series, name, worker=w, **labels)

    state, colour = _worker_state(series, up, w)
    p50 = pick("inference_request_latency_seconds", quantile="0.5")
    p95 = pick("inference_request_latency_seconds", quantile="0.95")
    rps, ttft = (
        pick("inference_requests_per_second"),
        pick("inference_ttft_seconds", quantile="0.5"),
    )
    run, wait = (
        latest(pick("inference_requests_running")),
        latest(pick("inference_requests_waiting")),
    )
    queue = f"{fmt(run, 'n')}/{fmt(wait, 'n')}"
    kv = latest(pick("inference_kv_cache_usage_ratio"))
    cells = (fmt(latest(p50), "s"), fmt(latest(p95), "s"), fmt(latest(rps), ""),
             fmt(latest(ttft), "s"), queue, fmt(kv, "%"))  # fmt: skip
    return WORKER_ROW.format(w[:10], style.paint(f"{state:9}", colour), *cells,
                             f"{spark(p95, style)[-8:]:8}", spark(rps, style, 0)[-8:])  # fmt: skip


def _energy(series: Sequence[Series], worker: str) -> list[str]:
    """Return the worker's joules (and cost) per token line, when they are measured."""
    out = latest(one(series, "inference_energy_joules_per_token", worker=worker, tokens="output"))
    if out is None:
        return []
    every = latest(one(series, "inference_energy_joules_per_token", worker=worker, tokens="all"))
    text = f"    energy {out:.3g} J/token out" + (f", {every:.3g} all" if every is not None else "")
    cost = one(series, "inference_cost_per_million_tokens", worker=worker, tokens="output")
    price = latest(cost)
    if cost is not None and price is not None:
        text += f"; {price:.3g} {cost['labels'].get('currency', '')} per million out"
    return [text]


def workers(series: Sequence[Series], style: Style) -> list[str]:
    """Return the workers section: state, latency, throughput, TTFT, queue, KV cache."""
    rows = [WORKER_ROW.format("WORKER", f"{'STATE':9}", "P50", "P95", "REQ/S", "TTFT", "RUN/WT",
                              "KV", "P95 15m ", "REQ/S")]  # fmt: skip
    for up in sorted(find(series, "worker_up"), key=lambda s: s["labels"].get("worker", "")):
        rows.append(_worker_row(series, up, style))
        rows.extend(_energy(series, up["labels"].get("worker", "")))
    return rows if len(rows) > 1 else [" no workers configured"]


def alerts(items: Sequence[dict[str, Any]], style: Style, width: int = 80) -> list[str]:
    """Return firing and pending alerts, worst first: since when, value, mute marks.

    Labels that do not fit the width go on the lines below, never cut.
    """
    shown = [a for a in items if a.get("state") in ("firing", "pending")]
    order = {"critical": 0, "warning": 1, "info": 2}
    shown.sort(key=lambda a: (a["state"] != "firing", order.get(a["labels"].get("severity"), 3)))
    rows = []
    for a in shown:
        labels = dict(a["labels"])
        name, sev = labels.pop("alertname", "?"), labels.pop("severity", "")
        where = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in QUIET]
        since = time.strftime("%H:%M:%S", time.localtime(a.get("active_at", 0)))
        mark = f" [{a['muted'].split()[0]}]" if a.get("muted") else ""  # silenced, inhibited
        colour = RED if sev == "critical" and a["state"] == "firing" else YELLOW
        head = style.paint(f"{a['state']:8} {sev:8}", colour)
        text = f"{name}{mark} since {since} = {fmt(a.get('value'), 'g')}"
        rows += wrapped(f" {head} {text}", 19 + len(text), where, width)
    return rows or [" none firing or pending"]


def wrapped(first: str, used: int, words: list[str], width: int) -> list[str]:
    """Put words after `first` (of `used` visible characters), then on indented lines below."""
    rows, line, room = [], first, width - used
    for word in words:
        if len(word) + 1 > room and line.strip():
            rows.append(line)
            line, room = "   ", width - 3
        line, room = f"{line} {word}", room - len(word) - 1
    return [*rows, line]


def node(series: Sequence[Series]) -> list[str]:
    """Return the node section: memory, the worst disk's I/O wait, probe loss per target."""
    memory = latest(one(series, "host_memory_used_ratio"))
    disks = [(latest(s) or 0.0, s["labels"].get("device", "?")) for s in
             find(series, "disk_io_wait_seconds")]  # fmt: skip
    worst = max(disks, default=None)
    disk = f"{fmt(worst[0], 's')} ({worst[1]})" if worst else "-"
    targets = find(series, "net_packet_loss_ratio")
    loss = "  ".join(f"{s['labels'].get('target', '?')} {fmt(latest(s), '%%')}" for s in targets)
    loss = loss or "no probe targets"
    return [f" memory {fmt(memory, '%')}   worst disk I/O wait {disk}", f" loss {loss}"]


def pipelines(series: Sequence[Series], now: float) -> list[str]:
    """Return shipping lag and dead letters, the outbox, failing samplers, the last reload."""
    rows = []
    for lag in find(series, "dsagent_log_lag_bytes"):
        name = lag["labels"].get("input", "?")
        dead = latest(one(series, "dsagent_log_docs_dead_lettered_total", input=name))
        rows.append(f" logs {name}: lag {fmt(latest(lag), 'n')} B, dead letters {fmt(dead, 'n')}")
    for pending in find(series, "dsagent_outbox_pending"):
        name = pending["labels"].get("receiver", "?")
        oldest = latest(one(series, "dsagent_outbox_oldest_seconds", receiver=name))
        rows.append(f" outbox {name}: {fmt(latest(pending), 'n')} pending, oldest "
                    f"{fmt(oldest, 'n')}s")  # fmt: skip
    rows += backends(series)
    failing = sorted(s["labels"].get("sampler", "?") for s in
                     find(series, "dsagent_sampler_success") if latest(s) == 0)  # fmt: skip
    rows.append(f" samplers failing: {', '.join(failing) or 'none'}")
    ok = latest(one(series, "dsagent_config_last_reload_successful"))
    at = latest(one(series, "dsagent_config_last_reload_success_timestamp_seconds"))
    when = time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"
    rows.append(f" last reload: {'ok' if ok == 1 else 'REFUSED' if ok == 0 else '-'}"
                f" (last good {when})")  # fmt: skip
    return rows


def backends(series: Sequence[Series]) -> list[str]:
    """Return one line per backend that is down, or one line saying all are up."""
    down, count = [], 0
    for up in find(series, "dsagent_backend_up"):
        name, count = up["labels"].get("backend", "?"), count + 1
        if latest(up) == 0:
            last = latest(one(series, "dsagent_backend_last_success_timestamp_seconds",
                              backend=name))  # fmt: skip
            when = time.strftime("%H:%M:%S", time.localtime(last)) if last else "never"
            down.append(f" backend {name}: DOWN (last success {when})")
    return down or [f" backends: {count} up" if count else " backends: none"]


def render(data: dict[str, Any], *, color: bool = False, ascii_only: bool = False,
           width: int = 80) -> str:  # fmt: skip
    """Render what `dsagent status` fetched as one screen, each line cut to `width`."""
    style = Style(color, ascii_only)
    series: list[Series] = data.get("series", [])
    at = time.strftime("%H:%M:%S", time.localtime(data.get("at", 0)))
    sections = [
        ("GPUS", gpus(series, style)),
        ("WORKERS", workers(series, style)),
        ("ALERTS", alerts(data.get("alerts", []), style, width)),
        ("NODE", node(series)),
        ("HARDWARE", hardware(series)),
        ("PIPELINES", pipelines(series, data.get("at", 0))),
    ]
    lines = [f"dsagent on {data.get('url', '')} at {at}, the last {data.get('range', '15m')}"]
    for title, rows in sections:
        lines.append(style.paint(title, DIM))
        lines += rows
    return "\n".join(_cut(line, width) for line in lines) + "\n"


def _cut(line: str, width: int) -> str:
    """Cut a line to `width` visible characters (colour codes do not count)."""
    out, seen, i = [], 0, 0
    while i < len(line) and seen < width:
        if line[i] == "\x1b":
            end = line.index("m", i) + 1
            out.append(line[i:end])
            i = end
            continue
        out.append(line[i])
        seen, i = seen + 1, i + 1
    if RESET not in "".join(out[-1:]) and "\x1b[" in "".join(out):
        out.append(RESET)
    return "".join(out)
