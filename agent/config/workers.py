"""[[workers]]: the local inference workers, by URL or as pods found on this node."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from agent.config.types import Duration, Section


def http_url(url: str) -> str:
    """Check a worker's base URL: http or https, a host, a port or the scheme's default."""
    parts = urlsplit(url.strip())
    hint = "write it as http://HOST:PORT (e.g. http://127.0.0.1:8000)"
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} needs the scheme http:// or https://: {hint}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has a bad port: {hint}") from None
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise ValueError(f"{url!r} has no host: {hint}")
    return url.strip()


class WorkerConfig(Section):
    """[[workers]]: one local inference worker, at a URL or in the pod a selector finds."""

    name: str = Field(min_length=1)
    url: str | None = None
    engine: Literal["vllm", "sglang", "tgi", "llamacpp", "openai"] = "vllm"
    # Instead of url: the pod on this node whose labels match, at its container port.
    pod_selector: str | None = Field(default=None, min_length=1)  # app=vllm,model=r1
    pod_namespace: str | None = None  # None: every namespace
    pod_port: int | str | None = None  # a number, or the container port's name
    pod_scheme: Literal["http", "https"] = "http"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @model_validator(mode="after")
    def _where(self) -> Self:
        if (self.url is None) == (self.pod_selector is None):
            raise ValueError("give the worker a url, or a pod_selector with a pod_port")
        if self.pod_selector is not None and self.pod_port is None:
            raise ValueError("pod_selector needs pod_port: the container port, number or name")
        return self

    model: str | None = None
    pids: list[int] = Field(default_factory=list)
    unit: str | None = None
    timeout: Duration = Field(default=0.5, gt=0)  # each of liveness, readiness, metrics
    generation_interval: Duration = Field(default=30.0, ge=0)  # 0 turns the probe off
    generation_timeout: Duration = Field(default=10.0, gt=0)
    hung_after: Duration = Field(default=60.0, gt=0)  # a queue that stands this long: hung
    # The answer-consistency canary: off (0) unless an interval is given, e.g. "5m".
    canary_interval: Duration = Field(default=0.0, ge=0)
    canary_prompt: str = "Answer in one word: what is the capital of France?"
    canary_seed: int = 1234
    canary_max_tokens: int = Field(default=16, ge=1, le=4096)
    canary_history: int = Field(default=5, ge=1, le=1000)  # an answer none of these gave: drift
    metrics_path: str | None = "/metrics"  # None for engines without one
    window: Duration = Field(default=60.0, gt=0)  # rates and quantiles over this
