"""`dsagent probe` (the check a blue/green switch runs) and `dsagent sim-worker`."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent import probes


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `probe`, `sim-worker` and `demo`."""
    probe = sub.add_parser("probe", help="check a worker once: health, model, a tiny generation")
    probe.add_argument("url", help="the worker's base URL, e.g. http://127.0.0.1:8000")
    probe.add_argument("--engine", default="vllm",
                       choices=("vllm", "sglang", "tgi", "llamacpp", "openai"))  # fmt: skip
    probe.add_argument("--model", help="the model /v1/models must list")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds per check (default 10)")
    sim = sub.add_parser("sim-worker", help="run the vLLM-style worker simulator")
    sim.add_argument("--port", type=int, default=8000)
    sim.add_argument("--model", default="deepseek-v3")
    sim.add_argument("--log", type=Path, help="append JSON request logs here")
    demo = sub.add_parser("demo", help="a 90-second tour: simulator, agent, alerts, webhook")
    demo.add_argument("--keep", action="store_true", help="keep the demo's files afterwards")


def _ms(res: probes.Result, phase: str) -> str:
    return f"{1000 * res.phases[phase]:.0f} ms" if phase in res.phases else "?"


def probe(args: argparse.Namespace) -> int:
    """Run the three checks once; print a one-line verdict; 0 when ready."""
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


def run(args: argparse.Namespace) -> int:
    """Dispatch `probe`, `sim-worker` and `demo`."""
    if args.command == "probe":
        return probe(args)
    if args.command == "sim-worker":
        from agent.sim.worker import serve

        serve(args.port, args.model, args.log)
        return 0
    from agent.sim.demo import run_demo

    code: int = run_demo(keep=args.keep)
    return code
