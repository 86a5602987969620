import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("250ms", 0.25),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5s", 1.5),
        (3, 3.0),
        (0.5, 0.5),
    ],
)
def test_parses_prometheus_style(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "abc", "5x", "1s 2s", "-1s", "m5", "1m5", True, -3])
def test_rejects_malformed(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9))
def test_format_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


@given(st.text(max_size=20))
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        assert parse_duration(text) >= 0
    except ValueError as exc:
        assert "invalid duration" in str(exc)
