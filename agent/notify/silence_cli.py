"""`dsagent silence add|list|expire`: silences in the state dir, honoured by the running agent."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path

from agent.config import Config, load_config
from agent.config.errors import ConfigError
from agent.config.settings import agent_url
from agent.durations import format_duration, parse_duration
from agent.notify.silences import Silence, SilenceStore, matcher_from_cli


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
    exp.add_argument("id", help="the silence's id (from add or list)")
    for p in (add, lst, exp):
        p.add_argument("--config", type=Path, metavar="FILE",
                       help="config file (for http.listen, agent.state_dir)")  # fmt: skip
        p.add_argument("--url", help="the agent's URL (default: from http.listen)")
        p.add_argument("--token-file", type=Path, help="admin API token (or $DSAGENT_TOKEN)")
        p.add_argument("--ca-file", help="CA bundle to verify the agent's TLS certificate")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file is not None:
        return str(args.token_file.read_text().strip())
    return os.environ.get("DSAGENT_TOKEN") or None


def _base_url(args: argparse.Namespace, cfg: Config) -> str:
    return str(args.url).rstrip("/") if args.url else agent_url(cfg)


def _api(args: argparse.Namespace, cfg: Config, token: str) -> int:
    """Do it through the admin API, so the call is authorised and audited."""
    import requests

    url = _base_url(args, cfg) + "/api/v1/silences"
    kw = {"headers": {"Authorization": f"Bearer {token}"}, "timeout": 10,
          "verify": args.ca_file or True}  # fmt: skip
    try:
        if args.silence_command == "add":
            body = {"matchers": args.matchers, "duration": args.duration, "comment": args.comment,
                    "author": args.author}  # fmt: skip
            resp = requests.post(url, json=body, **kw)  # type: ignore[arg-type]
        elif args.silence_command == "expire":
            resp = requests.delete(f"{url}/{args.id}", **kw)  # type: ignore[arg-type]
        else:
            resp = requests.get(url, **kw)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        print(f"dsagent: cannot reach the agent at {url}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if not resp.ok:
        print(f"dsagent: {resp.status_code} {resp.json().get('error', '')}", file=sys.stderr)
        return 1 if resp.status_code in (400, 404) else 2
    return _print(args, resp.json())


def _print(args: argparse.Namespace, data: object) -> int:
    if args.silence_command == "add":
        assert isinstance(data, dict)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["ends_at"]))
        print(f"{data['id']}  until {until}")
    elif args.silence_command == "expire":
        print(f"expired {args.id}")
    else:
        now = time.time()
        silences = [Silence(**s) for s in data] if isinstance(data, list) else []
        shown = [s for s in silences if args.all or s.active(now)]
        if not shown:
            print("no silences" if args.all else "no active silences")
        for silence in shown:
            left = (
                f"{format_duration(round(silence.ends_at - now))} left"
                if silence.active(now)
                else "expired"
            )
            print(
                f"{silence.id}  {' '.join(silence.matchers)}  {left}  by {silence.created_by}: "
                f"{silence.comment}"
            )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run a `silence` subcommand through the API (with a token) or on the state dir."""
    try:
        cfg = load_config(args.config)
        token = _token(args)
    except (ConfigError, OSError) as exc:
        print(f"dsagent: {exc}", file=sys.stderr)
        return 2
    if token is not None:
        return _api(args, cfg, token)
    try:
        return _local(args, SilenceStore(cfg.agent.state_dir))
    except OSError as exc:  # the state dir is not ours to write, or not a directory
        why = exc.strerror or exc
        print(f"dsagent: agent.state_dir {cfg.agent.state_dir}: {why}; run as the agent's "
              "user, or give --token-file to go through the API", file=sys.stderr)  # fmt: skip
        return 2


def _local(args: argparse.Namespace, store: SilenceStore) -> int:
    """Without a token: write the state dir directly (needs its file permissions)."""
    if args.silence_command == "add":
        try:
            matchers = [matcher_from_cli(m) for m in args.matchers]
            duration = parse_duration(args.duration)
        except ValueError as exc:
            print(f"dsagent: {exc}", file=sys.stderr)
            return 2
        return _print(args, store.add(matchers, duration, args.author, args.comment).to_json())
    if args.silence_command == "expire":
        if store.expire(args.id):
            return _print(args, None)
        print(f"dsagent: no active silence {args.id}", file=sys.stderr)
        return 1
    return _print(args, [s.to_json() for s in store.load()])
