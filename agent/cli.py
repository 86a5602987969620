"""The dsagent command line: run, check-config, version."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

from agent import __version__
from agent.config import Config, load_config, resolve_path
from agent.config.errors import ConfigError
from agent.config.settings import RulesConfig
from agent.logsetup import setup_logging

log = logging.getLogger("agent")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="TOML config file (default: /etc/dsagent/agent.toml if present, else built-ins)",
    )  # fmt: skip


def _log_args(parser: argparse.ArgumentParser, default: bool) -> None:
    """--log-format and --log-level, before or after the subcommand."""
    keep = argparse.SUPPRESS  # after the subcommand: only when given, not over the default
    parser.add_argument("--log-format", choices=("text", "json"),
                        default="text" if default else keep,
                        help="log line format on stderr (default: text)")  # fmt: skip
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default="info" if default else keep,
                        help="least severe level logged (default: info)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per action."""
    parser = argparse.ArgumentParser(
        prog="dsagent", description="Monitoring agent for GPU inference nodes.", allow_abbrev=False
    )
    _log_args(parser, default=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent in the foreground")
    _config_arg(run)
    check = sub.add_parser("check-config", help="validate the configuration and exit")
    _config_arg(check)
    sub.add_parser("version", help="print the version and exit")
    from agent.alerting import cli as rules_cli
    from agent.notify import silence_cli
    from agent.sim import cli as sim_cli
    from agent.status import cli as status_cli
    from agent.workers import cli as workers_cli

    status_cli.add_parser(sub)
    rules_cli.add_parser(sub)
    silence_cli.add_parser(sub)
    workers_cli.add_parser(sub)
    sim_cli.add_parsers(sub)
    _everywhere(sub)
    return parser


def _everywhere(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Accept the log options after every (sub)subcommand too, as users type them."""
    for command in sub.choices.values():
        _log_args(command, default=False)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                _everywhere(action)


def load_or_report(path: Path | None) -> Config | None:
    """Load the config, printing every problem to stderr if it is bad."""
    try:
        return load_config(path)
    except ConfigError as exc:
        where = resolve_path(path) or "built-in defaults and environment"
        print(
            f"dsagent: configuration {where} has {len(exc.problems)} problem(s):", file=sys.stderr
        )
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def check_config(path: Path | None) -> int:
    """Check every stage (config, rule files, state dir); 2 listing all problems if any."""
    from agent import statedir

    cfg = load_or_report(path)
    rules = check_rules(cfg.rules if cfg is not None else raw_rules(path))
    if cfg is not None:
        try:
            statedir.check(cfg.agent.state_dir, create=False)
        except statedir.StateDirError as exc:
            print(f"dsagent: {exc}", file=sys.stderr)
            return 2
    if cfg is None or rules is None:
        return 2
    source = resolve_path(path) or "built-in defaults"
    gpu = f"simulate {cfg.gpu.simulate}" if cfg.gpu.simulate else str(cfg.gpu.enabled).lower()
    print(
        f"config OK: {source}: node {cfg.agent.node_name}, listen {cfg.http.listen}, "
        f"every {cfg.agent.sample_interval:g}s, gpu {gpu}, "
        f"{len(cfg.network.probe_targets)} probe target(s), {len(cfg.workers)} worker(s), "
        f"{rules} rules"
    )
    return 0


def check_rules(rules_cfg: RulesConfig | None) -> int | None:
    """Load the configured rule files; print their problems; return the rule count or None."""
    from agent.alerting.model import RuleProblems
    from agent.alerting.rules import load_configured

    if rules_cfg is None:
        return None
    try:
        return sum(len(g.rules) for g in load_configured(rules_cfg))
    except RuleProblems as exc:
        print(f"dsagent: rules have {len(exc.problems)} problem(s):", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def raw_rules(path: Path | None) -> RulesConfig | None:
    """Return the file's [rules] table when the rest of the file has problems, if it is valid."""
    source = resolve_path(path)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8")) if source else {}
        return RulesConfig.model_validate(data.get("rules", {}))
    except (OSError, ValueError, AttributeError, RecursionError):  # said with the file's own
        return None


def version(args: argparse.Namespace) -> int:
    """Print the version."""
    print(f"dsagent {__version__}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Load the config and run the agent until it is told to stop."""
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    from agent.daemon import serve
    from agent.sim.simulate import simulated_nvml  # gpu.simulate: injected, not imported there

    return serve(cfg, resolve_path(args.config), simulated_nvml)


def dispatch(args: argparse.Namespace) -> int:
    """Run the chosen subcommand (its module imported only when used)."""
    from agent.alerting import cli as rules_cli
    from agent.notify import silence_cli
    from agent.sim import cli as sim_cli
    from agent.status import cli as status_cli
    from agent.workers import cli as workers_cli

    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "version": version, "run": run, "check-config": lambda a: check_config(a.config),
        "probe": workers_cli.run, "sim-worker": sim_cli.run, "demo": sim_cli.run,
        "silence": silence_cli.run, "rules": rules_cli.run, "status": status_cli.run,
    }  # fmt: skip
    return commands[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the dsagent console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    return dispatch(args)
