"""Configuration: TOML file, DSAGENT_* environment variables and built-in defaults."""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from agent.config.errors import ConfigError, Problem, env_json_problems, locate, problems_from
from agent.config.hardware import HardwareConfig
from agent.config.kubernetes import KubernetesConfig
from agent.config.notify import (
    InhibitConfig,
    NotifyConfig,
    ReceiverConfig,
    RouteConfig,
    receiver_problems,
)
from agent.config.shipping import ElasticsearchConfig, EventsConfig, LogInputConfig
from agent.config.types import Duration, Regex, Section
from agent.config.workers import WorkerConfig
from agent.targets import parse_target

DEFAULT_PATH = Path("/etc/dsagent/agent.toml")
NOT_SETTINGS = {"DSAGENT_TOKEN"}  # read by the CLI (the admin API token), not a config section
ENV_PREFIX = "DSAGENT_"


def default_state_dir() -> Path:
    """Return /var/lib/dsagent for root, else $XDG_STATE_HOME/dsagent."""
    if os.geteuid() == 0:
        return Path("/var/lib/dsagent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dsagent"


def split_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port" into its parts; raise ValueError if malformed."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]*):(\d+)", listen.strip())
    if not match:
        raise ValueError(f"invalid listen address {listen!r}: expected host:port")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port} in {listen!r}")
    return host, port


class AgentConfig(Section):
    """[agent]: identity, state and sampling."""

    node_name: str = Field(default_factory=socket.gethostname, min_length=1)
    state_dir: Path = Field(default_factory=default_state_dir)
    sample_interval: Duration = Field(default=1.0, gt=0)
    retention: Duration = Field(default=900.0, gt=0)


class HttpConfig(Section):
    """[http]: where /metrics, /healthz and the rest are served, and how safely."""

    listen: str = "127.0.0.1:9840"
    web_config: Path | None = None  # exporter-toolkit web.yml: TLS, client certs, basic auth
    insecure: bool = False  # allow plain HTTP on a non-loopback address
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    max_head_bytes: int = Field(default=16384, ge=8192, le=65536)  # a request head as a whole
    max_connections: int = Field(default=64, ge=2, le=4096)  # Prometheus and a few humans
    request_head_timeout: Duration = Field(default=30.0, gt=0)  # a head, or an idle keep-alive

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        split_listen(value)
        return value


class HostConfig(Section):
    """[host]: where /proc and /sys live, and which devices to leave out."""

    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")  # where /dev/nvmeX is, for the NVMe health log
    disk_exclude: Regex = r"^(ram|loop|fd|sr|zram|nbd)\d+$"
    interface_exclude: Regex = r"^(lo|veth.+|docker\d+|br-.+|cali.+|virbr\d+)$"


class NetworkConfig(Section):
    """[network]: active loss probes."""

    probe_targets: list[str] = Field(default_factory=list)
    probe_count: int = Field(default=4, ge=1, le=100)
    probe_timeout: Duration = Field(default=0.8, gt=0)
    loss_window: Duration = Field(default=300.0, gt=0)

    @field_validator("probe_targets")
    @classmethod
    def _targets(cls, values: list[str]) -> list[str]:
        for value in values:
            parse_target(value)
        return values


class GpuConfig(Section):
    """[gpu]: NVML sampling, or simulated GPUs for demos and benchmarks."""

    enabled: Literal["auto"] | bool = "auto"
    simulate: int = Field(default=0, ge=0, le=64)
    scenario: Literal["normal", "throttle", "xid_burst", "lost", "unsupported", "mig",
                      "mig7"] = "normal"  # fmt: skip
    timeout: Duration = Field(default=0.8, gt=0)


class CostConfig(Section):
    """[cost]: prices for inference_cost_per_million_tokens; both 0 (the default): not computed."""

    electricity_per_kwh: float = Field(default=0.0, ge=0)
    gpu_hour: float = Field(default=0.0, ge=0)  # what one GPU-hour costs (owned: amortised)
    currency: str = Field(default="USD", min_length=1)


class TextfileConfig(Section):
    """[textfile]: *.prom files to read, as node_exporter's textfile collector."""

    directory: Path | None = None


Severity = Literal["info", "warning", "critical"]


class RuleOverride(Section):
    """[rules.overrides.<alert>]: a rule's levels or timing, changed without copying its file."""

    thresholds: dict[Severity, float] = Field(default_factory=dict)  # merged per severity
    clear: dict[Severity, float] = Field(default_factory=dict)
    hold: Duration | None = Field(default=None, alias="for")
    keep_firing_for: Duration | None = None


class RulesConfig(Section):
    """[rules]: which rule files, and how alert state survives restarts."""

    defaults: bool = True
    paths: list[str] = Field(default_factory=list)
    disabled: list[str] = Field(default_factory=list)
    overrides: dict[str, RuleOverride] = Field(default_factory=dict)  # by alert name
    resolved_retention: Duration = 900.0
    outage_tolerance: Duration = 3600.0
    grace_period: Duration = 60.0


