"""The layout shows the design: no import cycles, arrows toward store and config, no sim/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What may be imported by whom, by package: everything points toward store and config.
LEAVES = {"agent.store", "agent.ring", "agent.durations", "agent.targets", "agent.windows",
          "agent.files"}  # fmt: skip
# The only places that may reach the simulator: the CLI runs it, and injects its fake NVML.
SIM_USERS = {"agent.cli", "agent.sim"}


def modules() -> dict[str, Path]:
    out = {}
    for path in (ROOT / "agent").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Return the agent modules a file imports, anywhere in it (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agent"):
            subs = [f"{node.module}.{a.name}" for a in node.names]
            found |= {s for s in subs if s in known} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("agent")}
    return found


def package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def graph(level: str) -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        for target in imports(path, known):
            a, b = (package(name), package(target)) if level == "package" else (name, target)
            if b not in (a, "agent"):
                edges.setdefault(a, set()).add(b)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Return every cycle found by depth-first search (each as the path that closes it)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


def test_no_import_cycle_between_packages() -> None:
    assert cycles(graph("package")) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(graph("module")) == []


def test_leaves_import_no_other_part() -> None:
    edges = graph("package")
    for leaf in LEAVES:
        assert edges.get(leaf, set()) <= {"agent.store", "agent.ring"}, leaf  # the hub


def test_no_production_module_imports_the_simulator() -> None:
    users = {a for a, targets in graph("package").items() if "agent.sim" in targets}
    assert users <= SIM_USERS, users - SIM_USERS


def test_the_checker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
