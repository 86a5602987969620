"""`dsagent probe`: the check a blue/green switch runs before sending traffic to a worker."""

from __future__ import annotations

import argparse
import sys

from agent.config.workers import http_url
from agent.workers import checks as probes


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `probe`."""
    probe = sub.add_parser("probe", help="check a worker once: health, model, a tiny generation")
    probe.add_argument("url", help="the worker's base URL, e.g. http://127.0.0.1:8000")
    probe.add_argument("--engine", default="vllm",
                       choices=("vllm", "sglang", "tgi", "llamacpp", "openai"),
                       help="the worker's engine (default vllm)")  # fmt: skip
    probe.add_argument("--model", help="the model /v1/models must list")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds per check (default 10)")


def _ms(res: probes.Result, phase: str) -> str:
    return f"{1000 * res.phases[phase]:.0f} ms" if phase in res.phases else "?"


def run(args: argparse.Namespace) -> int:
    """Run the three checks once; print a one-line verdict; 0 when ready, 2 for a bad URL."""
    try:
        args.url = http_url(args.url)
    except ValueError as exc:
        print(f"dsagent probe: {exc}", file=sys.stderr)
        return 2
    state, live = probes.liveness(args.url, args.timeout)
    if state != "ok":
        why = "model loading (503)" if state == "loading" else live.detail or f"HTTP {live.status}"
        print(f"NOT READY {args.url}: health {state}: {why}")
        return 1
    ready = probes.readiness(args.url, args.model, args.timeout)
    if not ready.ok:
        print(f"NOT READY {args.url}: {ready.detail or f'/v1/models HTTP {ready.status}'}")
        return 1
    gen = probes.generation(args.url, args.model, args.timeout)
    if not gen.ok:
        print(f"NOT READY {args.url}: generation failed: {gen.detail or gen.status}")
        return 1
    print(
        f"READY {args.url}: health ok ({_ms(live, 'total')}), model listed, "
        f"first token {_ms(gen, 'first_byte')}, {gen.detail} in {_ms(gen, 'total')}"
    )
    return 0
