"""Text logs keep their own time and level: the common formats, and any time round-trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config.shipping import LogInputConfig
from agent.shipping.documents import NO_TIME, to_doc
from agent.shipping.parse import Event
from agent.shipping.timestamps import level, parse

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("line", "zone", "want"),
    [
        ("2026-12-02 00:00:02 ERROR boom", UTC, "2026-12-02T00:00:02+00:00"),
        ("2026-12-02T00:00:02Z request done", SHANGHAI, "2026-12-02T00:00:02+00:00"),
        ("2026-12-02T08:00:02.5+08:00 x", UTC, "2026-12-02T00:00:02.500000+00:00"),
        ("2026-12-02 08:00:02,123 - v - INFO - up", SHANGHAI, "2026-12-02T00:00:02.123000+00:00"),
        ("Dec  2 08:00:02 gpu-07 kernel: NVRM: Xid 79", SHANGHAI, "2026-12-02T00:00:02+00:00"),
        ("INFO 12-02 08:00:02 [api_server.py:42] started", SHANGHAI, "2026-12-02T00:00:02+00:00"),
        ("Dec 31 23:59:59 host cron: tick", UTC, "2025-12-31T23:59:59+00:00"),  # last year's
    ],
)  # fmt: skip
def test_common_formats(line: str, zone: object, want: str) -> None:
    when = parse(line, zone, NOW)  # type: ignore[arg-type]
    assert when is not None and when.isoformat() == want


def test_no_time_is_none_and_an_impossible_date_is_not_a_time() -> None:
    assert parse("boom without a time", UTC, NOW) is None
    assert parse("2026-02-30 10:00:00 no such day", UTC, NOW) is None
    assert parse("Feb 29 10:00:00 not in 2026", UTC, NOW) is None


def test_a_configured_strptime_format() -> None:
    when = parse("02/12/2026-00:00:02 custom", UTC, NOW, "%d/%m/%Y-%H:%M:%S")
    assert when == datetime(2026, 12, 2, 0, 0, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "want"),
    [("2026-12-02 00:00:02 ERROR boom", "error"), ("INFO 12-02 00:00:02 x", "info"),
     ("ts=1 level=warn msg=x", "warn"), ("2026-12-02 00:00:02 connection error", None)],
)  # fmt: skip
def test_levels(line: str, want: str | None) -> None:
    assert level(line) == want


FORMATS = ["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S,{ms}",
           "%Y-%m-%dT%H:%M:%S.{ms}+00:00", "%b %d %H:%M:%S", "INFO %m-%d %H:%M:%S"]  # fmt: skip


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
       st.sampled_from(FORMATS))  # fmt: skip
def test_any_time_rendered_in_a_supported_format_parses_back(when: datetime, fmt: str) -> None:
    when = when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=UTC)
    # no year in the line: it is taken as the year that puts it nearest before now
    now = when + timedelta(hours=1) if "%Y" not in fmt else NOW
    text = when.strftime(fmt.replace("{ms}", f"{when.microsecond // 1000:03d}"))
    got = parse(text + " message", UTC, now)
    want = when if "{ms}" in fmt else when.replace(microsecond=0)
    assert got == want, text


def doc(text: str, **cfg: str) -> dict[str, object]:
    config = LogInputConfig(name="node", paths=["x"], format="text", **cfg)  # type: ignore[arg-type]
    data = text.encode()
    return to_doc(Event("1:2:0", "/var/log/x", 0, len(data), data), config, "n", "dsagent.node")[0]


def test_a_text_line_ships_with_its_own_time_and_level() -> None:
    got = doc("2026-12-02 08:00:02 ERROR boom\n  at line 3", timezone="Asia/Shanghai")
    assert got["@timestamp"] == "2026-12-02T00:00:02.000Z", "the first line's time"
    assert got["log"]["level"] == "error"  # type: ignore[index]
    assert got["log"]["file"]["path"] == "/var/log/x"  # type: ignore[index]
    missing = doc("no time here")
    assert missing["tags"] == [NO_TIME] and missing["@timestamp"]


def test_a_bad_time_zone_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        LogInputConfig(name="n", paths=["x"], timezone="Mars/Olympus")
