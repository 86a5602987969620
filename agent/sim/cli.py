"""`dsagent sim-worker` and `dsagent demo`: the simulator, on its own or in a guided tour."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ENGINE_CHOICES = ("vllm", "vllm-v0", "sglang", "tgi", "llamacpp")  # agent.sim.engines' kinds


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sim-worker` and `demo`."""
    sim = sub.add_parser("sim-worker", help="run the inference worker simulator")
    sim.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    sim.add_argument(
        "--model", default="deepseek-v3", help="model id it serves (default deepseek-v3)"
    )
    sim.add_argument("--log", type=Path, help="append JSON request logs here")
    sim.add_argument("--engine", default="vllm", choices=ENGINE_CHOICES,
                     help="whose metric names it speaks (default vllm: V1 names)")  # fmt: skip
    demo = sub.add_parser("demo", help="a 90-second tour: simulator, agent, alerts, webhook")
    demo.add_argument("--keep", action="store_true", help="keep the demo's files afterwards")
    demo.add_argument("--pace", type=float, default=1.0,
                      help="scale every step and window (0.5: in half the time)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Dispatch `sim-worker` and `demo`."""
    if args.command == "sim-worker":
        from agent.sim.worker import serve

        try:
            serve(args.port, args.model, args.log, args.engine)
        except OSError as exc:  # the port is taken, or the log cannot be written
            print(f"dsagent sim-worker: cannot serve on 127.0.0.1:{args.port}: "
                  f"{exc.strerror or exc}; give another --port", file=sys.stderr)  # fmt: skip
            return 2
        return 0
    from agent.sim.demo import run_demo

    if not 0.1 <= args.pace <= 10:
        print(f"dsagent demo: --pace {args.pace:g}: give a factor from 0.1 to 10",
              file=sys.stderr)  # fmt: skip
        return 2
    code: int = run_demo(keep=args.keep, pace=args.pace)
    return code
