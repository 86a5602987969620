"""Label matchers (=, !=, =~, !~) and selectors `name{label="value",...}`, as in PromQL."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.store import Labels

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are anchored, as in Prometheus."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> Matcher:
        """Build a matcher; raise ValueError for a bad operator or regex."""
        if op not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"unknown matcher operator {op!r}")
        regex = None
        if op in ("=~", "!~"):
            try:
                regex = re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regex {value!r}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return True if the label set passes (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matchers(text: str) -> list[Matcher]:
    """Parse `a="x", b=~"y.*"` (without braces)."""
    out, pos, text = [], 0, text.strip()
    while pos < len(text):
        m = _MATCHER.match(text, pos)
        if not m:
            raise ValueError(f"bad label matcher at {text[pos:]!r}")
        value = re.sub(r"\\(.)", r"\1", m.group(3))
        out.append(Matcher.make(m.group(1), m.group(2), value))
        pos = m.end()
    return out


@dataclass(frozen=True)
class Selector:
    """A metric name with label matchers."""

    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Labels) -> bool:
        """Return True if a series' labels pass every matcher."""
        as_dict = dict(labels)
        return all(m.matches(as_dict) for m in self.matchers)

    def equalities(self) -> Labels:
        """Return the labels fixed by '=' matchers (what an absent alert is labelled with)."""
        return tuple(sorted((m.name, m.value) for m in self.matchers if m.op == "="))

    def __str__(self) -> str:
        inner = ",".join(str(m) for m in self.matchers)
        return f"{self.name}{{{inner}}}" if inner else self.name


def parse_selector(text: str) -> Selector:
    """Parse `name` or `name{matchers}`; raise ValueError naming the problem."""
    text = text.strip()
    name_match = _NAME.match(text)
    if not name_match:
        raise ValueError(f"expected a metric name at {text!r}")
    rest = text[name_match.end() :].strip()
    if not rest:
        return Selector(name_match.group())
    if not (rest.startswith("{") and rest.endswith("}")):
        raise ValueError(f"unexpected {rest!r} after metric name")
    return Selector(name_match.group(), tuple(parse_matchers(rest[1:-1])))
