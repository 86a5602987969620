"""Wiring and lifecycle: store, samplers, rules, scheduler, HTTP server, signals."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from agent import sdnotify
from agent.alerting import persist
from agent.alerting.engine import RuleEngine, RuleGroupJob
from agent.alerting.rules import Group, RuleProblems, load_configured
from agent.config import Config, load_config
from agent.config_errors import ConfigError
from agent.notify.notifier import Notifier
from agent.runner import SamplerRunner
from agent.samplers import Sampler, build_samplers
from agent.samplers.worker import WorkerSampler
from agent.shipping.job import build as build_shipping
from agent.store import SeriesStore
from agent.web.admin_routes import build_admin
from agent.web.auth import BasicAuth
from agent.web.server import WebServer
from agent.web.webconfig import load_web_config

log = logging.getLogger(__name__)

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Changing these needs a new store or listener: a reload says so and keeps the old value.
RESTART_KEYS = (("http", "listen"), ("agent", "state_dir"), ("agent", "retention"))


def load_rules(cfg: Config) -> list[Group]:
    """Load the configured rule groups; raises RuleProblems."""
    return load_configured(cfg.rules.defaults, cfg.rules.paths, cfg.rules.disabled)


class Daemon:
    """The running agent."""

    def __init__(self, cfg: Config, config_path: Path | None, groups: list[Group]) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.store = SeriesStore(cfg.agent.retention, cfg.agent.sample_interval)
        self.runner = SamplerRunner(self.store, on_run=self._on_run)
        self._ready_sent = False
        self._reload_lock = threading.Lock()
        self.engine = RuleEngine(
            self.store, groups, time.time(), resolved_retention=cfg.rules.resolved_retention,
            state_path=cfg.agent.state_dir / "alerts.json",
            warmup=max(5.0, 3 * cfg.agent.sample_interval),
        )  # fmt: skip
        self.server: WebServer | None = None

    def start(self) -> None:
        """Create the state dir, restore alert state, start sampling, evaluating and serving."""
        self.cfg.agent.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        web = load_web_config(self.cfg.http.web_config) if self.cfg.http.web_config else None
        self.server = WebServer(
            self.cfg.http.listen, self.store, self.healthy, self.not_ready,
            tls=web.ssl_context() if web else None,
            basic=BasicAuth(web.users) if web and web.users else None,
            admin=build_admin(self.cfg, self.engine, self.reload),
            max_body=self.cfg.http.max_body_bytes,
        )  # fmt: skip
        rules = self.cfg.rules
        assert self.engine.state_path is not None
        self.engine.restore(
            persist.restore(
                self.engine.state_path,
                self.engine.holds(),
                time.time(),
                rules.outage_tolerance,
                rules.grace_period,
            )
        )
        samplers = build_samplers(self.cfg)
        self._schedule(samplers)
        self.runner.start()
        self.server.serve_in_thread()
        log.info(
            "dsagent started: node %s, listening on %s, %d samplers (%s), %d rules, every %gs",
            self.cfg.agent.node_name, self.cfg.http.listen, len(samplers),
            ", ".join(s.name for s in samplers),
            sum(len(g.rules) for g in self.engine.groups), self.cfg.agent.sample_interval,
        )  # fmt: skip

    def _on_run(self, name: str) -> None:
        """Tell systemd we are ready once the first sampler has reported."""
        if not self._ready_sent and name != "watchdog":
            self._ready_sent = True
            sdnotify.notify("READY=1", f"STATUS=sampling every {self.cfg.agent.sample_interval:g}s")

    def _schedule(self, samplers: list[Sampler]) -> None:
        notifier = Notifier(self.cfg, self.engine)
        rules = [RuleGroupJob(self.engine, g) for g in self.engine.groups]
        shipping = build_shipping(self.cfg)
        jobs: list[Sampler] = [*samplers, *rules, notifier, *([shipping] if shipping else [])]
        every = {f"rules:{g.name}": g.interval for g in self.engine.groups if g.interval}
        if (watchdog := sdnotify.watchdog_interval()) is not None:
            jobs.append(sdnotify.Watchdog())  # runs on the scheduler: a stuck one goes quiet
            every["watchdog"] = watchdog
        late = [*(job.name for job in rules), notifier.name]
        interval = self.cfg.agent.sample_interval
        self.runner.schedule(jobs, interval, every, late)  # closes the old notifier, shippers
        notifier.start()
        if shipping:
            shipping.start()

    def healthy(self) -> bool:
        """Return True while the scheduler runs and has run something lately."""
        limit = max(5.0, 3 * self.cfg.agent.sample_interval)
        return (
            bool(self.runner.scheduler.running) and time.monotonic() - self.runner.last_run < limit
        )

    def not_ready(self) -> list[str]:
        """Why a load balancer should not send traffic here (empty: ready)."""
        reasons = [f"worker {s.worker.name}: {s.reason}" for s in self.runner.samplers
                   if isinstance(s, WorkerSampler) and not s.ready]  # fmt: skip
        for alert in self.engine.all_alerts():
            labels = dict(alert.labels)
            if (
                alert.state == "firing"
                and alert.severity == "critical"
                and labels["alertname"].startswith("Gpu")
            ):
                where = f" on GPU {labels['gpu']}" if "gpu" in labels else ""
                reasons.append(f"{labels['alertname']} firing{where}")
        return reasons

    def reload(self) -> bool:
        """Re-read config and rules; if either is bad, keep running on the old ones."""
        with self._reload_lock:  # SIGHUP and the admin API may ask at once
            return self._reload()

    def _reload(self) -> bool:
        sdnotify.reloading()
        try:
            new = load_config(self.config_path)
            groups = load_rules(new)
        except (ConfigError, RuleProblems) as exc:
            for problem in getattr(exc, "problems", []):
                log.error("reload refused: %s", problem)
            log.error("reload refused: keeping the running configuration and rules")
            sdnotify.notify("READY=1", "STATUS=reload refused; running the old configuration")
            return False
        for section, key in RESTART_KEYS:
            if getattr(getattr(new, section), key) != getattr(getattr(self.cfg, section), key):
                log.warning("%s.%s changed: restart dsagent to apply it", section, key)
        agent = new.agent.model_copy(update={"state_dir": self.cfg.agent.state_dir,
                                             "retention": self.cfg.agent.retention})  # fmt: skip
        self.cfg = new.model_copy(update={"http": self.cfg.http, "agent": agent})
        self.engine.replace_groups(groups)
        self._schedule(build_samplers(self.cfg))
        log.info("configuration reloaded: %d rules", sum(len(g.rules) for g in groups))
        sdnotify.notify("READY=1", "STATUS=configuration reloaded")
        return True

    def stop(self) -> None:
        """Stop serving and sampling, then flush the alert state."""
        sdnotify.notify("STOPPING=1")
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        self.runner.stop()
        self.engine.save(time.time(), force=True)
        log.info("dsagent stopped")


def serve(cfg: Config, config_path: Path | None) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit code."""
    try:
        groups = load_rules(cfg)
    except RuleProblems as exc:
        for problem in exc.problems:
            log.error("rules: %s", problem)
        return 2
    # Block the signals before any thread starts so only this loop receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    daemon = Daemon(cfg, config_path, groups)
    try:
        daemon.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    while True:
        info = signal.sigtimedwait(SIGNALS, 1.0)
        if info is None:
            continue
        if info.si_signo == signal.SIGHUP:
            log.info("SIGHUP: reloading configuration and rules")
            daemon.reload()
            continue
        log.info("%s: shutting down", signal.Signals(info.si_signo).name)
        daemon.stop()
        return 0