class TokenConfig(Section):
    """[[api_tokens]]: a bearer token for the admin API, and its role."""

    name: str = Field(min_length=1)
    role: Literal["viewer", "operator", "admin"]
    token_file: Path | None = None
    token_env: str | None = None
    expires: datetime | None = None


class Config(BaseSettings):
    """The whole configuration, one frozen model per section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    agent: AgentConfig = Field(default_factory=AgentConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    host: HostConfig = Field(default_factory=HostConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig)
    textfile: TextfileConfig = Field(default_factory=TextfileConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    inhibit_rules: list[InhibitConfig] = Field(default_factory=list)
    logs: list[LogInputConfig] = Field(default_factory=list)
    events: EventsConfig = Field(default_factory=EventsConfig)
    api_tokens: list[TokenConfig] = Field(default_factory=list)
    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    workers: list[WorkerConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment variables override the file, which overrides the defaults."""
        return env_settings, init_settings


def resolve_path(path: Path | None) -> Path | None:
    """Return the file to read: the one asked for, or the default one if present."""
    if path is not None:
        return path
    return DEFAULT_PATH if DEFAULT_PATH.exists() else None


def _read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc}")]) from None
    try:
        return tomllib.loads(text), text
    except RecursionError:
        raise ConfigError([Problem("", "nested too deeply", str(path))]) from None
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        where = f"{path}:{line.group(1)}" if line else str(path)
        raise ConfigError([Problem("", f"TOML syntax error: {exc}", where)]) from None


def cross_check(cfg: Config) -> list[Problem]:
    """Return problems that involve more than one key, and misspelled DSAGENT_ variables."""
    problems = [
        Problem(
            "",
            f"unknown setting: no section {name.split('__')[0][len(ENV_PREFIX) :].lower()!r}",
            f"env {name}",
        )
        for name in sorted(os.environ)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in NOT_SETTINGS
        and name.split("__")[0][len(ENV_PREFIX) :].lower() not in Config.model_fields
    ]
    if cfg.network.probe_targets and cfg.network.probe_timeout >= cfg.agent.sample_interval:
        problems.append(
            Problem("network.probe_timeout", "must be shorter than agent.sample_interval")
        )
    if cfg.gpu.timeout >= cfg.agent.sample_interval:
        problems.append(Problem("gpu.timeout", "must be shorter than agent.sample_interval"))
    problems += receiver_problems(cfg) + http_problems(cfg)
    names = [w.name for w in cfg.workers]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(Problem(f"workers.{i}.name", f"duplicate worker name {name!r}"))
    inputs = {i.name for i in cfg.logs}
    for i, pattern in enumerate(cfg.events.patterns):
        for unknown in sorted(set(pattern.inputs) - inputs):
            problems.append(Problem(f"events.patterns.{i}.inputs",
                                    f"no [[logs]] input named {unknown!r}"))  # fmt: skip
    return problems


def http_problems(cfg: Config) -> list[Problem]:
    """Require TLS (or insecure) off loopback, and one source for each token."""
    from agent.config.web import load_web_config

    problems, tls = [], False
    if cfg.http.web_config is not None:
        try:
            tls = load_web_config(cfg.http.web_config).tls is not None
        except ValueError as exc:
            problems.append(Problem("http.web_config", str(exc)))
    host, _ = split_listen(cfg.http.listen)
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if not loopback and not tls and not cfg.http.insecure:
        problems.append(Problem("http.listen", f"{host} is not loopback: set http.web_config "
                                "with tls_server_config, or http.insecure = true"))  # fmt: skip
    for i, t in enumerate(cfg.api_tokens):
        if (t.token_file is None) == (t.token_env is None):
            problems.append(Problem(f"api_tokens.{i}", "give token_file or token_env (one)"))
        elif t.token_file is not None and not t.token_file.is_file():
            problems.append(Problem(f"api_tokens.{i}.token_file", f"no such file {t.token_file}"))
        elif t.token_file is not None and not _read(t.token_file).strip():
            problems.append(Problem(f"api_tokens.{i}.token_file", f"{t.token_file} is empty"))
        elif t.token_env is not None and not os.environ.get(t.token_env, "").strip():
            problems.append(Problem(f"api_tokens.{i}.token_env", f"{t.token_env} is not set"))
    return problems


def agent_url(cfg: Config) -> str:
    """Return the URL a local client reaches the running agent at (https when web.yml has TLS)."""
    from agent.config.web import load_web_config

    host, port = split_listen(cfg.http.listen)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    host = f"[{host}]" if ":" in host else host
    tls = cfg.http.web_config is not None and load_web_config(cfg.http.web_config).tls is not None
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def load_config(path: Path | None = None) -> Config:
    """Load and validate; raise ConfigError listing every problem with where it came from."""
    path = resolve_path(path)
    data, text = _read_toml(path) if path else ({}, "")
    try:
        cfg = Config(**data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, path, text, Config)) from None
    except SettingsError as exc:  # a DSAGENT_ variable holding JSON that does not parse
        raise ConfigError(env_json_problems(exc)) from None
    problems = [locate(p, path, text) for p in cross_check(cfg)]
    if problems:
        raise ConfigError(problems)
    return cfg
