"""Wiring and lifecycle: builds the long-lived parts once, swaps configuration in on reload."""

from __future__ import annotations

import errno
import functools
import logging
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import runtime, sdnotify, statedir
from agent.alerting import persist
from agent.alerting.engine import METRICS as ALERT_METRICS
from agent.alerting.engine import RuleEngine
from agent.alerting.model import Group, RuleProblems
from agent.alerting.rules import load_configured
from agent.backends import BACKENDS
from agent.config import Config, ConfigError, load_config
from agent.config.web import WebConfig, load_web_config
from agent.jobs import Job
from agent.loop import RoundLoop
from agent.notify.notifier import Notifier
from agent.notify.outbox import Outbox
from agent.notify.silences import SilenceStore
from agent.nvml import Loader
from agent.samplers import Sampler, build_samplers, intervals
from agent.shipping.job import LogShipping
from agent.shipping.job import build as build_shipping
from agent.shipping.sinks import credentials
from agent.store import MetricInfo, Sample, SeriesStore, sample
from agent.supervise import SUPERVISOR
from agent.web.admin_routes import Admin
from agent.web.auth import BasicAuth, Token, load_tokens
from agent.web.connections import Connections
from agent.web.server import WebServer
from agent.workers.sampler import WorkerSampler

NvmlFor = Callable[[Config], Loader | None]  # a configuration -> its NVML loader, or pynvml


def real_nvml(cfg: Config) -> Loader | None:
    """Give every configuration pynvml (None): what the daemon uses unless told otherwise."""
    return None


log = logging.getLogger(__name__)

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Changing these needs a new store or listener: a reload says so and keeps the old value.
RESTART_KEYS = (("http", "listen"), ("agent", "state_dir"), ("agent", "retention"))
# The sections each rebuildable part is made from: a reload rebuilds a part only if they moved.
SAMPLER_KEYS = {
    "agent",
    "host",
    "network",
    "gpu",
    "hardware",
    "textfile",
    "workers",
    "kubernetes",
    "cost",
}
SHIPPING_KEYS = {"agent", "logs", "elasticsearch", "events"}


RELOAD_METRICS = {
    "dsagent_config_last_reload_successful": MetricInfo(
        "gauge", "1 if the last configuration reload (or the start) succeeded."
    ),
    "dsagent_config_last_reload_success_timestamp_seconds": MetricInfo(
        "gauge", "When the configuration was last loaded successfully."
    ),
}


class ReloadStatus:
    """dsagent_config_last_reload_* as Prometheus exports them, on the round loop like a sampler."""

    name = "config"
    metrics = RELOAD_METRICS

    def __init__(self, now: float) -> None:
        self.ok, self.success_at = True, now

    def sample(self, now: float) -> Iterator[Sample]:
        """Report the last reload."""
        yield sample("dsagent_config_last_reload_successful", 1.0 if self.ok else 0.0)
        yield sample("dsagent_config_last_reload_success_timestamp_seconds", self.success_at)


@dataclass
class Loaded:
    """Everything a reload reads and checks before it changes anything."""

    cfg: Config
    groups: list[Group]
    tls: ssl.SSLContext | None
    basic: BasicAuth | None
    tokens: list[Token]
    web: WebConfig | None


def load_all(path: Path | None, cfg: Config | None = None) -> Loaded:
    """Read config, rules, web.yml (and its certificates) and tokens; raise on any problem."""
    cfg = cfg or load_config(path)
    groups = load_configured(cfg.rules)
    web = load_web_config(cfg.http.web_config) if cfg.http.web_config else None
    basic = BasicAuth(web.users) if web and web.users else None
    return Loaded(cfg, groups, web.ssl_context() if web else None, basic,
                  load_tokens(cfg.api_tokens), web)  # fmt: skip


def _view(cfg: Config, keys: set[str]) -> dict[str, Any]:
    return cfg.model_dump(include=keys)


