"""Configuration: the settings model and its sections, web.yml, and errors naming key paths."""

from agent.config.errors import ConfigError
from agent.config.settings import (
    Config,
    TokenConfig,
    load_config,
    resolve_path,
    split_listen,
)
from agent.config.workers import WorkerConfig

__all__ = [
    "Config",
    "ConfigError",
    "TokenConfig",
    "WorkerConfig",
    "load_config",
    "resolve_path",
    "split_listen",
]
