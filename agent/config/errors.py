"""Config problems named by key path, with file:line or the environment variable behind them."""

from __future__ import annotations

import difflib
import json
import os
import re
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
        self.problems = sorted(problems, key=_order)  # a file's in line order, then the rest
        super().__init__("; ".join(str(p) for p in self.problems))


def _order(problem: Problem) -> tuple[str, int]:
    """Sort key: where a problem is, its line as a number (file:9 before file:10)."""
    place, _, line = problem.where.rpartition(":")
    return (place, int(line)) if line.isdigit() else (problem.where, 0)


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


def problems_from(exc: ValidationError, path: Path | None, text: str,
                  model: Any = None) -> list[Problem]:  # fmt: skip
    """Turn a pydantic ValidationError into located problems; `model` suggests known keys."""
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(err["loc"], model)
        out.append(locate(Problem(key, msg), path, text))
    return out


def did_you_mean(loc: tuple[int | str, ...], model: Any) -> str:
    """Suggest the known key of `model` an unknown one is closest to: ' (did you mean X?)'."""
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            continue  # a list index: the same model below it
        model = _inner(field.annotation)
        if model is None:
            return ""
    known = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _inner(annotation: Any) -> Any:
    """Return the model a field holds, looking inside list[...] and X | None."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if hasattr(candidate, "model_fields"):
            return candidate
        for inner in typing.get_args(candidate):
            if hasattr(inner, "model_fields"):
                return inner
    return None


def env_json_problems(exc: Exception) -> list[Problem]:
    """Name the DSAGENT_ variables whose value should be JSON (a list or a table) and is not."""
    section = re.search(r'field "(\w+)"', str(exc))
    prefix = ENV_PREFIX + (section.group(1).upper() if section else "")
    out = []
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(prefix):
            continue
        try:
            json.loads(value)
        except ValueError:
            out.append(Problem("", f"{value!r} is not JSON: a list or a table from the "
                               'environment is written as JSON, e.g. \'["10.0.0.1"]\' or '
                               '\'[{"name": "w", "url": "http://127.0.0.1:8000"}]\'',
                               f"env {name}"))  # fmt: skip
    return out or [Problem("", f"{exc}: {exc.__cause__}", "environment")]
