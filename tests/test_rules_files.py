"""Rule files: every problem named by file:line; expressions and templates."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alerting.expr import parse_expr
from agent.alerting.model import RuleProblems
from agent.alerting.rules import load_files, parse_file
from agent.alerting.templates import Template, TemplateError, go_float, humanize
from tests.conftest import FIXTURES
from tests.test_cli import dsagent

BAD = FIXTURES / "rules" / "bad.yml"


def test_every_problem_is_reported_with_file_and_line() -> None:
    with pytest.raises(RuleProblems) as info:
        load_files([BAD])
    got = info.value.problems
    expect = [
        f"{BAD}:3: invalid duration 'often'",
        f"{BAD}:6: BadExpr: bad expression: avg_over_time needs a range selector",
        f"{BAD}:9: UnknownFunc: bad expression: unknown function 'stddev_over_time'",
        f"{BAD}:14: BadFor: for: invalid duration 'soon'",
        f"{BAD}:15: NoThreshold: threshold missing",
        f"{BAD}:20: BadTemplate: annotation 'summary': template error: unknown function",
        f"{BAD}:25: duplicate alert name 'Dup' in group 'broken'",
        f"{BAD}:30: Typo: unknown key 'threshold'",
        f"{BAD}:35: BadClear: clear makes no sense with op ==",
    ]
    for want in expect:
        assert any(p.startswith(want) for p in got), f"missing {want!r} in {got}"


def test_yaml_syntax_error_names_the_line() -> None:
    groups, problems = parse_file("groups:\n  - name: a\n    rules: [\n", "x.yml")
    assert groups == [] and len(problems) == 1
    assert problems[0].startswith("x.yml:4: YAML syntax error")


def test_good_file_loads() -> None:
    (group,) = load_files([FIXTURES / "rules" / "good.yml"])
    (rule,) = group.rules
    assert group.interval == 1.0 and rule.op == ">=" and rule.labels == {"team": "infra"}
    assert rule.annotations["summary"].render({}, 2.5) == "load is 2.5"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("x", "x"),
        ('x{a="1", b=~"g.*", c!="2", d!~"z"}', 'x{a="1",b=~"g.*",c!="2",d!~"z"}'),
        ("avg_over_time(x[5m])", "avg_over_time(x[5m])"),
        (
            'quantile_over_time(0.95, lat{q="a"}[1m30s])',
            'quantile_over_time(0.95, lat{q="a"}[1m30s])',
        ),
        ("rate(c_total[30s])", "rate(c_total[30s])"),
    ],
)
def test_expressions_round_trip(text: str, canonical: str) -> None:
    assert str(parse_expr(text)) == canonical
    assert str(parse_expr(str(parse_expr(text)))) == canonical


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x{",
        'x{a="1"',
        "avg_over_time(x)",
        "rate(x[zz])",
        "quantile_over_time(x[5m])",
        "quantile_over_time(2, x[5m])",
        "x{a=1}",
        'x{a=~"("}',
        "1x",
    ],
)
def test_bad_expressions_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_expr(bad)


@given(st.text(max_size=40))
def test_expression_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_expr(text)


@given(st.text(max_size=40))
def test_template_compiler_never_crashes(text: str) -> None:
    with contextlib.suppress(TemplateError):
        Template(text).render({"gpu": "0"}, 0.5)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (95.0, "95"),
        (0.5, "0.5"),
        (1e21, "1e+21"),
        (123456789.0, "123456789"),
        (1e-5, "1e-05"),
    ],
)
def test_go_float_formatting(value: float, text: str) -> None:
    assert go_float(value) == text


def test_humanize_functions_match_prometheus() -> None:
    t = Template(
        "{{ $value | humanize }} {{ $value | humanizePercentage }} "
        '{{ $value | humanizeDuration }} {{ $labels.gpu }} {{ printf "%.1f" $value }}'
    )
    assert t.render({"gpu": "7"}, 1234567.0) == "1.235M 1.235e+08% 14d 6h 56m 7s 7 1234567.0"
    assert humanize(0.0012) == "1.2m"
    assert Template("{{ $value | humanizeDuration }}").render({}, 0.25) == "250ms"


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1+2x3", [1.0, 3.0, 5.0, 7.0]),
        ("5x2", [5.0, 5.0, 5.0]),
        ("_x2", [None, None]),
        ("1 _ 3", [1.0, None, 3.0]),
        ("10-1x2", [10.0, 9.0, 8.0]),
        ("0.95", [0.95]),
        ("stale", [None]),
    ],
)
def test_promtool_expanding_notation(text: str, values: list[float | None]) -> None:
    from agent.alerting.promtest import expand_values

    assert expand_values(text) == values


def test_bad_series_notation_is_a_value_error() -> None:
    from agent.alerting.promtest import expand_values

    with pytest.raises(ValueError, match="bad series value"):
        expand_values("1+x")


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        (
            "groups:\n  - name: g\n    rules: 5\n",
            3,
            "rules must be a list of rules, not a number 5",
        ),
        ("groups:\n  - name: g\n    rules: {a: 1}\n", 3, "not a mapping"),
        ("groups:\n  - name: g\n    rules:\n      - 5\n", 3, "a rule must be a mapping"),
        ("groups:\n  - name: g\n    rules:\n      - null\n", 3, "not nothing"),
        ("groups:\n  - 7\n", 1, "a group needs a 'name'"),
    ],
)
def test_every_shape_is_a_file_line_problem(tmp_path: Path, body: str, line: int,
                                            says: str) -> None:  # fmt: skip
    path = tmp_path / "r.yml"
    path.write_text(body)
    for args in (("rules", "check", str(path)),):
        out = dsagent(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert f"{path}:{line}: " in out.stderr and says in out.stderr, out.stderr
    conf = tmp_path / "agent.toml"
    conf.write_text(f'[rules]\npaths = ["{path}"]\n')
    for command in ("check-config", "run"):
        out = dsagent(command, "--config", str(conf))
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert says in out.stderr
