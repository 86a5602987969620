"""Wiring and lifecycle: store, samplers, scheduler, HTTP server, signals."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from agent.config import Config, load_config
from agent.config_errors import ConfigError
from agent.runner import SamplerRunner
from agent.samplers import build_samplers
from agent.store import SeriesStore
from agent.web.server import WebServer

log = logging.getLogger(__name__)

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Changing these needs a new store or listener: a reload says so and keeps the old value.
RESTART_KEYS = (("http", "listen"), ("agent", "state_dir"), ("agent", "retention"))


class Daemon:
    """The running agent."""

    def __init__(self, cfg: Config, config_path: Path | None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.store = SeriesStore(cfg.agent.retention, cfg.agent.sample_interval)
        self.runner = SamplerRunner(self.store)
        self.server: WebServer | None = None

    def start(self) -> None:
        """Create the state dir, start sampling and serving."""
        self.cfg.agent.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.server = WebServer(self.cfg.http.listen, self.store, self.healthy)
        samplers = build_samplers(self.cfg)
        self.runner.start(samplers, self.cfg.agent.sample_interval)
        self.server.serve_in_thread()
        log.info(
            "dsagent started: node %s, listening on %s, %d samplers (%s), every %gs",
            self.cfg.agent.node_name, self.cfg.http.listen, len(samplers),
            ", ".join(s.name for s in samplers), self.cfg.agent.sample_interval,
        )  # fmt: skip

    def healthy(self) -> bool:
        """Return True while the scheduler runs and has run something lately."""
        limit = max(5.0, 3 * self.cfg.agent.sample_interval)
        return (
            bool(self.runner.scheduler.running) and time.monotonic() - self.runner.last_run < limit
        )

    def reload(self) -> bool:
        """Re-read the configuration; a bad one is refused and the running one kept."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error("reload refused: keeping the running configuration")
            return False
        for section, key in RESTART_KEYS:
            if getattr(getattr(new, section), key) != getattr(getattr(self.cfg, section), key):
                log.warning("%s.%s changed: restart dsagent to apply it", section, key)
        new = new.model_copy(
            update={
                "http": self.cfg.http,
                "agent": new.agent.model_copy(
                    update={
                        "state_dir": self.cfg.agent.state_dir,
                        "retention": self.cfg.agent.retention,
                    }
                ),
            }
        )
        self.cfg = new
        self.runner.schedule(build_samplers(new), new.agent.sample_interval)
        log.info("configuration reloaded")
        return True

    def stop(self) -> None:
        """Stop serving and sampling."""
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        self.runner.stop()
        log.info("dsagent stopped")


def serve(cfg: Config, config_path: Path | None) -> int:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Returns the exit code."""
    # Block the signals before any thread starts so only this loop receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    daemon = Daemon(cfg, config_path)
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
            log.info("SIGHUP: reloading configuration")
            daemon.reload()
            continue
        log.info("%s: shutting down", signal.Signals(info.si_signo).name)
        daemon.stop()
        return 0


def pid_alive(pid: int) -> bool:
    """Return True if a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
