"""`dsagent rules check|test|export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.alerting.export import export
from agent.alerting.model import Group, RuleProblems
from agent.alerting.promtest import run_file
from agent.alerting.rules import expand, load_configured, load_files
from agent.config import load_config
from agent.config.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `rules` and its subcommands."""
    rules = sub.add_parser("rules", help="check, test and export alerting rules")
    rsub = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    check = rsub.add_parser("check", help="validate rule files; exit 2 listing every problem")
    check.add_argument("paths", nargs="*", help="files or directories (default: the configured)")
    check.add_argument("--config", type=Path, metavar="FILE",
                       help="config file naming the rule paths")  # fmt: skip
    test = rsub.add_parser("test", help="run rule unit tests (promtool test rules format)")
    test.add_argument("files", nargs="+", type=Path, metavar="FILE",
                      help="unit-test files in promtool's format")  # fmt: skip
    exp = rsub.add_parser("export", help="print the rules as a Prometheus rule file")
    exp.add_argument("--format", choices=("prometheus",), default="prometheus",
                     help="output format (default: prometheus)")  # fmt: skip
    exp.add_argument("paths", nargs="*", help="files or directories (default: the configured)")
    exp.add_argument("--config", type=Path, metavar="FILE",
                     help="config file naming the rule paths")  # fmt: skip


def _groups(paths: list[str], config: Path | None) -> list[Group]:
    if paths:
        return load_files(paths)
    cfg = load_config(config)
    return load_configured(cfg.rules)


def run(args: argparse.Namespace) -> int:
    """Run a `rules` subcommand; return the exit code."""
    if args.rules_command == "test":
        return _test(args.files)
    try:
        groups = _groups(args.paths, args.config)
    except RuleProblems as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"dsagent: {exc}", file=sys.stderr)
        return 2
    if args.rules_command == "export":
        sys.stdout.write(export(groups))
        return 0
    files = len(expand(args.paths)) if args.paths else "configured"
    rules = sum(len(g.rules) for g in groups)
    print(f"rules OK: {rules} rules in {len(groups)} groups ({files} files)")
    return 0


def _test(files: list[Path]) -> int:
    failed = 0
    for path in files:
        try:
            failures = run_file(path)
        except (OSError, ValueError, KeyError, TypeError, RuleProblems) as exc:
            failures = [f"{path}: cannot run: {exc}"]
        for failure in failures:
            print(f"FAILED {failure}")
        failed += bool(failures)
        if not failures:
            print(f"{path}: SUCCESS")
    return 1 if failed else 0
