"""Config sections of log shipping: [[logs]] and [elasticsearch]."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from agent.config.types import Duration, Regex, Section


@functools.cache
def zone(name: str) -> tzinfo:
    """Return the zone of an input's times: 'local', 'UTC' or an IANA name (KeyError)."""
    if name == "local":
        local = datetime.now().astimezone().tzinfo
        assert local is not None
        return local
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


class LogInputConfig(Section):
    """[[logs]]: files to tail and ship."""

    name: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)
    format: Literal["json", "text"] = "json"
    multiline: Regex | None = None  # regex a first line matches; other lines continue the event
    dataset: str | None = None  # default: llm.inference for json, dsagent.node for text
    fields: dict[str, str] = Field(default_factory=dict)
    request_stats: bool = True  # json request logs feed latency, QPS and error series
    timestamp_format: str = "auto"  # text logs: the known formats, or a strptime format
    timezone: str = "local"  # text logs: the zone of times written without one
    follow_symlinks: bool = False  # and then only to files these paths match

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except (KeyError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: use local, UTC or a name such as "
                             "Asia/Shanghai") from None  # fmt: skip
        return value

    @field_validator("timestamp_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value != "auto" and "%" not in value:
            raise ValueError(f"{value!r} is not a strptime format (e.g. %Y-%m-%d %H:%M:%S)")
        return value


class ElasticsearchConfig(Section):
    """[elasticsearch]: where documents go; without hosts they go to a local NDJSON sink."""

    hosts: list[str] = Field(default_factory=list)
    namespace: str = "default"
    api_key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    batch_size: int = Field(default=2000, gt=0)
    batch_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    timeout: Duration = Field(default=10.0, gt=0)  # per node: then the next host is tried
    ship_alerts: bool = True  # the alert log goes to logs-dsagent.alerts-<namespace>


class EventPatternConfig(Section):
    """[[events.patterns]]: a log event to count, dsagent_log_events_total{input, event}."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    regex: Regex
    contains: list[str] = Field(default_factory=list)  # strings a match must hold: a fast prefilter
    inputs: list[str] = Field(default_factory=list)  # [[logs]] names; empty: every input


class EventsConfig(Section):
    """[events]: the default patterns (CUDA OOM, NCCL, engine crashes, Xid) and your own."""

    defaults: bool = True
    patterns: list[EventPatternConfig] = Field(default_factory=list)
