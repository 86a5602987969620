"""Rules survive any value: NaN and infinities compare as in PromQL, templates never raise."""

from __future__ import annotations

import math
import operator

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerting.engine import RuleEngine
from agent.alerting.rules import parse_file
from agent.alerting.templates import Template
from agent.store import SeriesStore, sample

T0 = 1_000_000.0
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
       "==": operator.eq, "!=": operator.ne}  # fmt: skip
VALUES = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.inf, -math.inf, math.nan, 1e308, -1e308, 0.0, 5e-324]
)
RULE = """groups:
  - name: g
    rules:
      - alert: Odd
        expr: x
        op: "{op}"
        thresholds: {{critical: 1}}
        annotations:
          d: '{{{{ printf "%d" $value }}}}'
          f: '{{{{ printf "%.2f" $value }}}}'
          h: "{{{{ $value | humanize }}}} {{{{ $value | humanizeDuration }}}}"
          p: "{{{{ $value | humanizePercentage }}}} on {{{{ $labels.i }}}}"
"""


@settings(max_examples=200, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=6), st.sampled_from(sorted(OPS)))
def test_every_value_compares_as_promql_and_renders(values: list[float], op: str) -> None:
    store = SeriesStore(retention=3600, interval=10)
    store.ingest("s", [sample("x", v, i=str(n)) for n, v in enumerate(values)], T0)
    groups, problems = parse_file(RULE.format(op=op), "t.yml")
    assert problems == []
    engine = RuleEngine(store, groups, started_at=T0)
    engine.evaluate_group(groups[0], T0)
    firing = {dict(a.labels)["i"]: a for a in engine.all_alerts()}
    want = {str(n) for n, v in enumerate(values) if OPS[op](v, 1.0)}
    assert set(firing) == want, "one instance per series that holds, none lost to another"
    for alert in firing.values():
        assert set(alert.annotations) == {"d", "f", "h", "p"}
        assert all(isinstance(text, str) for text in alert.annotations.values())
    samples = list(engine.samples(groups[0]))
    assert len([s for s in samples if s.name == "ALERTS"]) == len(want)


def test_printf_d_of_infinity_renders_the_error_into_the_annotation() -> None:
    text = Template('{{ printf "%d" $value }}').render({}, math.inf)
    assert text.startswith("%!(") and "+Inf" in text
