"""The docs and the code agree: every metric, config key and CLI flag one names, the other has."""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import re
from typing import Any

from pydantic import BaseModel

import agent
from agent.cli import build_parser
from agent.config import Config
from agent.store import MetricInfo
from tests.conftest import ROOT

DOCS = ROOT / "docs"
METRIC_PAGES = ("metrics.md", "gpu.md", "hardware.md", "kubernetes.md", "inference.md")
SUFFIX = {"counter": "_total", "info": "_info"}
# A backticked name in the docs that is a metric of ours: these prefixes, then a snake name.
METRIC = re.compile(r"`((?:gpu|host|disk|net|node|inference|worker|dsagent|process)_[a-z0-9_]+)`")


def _tables() -> set[str]:
    """Metric names in the MetricInfo tables of every module and class."""
    names: set[str] = set()
    for mod in pkgutil.walk_packages(agent.__path__, "agent."):
        if "pb2" in mod.name or mod.name == "agent.__main__":
            continue
        module = importlib.import_module(mod.name)
        for holder in (module, *(v for v in vars(module).values() if isinstance(v, type))):
            for value in vars(holder).values():
                if isinstance(value, dict) and value and all(
                        isinstance(v, MetricInfo) for v in value.values()):  # fmt: skip
                    names |= set(value)
    return names


def _written(node: ast.AST) -> set[str]:
    """Names in a dict literal of MetricInfo (built in a function) or a hand-made family."""
    if isinstance(node, ast.Dict):
        return {k.value for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and isinstance(v, ast.Call)
                and getattr(v.func, "id", "") == "MetricInfo"}  # fmt: skip
    if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("family", "Family")
            and len(node.args) >= 2 and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[1], ast.Constant)):  # fmt: skip
        return {node.args[0].value + SUFFIX.get(node.args[1].value, "")}
    return set()


def exported_metrics() -> set[str]:
    """Every metric name the agent can export: its MetricInfo tables and its own families."""
    names = _tables()
    for path in (ROOT / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names |= _written(node)
    return names


def documented(pages: tuple[str, ...]) -> str:
    return "\n".join((DOCS / p).read_text(encoding="utf-8") for p in pages)


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    exported = exported_metrics()
    text = documented(METRIC_PAGES)
    missing = sorted(n for n in exported if f"`{n}`" not in text and f"`{n}{{" not in text)
    assert not missing, f"exported but in none of {METRIC_PAGES}: {missing}"
    first_cells = [row.split("|")[1] for row in text.splitlines() if row.startswith("| ")]
    named = {n for cell in first_cells for n in METRIC.findall(cell)}
    ghosts = sorted(n for n in named if n not in exported)
    assert not ghosts, f"documented but not exported: {ghosts}"


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, str]:
    """Every leaf config key as `section.key`, with the table it lives in (`[[x]]` or `x`)."""
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        kind: Any = field.annotation
        inner = getattr(kind, "__args__", (kind,))
        nested = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
        key = f"{prefix}{field.alias or name}"
        if nested is None or getattr(kind, "__origin__", None) is dict:
            keys[key] = prefix.rstrip(".")
        else:
            table = f"[[{key}]]" if getattr(kind, "__origin__", None) is list else key
            keys |= {
                k: (table if t == key else t) for k, t in config_keys(nested, key + ".").items()
            }
    return keys


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    text = documented(("configuration.md",))
    keys = config_keys()
    missing = []
    for key, table in sorted(keys.items()):
        leaf = key.rpartition(".")[2]
        if f"`{key}`" in text or f"`{key}." in text:  # the key, or a key.<name> map
            continue
        if (f"`{table}`" in text or f"`{table}." in text) and f"`{leaf}`" in text:
            continue  # a row naming the table (or another of its keys) and this one
        missing.append(key)
    assert not missing, f"config keys not in docs/configuration.md: {missing}"
    sections = set(Config.model_fields)
    named = set(re.findall(r"`([a-z_]+)\.([a-z_]+)`", text))
    ghosts = sorted(f"{s}.{k}" for s, k in named if s in sections and f"{s}.{k}" not in keys
                    and not any(key.startswith(f"{s}.{k}.") for key in keys))  # fmt: skip
    assert not ghosts, f"documented but not config keys: {ghosts}"


def cli_flags() -> set[str]:
    flags: set[str] = set()
    parsers = [build_parser()]
    while parsers:
        parser = parsers.pop()
        for action in parser._actions:
            flags |= {f for f in action.option_strings if f.startswith("--")}
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return flags - {"--help"}


def test_every_cli_flag_is_documented_and_every_documented_flag_exists() -> None:
    text = documented(("operations.md",))
    flags = cli_flags()
    missing = sorted(f for f in flags if f not in text)
    assert not missing, f"CLI flags not in docs/operations.md: {missing}"
    usage = text[text.index("## Usage") :]
    usage = usage[: usage.index("\n```\n", usage.index("```") + 3)]
    ghosts = sorted(set(re.findall(r"(--[a-z][a-z-]+)", usage)) - flags)
    assert not ghosts, f"in the usage block but no command takes them: {ghosts}"
