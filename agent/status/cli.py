"""`dsagent status`: the running agent's last 15 minutes on one screen, or as JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from agent.config import ConfigError, load_config
from agent.config.settings import agent_url
from agent.config.workers import http_url
from agent.status import hardware
from agent.status.view import render

DEFAULT_URL = "http://127.0.0.1:9840"
RANGE, POINTS = "15m", 20
METRICS = (
    "gpu_up", "gpu_pod_info", "gpu_saturation_ratio", "gpu_utilization_ratio",
    "gpu_memory_used_bytes",
    "gpu_memory_total_bytes",
    "gpu_temperature_celsius", "gpu_power_watts", "gpu_xid_errors_total",
    "worker_up", "worker_ready", "worker_loading", "inference_request_latency_seconds",
    "inference_requests_per_second", "inference_ttft_seconds", "inference_requests_running",
    "inference_requests_waiting", "inference_kv_cache_usage_ratio",
    "inference_energy_joules_per_token", "inference_cost_per_million_tokens",
    "host_memory_used_ratio", "disk_io_wait_seconds", "net_packet_loss_ratio",
    "dsagent_log_lag_bytes", "dsagent_log_docs_dead_lettered_total", "dsagent_outbox_pending",
    "dsagent_outbox_oldest_seconds", "dsagent_sampler_success", "dsagent_backend_up",
    "dsagent_backend_last_success_timestamp_seconds",
    "dsagent_config_last_reload_successful",
    "dsagent_config_last_reload_success_timestamp_seconds",
)  # fmt: skip


class Unreachable(Exception):
    """The agent did not answer, or refused."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status`."""
    status = sub.add_parser("status", help="one screen of the node: GPUs, workers, alerts")
    status.add_argument("--url", help=f"the agent (default {DEFAULT_URL}, or http.listen of "
                        "--config)")  # fmt: skip
    status.add_argument("--config", type=Path, metavar="FILE", help="config naming http.listen")
    status.add_argument("--token-file", type=Path, metavar="FILE",
                        help="viewer token when [[api_tokens]] exist ($DSAGENT_TOKEN)")  # fmt: skip
    status.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https agent")
    status.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                        help="redraw every SECONDS (default 2) until Ctrl-C")  # fmt: skip
    status.add_argument("--json", action="store_true", help="print the data as JSON instead")


def fetch(url: str, token: str | None, ca_file: str | None) -> dict[str, Any]:
    """Get recent history and the alerts from the agent; raise Unreachable."""
    import requests  # only for this command

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out: dict[str, Any] = {"url": url, "at": time.time(), "range": RANGE, "series": []}
    window = [("range", RANGE), ("points", str(POINTS))]
    paths = [
        ("series", "/api/v1/series?" + urlencode([("match", m) for m in names] + window))
        for names in (METRICS, hardware.METRICS)
    ]  # the API takes 50 selectors a call
    for key, path in [*paths, ("alerts", "/api/v1/alerts")]:
        try:
            resp = requests.get(url + path, headers=headers, timeout=5, verify=ca_file or True)
        except requests.RequestException as exc:
            raise Unreachable(f"no agent answers at {url} ({type(exc).__name__})") from None
        if not resp.ok:
            why = "give --token-file" if resp.status_code in (401, 404) and not token else ""
            raise Unreachable(f"{url} answered {resp.status_code} {resp.reason} {why}".strip())
        body = resp.json()
        if key == "series":
            out["series"] += body["series"]
        else:
            out[key] = body
    return out


def _url(args: argparse.Namespace) -> str:
    if args.url:
        return http_url(str(args.url)).rstrip("/")  # ValueError naming the form it wants
    return agent_url(load_config(args.config)) if args.config else DEFAULT_URL


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return str(args.token_file.read_text().strip()) or None
    return os.environ.get("DSAGENT_TOKEN") or None


def color_wanted() -> bool:
    """Colour on a terminal that shows it, unless NO_COLOR says otherwise (no-color.org)."""
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def ascii_only() -> bool:
    """Return True when the output encoding cannot show a sparkline's block characters."""
    try:
        "▁█".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return True
    return False


def run(args: argparse.Namespace) -> int:
    """Print the screen once, or redraw it with --watch; 1 when the agent does not answer."""
    try:
        url, token = _url(args), _token(args)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"dsagent status: {exc}", file=sys.stderr)
        return 2
    try:
        while True:
            data = fetch(url, token, args.ca_file)
            if args.json:
                print(json.dumps(data, indent=1))
            else:
                screen = render(data, color=color_wanted(), ascii_only=ascii_only())
                print(("\x1b[H\x1b[2J" if args.watch else "") + screen, end="", flush=True)
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except Unreachable as exc:
        print(f"dsagent status: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
