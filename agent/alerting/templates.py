"""Annotation templates: the Go-template subset Prometheus rules use, checked at load time."""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping
from decimal import Decimal

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)


class TemplateError(ValueError):
    """A template that cannot be parsed or names something unknown."""


def go_float(v: float) -> str:
    """Format a float as Go's %v does (what Prometheus prints for $value)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    d = Decimal(repr(v))
    exp = d.adjusted()
    if -4 <= exp < 21:
        text = format(d, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    digits = format(d, "e").replace("E", "e")
    mant, _, power = digits.partition("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    sign, num = (power[0], power[1:]) if power[0] in "+-" else ("+", power)
    return f"{mant}e{sign}{num.zfill(2)}"


def _g4(v: float) -> str:
    """Format as Go's %.4g (Python's is the same but for NaN and infinities)."""
    return go_float(v) if math.isnan(v) or math.isinf(v) else format(v, ".4g")


def humanize(v: float) -> str:
    """Prometheus' humanize: SI prefixes, 4 significant digits."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    big, small = "kMGTPEZY", "munpfazy"
    prefix = ""
    if abs(v) >= 1:
        for p in big:
            if abs(v) < 1000:
                break
            prefix, v = p, v / 1000
    else:
        for p in small:
            if abs(v) >= 1:
                break
            prefix, v = p, v * 1000
    return _g4(v) + prefix


def humanize_percentage(v: float) -> str:
    """Prometheus' humanizePercentage: 0.953 -> 95.3%."""
    return _g4(v * 100) + "%"


def humanize_duration(v: float) -> str:
    """Prometheus' humanizeDuration: 90061 -> 1d 1h 1m 1s, 0.25 -> 250ms."""
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v >= 1:
        secs = int(v)
        days, hours, mins = secs // 86400, secs // 3600 % 24, secs // 60 % 60
        if days:
            return f"{sign}{days}d {hours}h {mins}m {secs % 60}s"
        if hours:
            return f"{sign}{hours}h {mins}m {secs % 60}s"
        if mins:
            return f"{sign}{mins}m {secs % 60}s"
        return f"{sign}{_g4(v)}s"
    prefix = ""
    for p in "munpfazy":
        if v == 0 or v >= 1:
            break
        prefix, v = p, v * 1000
    return f"{sign}{_g4(v)}{prefix}s"


FUNCS: dict[str, Callable[[float], str]] = {
    "humanize": humanize,
    "humanizePercentage": humanize_percentage,
    "humanizeDuration": humanize_duration,
}


class Template:
    """A compiled template: literal text and `{{ arg | func ... }}` actions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[str | tuple[str, str | None, list[str]]] = []
        pos = 0
        for m in _ACTION.finditer(text):
            self.parts.append(text[pos : m.start()])
            self.parts.append(self._action(m.group(1)))
            pos = m.end()
        tail = text[pos:]
        if "{{" in tail or "}}" in tail:
            raise TemplateError(f"unclosed action in {text!r}")
        self.parts.append(tail)

    @staticmethod
    def _action(body: str) -> tuple[str, str | None, list[str]]:
        stages = [s.strip() for s in body.split("|")]
        try:
            first = shlex.split(stages[0]) if stages[0] else []
        except ValueError as exc:  # an unclosed quote
            raise TemplateError(f"{exc} in {{{{ {body} }}}}") from None
        fmt = None
        if first and first[0] == "printf":
            if len(first) != 3:
                raise TemplateError(f"printf needs a format and one argument: {{{{ {body} }}}}")
            fmt, first = first[1], first[2:]
        if len(first) != 1 or not re.fullmatch(r"\$value|\$labels\.[A-Za-z_]\w*", first[0]):
            raise TemplateError(f"unknown value in {{{{ {body} }}}}: use $value or $labels.NAME")
        if len(stages) > 2 or (fmt and len(stages) > 1):
            raise TemplateError(f"one function at most: {{{{ {body} }}}}")
        for func in stages[1:]:
            if func not in FUNCS:
                raise TemplateError(f"unknown function {func!r}: use {', '.join(FUNCS)}")
        return first[0], fmt, stages[1:]

    def render(self, labels: Mapping[str, str], value: float) -> str:
        """Fill in the labels and value."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            arg, fmt, funcs = part
            if arg == "$value":
                text = _apply(value, fmt, funcs)
            else:
                text = labels.get(arg.removeprefix("$labels."), "")
            out.append(text)
        return "".join(out)


def _apply(value: float, fmt: str | None, funcs: list[str]) -> str:
    if fmt is not None:
        fmt = fmt.replace("%v", "%s")
        try:
            return fmt % (go_float(value) if "%s" in fmt else value)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. %d of +Inf or NaN
            return f"%!({type(exc).__name__}: {exc}; value={go_float(value)})"  # as Go marks it
    return FUNCS[funcs[0]](value) if funcs else go_float(value)
