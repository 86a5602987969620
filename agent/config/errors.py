"""Config problems named by key path, with file:line or the environment variable behind them."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

ENV_PREFIX = "DSAGENT_"


class Problem(NamedTuple):
    """One thing wrong with the configuration."""

    key: str
    message: str
    where: str = ""

    def __str__(self) -> str:
        head = f"{self.where}: " if self.where else ""
        key = f"{self.key}: " if self.key else ""
        return f"{head}{key}{self.message}"


class ConfigError(Exception):
    """Raised when the configuration cannot be used; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


def env_name(parts: Sequence[str | int]) -> str | None:
    """Return the DSAGENT_ variable that set this key, if one is set."""
    for depth in range(len(parts), 0, -1):
        name = ENV_PREFIX + "__".join(str(p) for p in parts[:depth]).upper()
        if any(k.upper() == name for k in os.environ):
            return name
    return None


def find_line(text: str, parts: Sequence[str | int]) -> int | None:
    """Find the line in TOML text that sets a key path (a best effort; None if unknown)."""
    keys = [str(p) for p in parts if not isinstance(p, int)]
    if not keys:
        return None
    table: list[str] = []
    best = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if header:
            table = [k.strip().strip('"') for k in header.group(1).split(".")]
            if table == keys:
                best = best or number
            continue
        assign = re.match(r"\s*([A-Za-z0-9_.\"-]+)\s*=", line)
        if assign:
            path = table + [k.strip('"') for k in assign.group(1).split(".")]
            if path == keys:
                return number
            if path == keys[: len(path)] and best is None:
                best = number
    return best


def locate(problem: Problem, path: Path | None, text: str) -> Problem:
    """Fill in where a problem's value came from: an env variable or file:line."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in problem.key.split(".")]
    env = env_name([p for p in parts if isinstance(p, str)])
    if env:
        return problem._replace(where=f"env {env}")
    if path is None:
        return problem
    line = find_line(text, parts)
    return problem._replace(where=f"{path}:{line}" if line else str(path))


def problems_from(exc: ValidationError, path: Path | None, text: str) -> list[Problem]:
    """Turn a pydantic ValidationError into located problems."""
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        out.append(locate(Problem(key, msg), path, text))
    return out