class Daemon:
    """The running agent: one store, round loop, engine, notifier and server for its whole life."""

    def __init__(self, loaded: Loaded, config_path: Path | None,
                 nvml_for: NvmlFor = real_nvml) -> None:  # fmt: skip
        cfg = self.cfg = loaded.cfg
        self.config_path = config_path
        self.nvml_for = nvml_for  # the simulator's fake NVML for gpu.simulate; else pynvml
        state = cfg.agent.state_dir  # checked and locked by serve()
        state.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.store = SeriesStore(cfg.agent.retention, cfg.agent.sample_interval)
        self.rounds = RoundLoop(self.store, cfg.agent.sample_interval, self._on_round)
        self.notifier = Notifier(Outbox(state / "outbox.db"), SilenceStore(state))
        self.engine = RuleEngine(
            self.store, loaded.groups, time.time(), resolved_retention=cfg.rules.resolved_retention,
            state_path=state / "alerts.json", warmup=max(5.0, 3 * cfg.agent.sample_interval),
            notify=self.notifier.submit,
        )  # fmt: skip
        self.reloads = ReloadStatus(time.time())
        self.admin = Admin(cfg, loaded.tokens, self.engine, self.notifier, self.reload,
                           store=self.store)  # fmt: skip
        self.samplers: list[Sampler] = []
        self.shipping: LogShipping | None = None
        self._es_keys = ("", "")  # Elasticsearch's key and password as last read
        self.server: WebServer | None = None
        self._loaded = loaded
        self._ready_sent = False
        self._reload_lock = threading.Lock()

    def start(self) -> None:
        """Restore alert state, start sampling, evaluating, delivering and serving."""
        cfg, loaded = self.cfg, self._loaded
        self.notifier.configure(cfg)
        self.notifier.start()
        self.server = WebServer(
            cfg.http.listen, self.store, self.healthy, self.not_ready, admin=self.admin,
            max_body=cfg.http.max_body_bytes, max_head=cfg.http.max_head_bytes,
            connections=Connections(cfg.http.max_connections, cfg.http.request_head_timeout),
        )  # fmt: skip
        self._configure_server(loaded)  # TLS, users, SANs and headers, as a reload sets them
        assert self.engine.state_path is not None
        rules = cfg.rules
        self.engine.restore(persist.restore(self.engine.state_path, self.engine.holds(),
                                            time.time(), rules.outage_tolerance,
                                            rules.grace_period))  # fmt: skip
        interval = cfg.agent.sample_interval
        self.rounds.add([self.notifier, self.reloads, SUPERVISOR, BACKENDS])
        if (watchdog := sdnotify.watchdog_interval()) is not None:
            self.rounds.every("watchdog", watchdog, sdnotify.keep_alive)  # a stuck loop goes quiet
        self._set_rules(loaded.groups)
        self._set_samplers(build_samplers(cfg, self.nvml_for(cfg)))
        self._set_shipping(build_shipping(cfg))
        self.rounds.start()
        self.server.serve_in_thread()
        log.info(
            "dsagent started: node %s, listening on %s, %d samplers (%s), %d rules, every %gs",
            cfg.agent.node_name, cfg.http.listen, len(self.samplers),
            ", ".join(s.name for s in self.samplers),
            sum(len(g.rules) for g in self.engine.groups), interval,
        )  # fmt: skip

    def _configure_server(self, loaded: Loaded) -> None:
        assert self.server is not None
        web = loaded.web
        self.server.configure(loaded.tls, loaded.basic, web.allowed_sans if web else frozenset(),
                              web.headers if web else {})  # fmt: skip

    def _on_round(self, tick: float) -> None:
        """Tell systemd we are ready once the first round has run."""
        if not self._ready_sent:
            self._ready_sent = True
            sdnotify.notify("READY=1", f"STATUS=sampling every {self.cfg.agent.sample_interval:g}s")

    def _set_rules(self, groups: list[Group]) -> None:
        self.engine.replace_groups(groups)
        interval = self.cfg.agent.sample_interval
        self.rounds.set_groups([
            Job(f"rules:{g.name}", functools.partial(self.engine.run_group, g), ALERT_METRICS,
                g.interval or interval, on_tick=True)
            for g in groups
        ])  # fmt: skip

    def _set_samplers(self, samplers: list[Sampler]) -> None:
        self.rounds.remove(self.samplers)
        self.samplers = samplers
        self.rounds.add(samplers, intervals(samplers))

    def _set_shipping(self, shipping: LogShipping | None) -> None:
        """Replace log shipping; the old shippers commit and stop first (offsets are durable)."""
        self._es_keys = credentials(self.cfg.elasticsearch)
        if self.shipping is not None:
            self.rounds.remove([self.shipping])
        self.shipping = shipping
        if shipping is not None:
            self.rounds.add([shipping])
            shipping.start()

    def healthy(self) -> bool:
        """Return True while the round loop runs and has finished a round lately."""
        limit = max(5.0, 3 * self.cfg.agent.sample_interval)
        return self.rounds.running and time.monotonic() - self.rounds.last_round < limit

    def not_ready(self) -> list[str]:
        """Why a load balancer should not send traffic here (empty: ready).

        A worker that is not ready, or a firing critical alert of a rule labelled
        `readiness: block` (the default GPU rules are).
        """
        reasons = [f"worker {s.worker.name}: {s.reason}" for s in self.samplers
                   if isinstance(s, WorkerSampler) and not s.ready]  # fmt: skip
        for alert in self.engine.all_alerts():
            labels = dict(alert.labels)
            if (
                alert.state == "firing"
                and alert.severity == "critical"
                and (labels.get("readiness") == "block")
            ):
                where = f" on GPU {labels['gpu']}" if "gpu" in labels else ""
                reasons.append(f"{labels['alertname']} firing{where}")
        return reasons

    def reload(self) -> bool:
        """Re-read config and rules; if either is bad, keep running on the old ones."""
        with self._reload_lock:  # SIGHUP and the admin API may ask at once
            sdnotify.reloading()
            ok = self._reload()
            self.reloads.ok = ok
            if ok:
                self.reloads.success_at = time.time()
            status = "configuration reloaded" if ok else "reload refused; running the old one"
            sdnotify.notify("READY=1", f"STATUS={status}")
            return ok

    def _reload(self) -> bool:
        try:
            loaded = load_all(self.config_path)
            self.notifier.configure(loaded.cfg)  # the one step that can still fail: first
        except (ConfigError, RuleProblems) as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error("reload refused: keeping the running configuration and rules")
            return False
        except Exception as exc:  # a reload never kills the agent, whatever the files hold
            log.error(
                "reload refused: %s: %s; keeping the running configuration", type(exc).__name__, exc
            )
            return False
        try:
            self._apply(loaded)
        except Exception:  # the boundary: a part that cannot be rebuilt is logged, not fatal
            log.exception("reload: a part failed to take the new configuration")
            return False
        log.info("configuration reloaded: %d rules", sum(len(g.rules) for g in loaded.groups))
        return True

    def _apply(self, loaded: Loaded) -> None:
        """Swap a checked configuration into the running parts; rebuild only what changed."""
        old, new = self.cfg, loaded.cfg
        for section, key in RESTART_KEYS:
            if getattr(getattr(new, section), key) != getattr(getattr(old, section), key):
                log.warning("%s.%s changed: restart dsagent to apply it", section, key)
        agent = new.agent.model_copy(update={"state_dir": old.agent.state_dir,
                                             "retention": old.agent.retention})  # fmt: skip
        http = new.http.model_copy(update={"listen": old.http.listen})
        self.cfg = new = new.model_copy(update={"http": http, "agent": agent})
        self.admin.configure(new, loaded.tokens)
        assert self.server is not None
        self._configure_server(loaded)
        self.server.connections.limit = new.http.max_connections
        self.server.connections.head_timeout = new.http.request_head_timeout
        self._set_rules(loaded.groups)
        if _view(new, SAMPLER_KEYS) != _view(old, SAMPLER_KEYS):
            self._set_samplers(build_samplers(new, self.nvml_for(new)))
        keys = credentials(new.elasticsearch)  # a rotated key file is a change too
        if _view(new, SHIPPING_KEYS) != _view(old, SHIPPING_KEYS) or keys != self._es_keys:
            self._set_shipping(build_shipping(new))

    def stop(self) -> None:
        """Stop serving and sampling, then flush the alert state."""
        sdnotify.notify("STOPPING=1")
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        self.rounds.stop()
        self.engine.save(time.time(), force=True)
        log.info("dsagent stopped")


