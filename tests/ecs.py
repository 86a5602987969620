"""Documents checked against ECS: every field inside an ECS field set exists there, typed alike."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from tests.conftest import ROOT

ALLOWED = {"log.offset"}  # Filebeat's byte offset: not ECS, but what every Filebeat user knows
STRINGS = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword", "ip", "date"}
FAMILIES = {  # a mapping type -> the ECS types it may stand for
    "keyword": {"keyword", "constant_keyword", "wildcard"},
    "match_only_text": {"match_only_text", "text"},
    "integer": {"integer", "long"},
    "long": {"long", "integer"},
    "float": {"float", "double", "scaled_float", "half_float"},
    "double": {"double", "float", "scaled_float", "half_float"},
    "wildcard": {"wildcard", "keyword"},
}


@cache
def schema() -> tuple[frozenset[str], dict[str, str]]:
    """Return (ECS's top-level names, field -> ECS type) from the vendored ECS table."""
    data = yaml.safe_load((ROOT / "tests" / "fixtures" / "ecs" / "fields.yml").read_text())
    return frozenset(data["field_sets"]), dict(data["fields"])


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return dotted field names and their values; arrays stay values."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        whole = schema()[1].get(name) in ("object", "flattened")  # labels: one field, any keys
        if isinstance(value, dict) and value and not whole:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def fits(ecs_type: str, value: Any) -> bool:
    """Say whether a JSON value can be a value of an ECS type."""
    if ecs_type in ("nested", "object", "flattened"):
        return isinstance(value, dict | list)
    values = value if isinstance(value, list) else [value]
    for one in values:
        if ecs_type in STRINGS and not isinstance(one, str):
            return False
        if ecs_type in ("long", "integer") and (isinstance(one, bool) or not isinstance(one, int)):
            return False
        if ecs_type in ("float", "double") and (
            isinstance(one, bool) or not isinstance(one, int | float)
        ):
            return False
    return True


def violations(doc: dict[str, Any]) -> list[str]:
    """List every field of `doc` inside an ECS field set that ECS lacks or types otherwise."""
    sets, fields = schema()
    found = []
    for name, value in flatten(doc).items():
        if value is None or name.split(".")[0] not in sets or name in ALLOWED:
            continue
        if name not in fields:
            found.append(f"{name}: not in ECS")
        elif not fits(fields[name], value):
            found.append(f"{name}: {value!r} is not an ECS {fields[name]}")
    return found
