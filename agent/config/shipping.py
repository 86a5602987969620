"""Config sections of log shipping: [[logs]] and [elasticsearch]."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from agent.config.types import Duration, Regex, Section


class LogInputConfig(Section):
    """[[logs]]: files to tail and ship."""

    name: str = Field(min_length=1)
    paths: list[str] = Field(min_length=1)
    format: Literal["json", "text"] = "json"
    multiline: Regex | None = None  # regex a first line matches; other lines continue the event
    dataset: str | None = None  # default: llm.inference for json, dsagent.node for text
    fields: dict[str, str] = Field(default_factory=dict)
    request_stats: bool = True  # json request logs feed latency, QPS and error series


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
    timeout: Duration = Field(default=30.0, gt=0)
    ship_alerts: bool = True  # the alert log goes to logs-dsagent.alerts-<namespace>
