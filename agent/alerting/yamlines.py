"""YAML loading that remembers the line of every mapping and key, for file:line errors."""

from __future__ import annotations

import re
from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping from YAML that knows its own line and each key's line."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        """Return the line of a key, or of the mapping if the key is absent."""
        return self.key_lines.get(key, self.line)


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        out = LineDict({str(k): v for k, v in super().construct_mapping(node, deep=True).items()})
        out.line = node.start_mark.line + 1
        out.key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value}
        return out


def _map(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    return loader.construct_mapping(node)


_Loader.add_constructor("tag:yaml.org,2002:map", _map)
# YAML 1.2 booleans only: in YAML 1.1 `on`, `off`, `yes` and `no` are booleans, which turns
# `on: [worker]` into `True: [worker]`. Prometheus reads rule files the 1.2 way too.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load(text: str) -> Any:
    """Parse YAML; raise ValueError('line N: ...') on a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:
        raise ValueError("line 1: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ValueError(f"{where}YAML syntax error: {getattr(exc, 'problem', exc)}") from None
