"""Config sections of alert delivery: [notify], [[receivers]], [[routes]], [[inhibit_rules]]."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from agent.config.errors import Problem
from agent.config.types import Duration, Section

Channel = Literal["webhook", "alertmanager", "slack", "dingtalk", "feishu", "wecom"]


class ReceiverConfig(Section):
    """[[receivers]]: where notifications go."""

    name: str = Field(min_length=1)
    type: Channel
    url: str = ""
    urls: list[str] = Field(default_factory=list)  # alertmanager: one or more
    secret_file: Path | None = None
    secret_env: str | None = None
    timeout: Duration = Field(default=10.0, gt=0)
    text: str | None = None  # message template for the chat channels
    # The queue while it is down: at most queue_max notifications (alertmanager: alerts), none
    # older than queue_max_age; past that the oldest go, counted and logged.
    queue_max: int = Field(default=10_000, gt=0)
    queue_max_age: Duration = Field(default=86_400.0, gt=0)
    stale_after: Duration = Field(default=600.0, gt=0)  # webhook/chat: marked late past this

    def targets(self) -> list[str]:
        """Return every URL this receiver posts to."""
        return [u for u in [self.url, *self.urls] if u]


class RouteConfig(Section):
    """[[routes]]: tried in order; the first match wins unless it says continue."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    receiver: str
    matchers: list[str] = Field(default_factory=list)
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait: Duration = 0.0
    group_interval: Duration = 60.0
    repeat_interval: Duration = 14400.0
    send_resolved: bool = True
    continue_: bool = Field(default=False, alias="continue")

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, values: list[str]) -> list[str]:
        from agent.matchers import parse_matchers

        for value in values:
            parse_matchers(value)
        return values


class InhibitConfig(Section):
    """[[inhibit_rules]]: a firing source alert mutes matching targets with equal labels."""

    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str] = Field(default_factory=list)


class NotifyConfig(Section):
    """[notify]: delivery settings shared by every receiver."""

    external_url: str = ""
    resend_delay: Duration = 60.0  # alertmanager receivers: re-send firing alerts this often
    default_inhibit: bool = True
    alert_log_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # "one": a rule's levels are one alert to chat and webhook receivers (a change of level is
    # an update); "separate": each level is an alert of its own, as in Prometheus
    levels: Literal["one", "separate"] = "one"


def template_problem(template: str) -> str | None:
    """Return why a chat `text` template cannot render, or None (the fields render_text gives)."""
    try:
        template.format(title="t", alerts="a", status="firing", count="1")
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}; use {{title}}, {{alerts}}, {{status}}, {{count}}"
    return None


def _utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return True


def receiver_problems(cfg: Any) -> list[Problem]:
    """Return problems between receivers and routes (duplicates, dangling names, secrets)."""
    problems = []
    names = [r.name for r in cfg.receivers]
    for i, r in enumerate(cfg.receivers):
        if r.name in names[:i]:
            problems.append(Problem(f"receivers.{i}.name", f"duplicate receiver {r.name!r}"))
        if not r.targets():
            problems.append(Problem(f"receivers.{i}.url", "url missing"))
        if r.secret_file is not None and not r.secret_file.is_file():
            problems.append(Problem(f"receivers.{i}.secret_file", f"no such file {r.secret_file}"))
        elif r.secret_file is not None and not _utf8(r.secret_file):
            problems.append(Problem(f"receivers.{i}.secret_file", "must be UTF-8 text"))
        if r.text is not None and (why := template_problem(r.text)):
            problems.append(Problem(f"receivers.{i}.text", why))
        if r.secret_env is not None and r.secret_env not in os.environ:
            problems.append(Problem(f"receivers.{i}.secret_env", f"{r.secret_env} is not set"))
    for i, route in enumerate(cfg.routes):
        if route.receiver not in names:
            problems.append(
                Problem(f"routes.{i}.receiver", f"no receiver named {route.receiver!r}")
            )
    return problems