def serve(cfg: Config, config_path: Path | None, nvml_for: NvmlFor = real_nvml) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit code.

    `nvml_for` gives the NVML loader a configuration asks for: the CLI passes the simulator's,
    so that no module of the daemon imports the simulator.
    """
    runtime.limit_arenas()  # before the first thread
    try:
        loaded = load_all(config_path, cfg)
    except RuleProblems as exc:
        for problem in exc.problems:
            log.error("rules: %s", problem)
        return 2
    except (OSError, ValueError, KeyError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    try:
        statedir.check(cfg.agent.state_dir)
        held = statedir.lock(cfg.agent.state_dir)  # noqa: F841 - kept open until the process ends
    except statedir.StateDirError as exc:
        log.error("cannot start: %s", exc)
        return 2
    # Block the signals before any thread starts so only this loop receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    daemon = Daemon(loaded, config_path, nvml_for)
    try:
        daemon.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            log.error("cannot start: %s is in use; set http.listen (or DSAGENT_HTTP__LISTEN) "
                      "to another host:port", cfg.http.listen)  # fmt: skip
        else:
            log.error("cannot start: %s", exc)
        return 1
    runtime.settle()
    return wait_for_signals(daemon)


def wait_for_signals(daemon: Daemon) -> int:
    """Reload on SIGHUP; stop on SIGTERM or SIGINT and return the exit code."""
    while True:
        info = signal.sigwaitinfo(SIGNALS)  # asleep until one comes: no wake-up a second
        if info.si_signo == signal.SIGHUP:
            log.info("SIGHUP: reloading configuration and rules")
            daemon.reload()
            continue
        log.info("%s: shutting down", signal.Signals(info.si_signo).name)
        daemon.stop()
        return 0
