"""`dsagent silence add|list|expire`: silences in the state dir, honoured by the running agent."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path

from agent.config import load_config
from agent.config_errors import ConfigError
from agent.durations import format_duration, parse_duration
from agent.notify.silences import SilenceStore, matcher_from_cli


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `silence` and its subcommands."""
    silence = sub.add_parser("silence", help="mute alerts for a while")
    ssub = silence.add_subparsers(dest="silence_command", required=True, metavar="SUBCOMMAND")
    add = ssub.add_parser("add", help="add a silence: dsagent silence add alertname=GpuLost gpu=1")
    add.add_argument(
        "matchers", nargs="+", help="name=value, name!=value, name=~regex, name!~regex"
    )
    add.add_argument("--duration", default="1h", help="how long (default 1h)")
    add.add_argument("--author", default=getpass.getuser(), help="who (default: you)")
    add.add_argument("--comment", required=True, help="why")
    lst = ssub.add_parser("list", help="list active silences")
    lst.add_argument("--all", action="store_true", help="include expired ones")
    exp = ssub.add_parser("expire", help="end a silence now")
    exp.add_argument("id")
    for p in (add, lst, exp):
        p.add_argument("--config", type=Path, help="config file (for agent.state_dir)")


def run(args: argparse.Namespace) -> int:
    """Run a `silence` subcommand; return the exit code."""
    try:
        store = SilenceStore(load_config(args.config).agent.state_dir)
    except ConfigError as exc:
        print(f"dsagent: {exc}", file=sys.stderr)
        return 2
    if args.silence_command == "add":
        try:
            matchers = [matcher_from_cli(m) for m in args.matchers]
            duration = parse_duration(args.duration)
        except ValueError as exc:
            print(f"dsagent: {exc}", file=sys.stderr)
            return 2
        s = store.add(matchers, duration, args.author, args.comment)
        print(f"{s.id}  until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(s.ends_at))}")
        return 0
    if args.silence_command == "expire":
        if store.expire(args.id):
            print(f"expired {args.id}")
            return 0
        print(f"dsagent: no active silence {args.id}", file=sys.stderr)
        return 1
    now = time.time()
    for s in store.load():
        if args.all or s.active(now):
            left = (
                "expired"
                if not s.active(now)
                else f"{format_duration(round(s.ends_at - now))} left"
            )
            print(f"{s.id}  {' '.join(s.matchers)}  {left}  by {s.created_by}: {s.comment}")
    return 0
