"""What the admin API exposes, by role: viewer reads, operator silences and reloads, admin all."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.alerting.engine import RuleEngine
from agent.config import Config
from agent.durations import parse_duration
from agent.files import JsonLinesLog
from agent.notify.notifier import Notifier
from agent.notify.silences import matcher_from_cli
from agent.web.admin import AdminApi, Answer, Endpoint, endpoint, redact
from agent.web.auth import Token

Body = dict[str, Any]
MIN_SILENCE, MAX_SILENCE = 1.0, 365 * 86400.0
Params = dict[str, str]


class Routes:
    """The endpoints' handlers, over the running agent's one engine, notifier and stores."""

    def __init__(self, cfg: Config, engine: RuleEngine, notifier: Notifier,
                 reload: Callable[[], bool]) -> None:  # fmt: skip
        self.cfg, self.engine, self.notifier, self.reload_fn = cfg, engine, notifier, reload
        self.silences, self.outbox = notifier.silences, notifier.outbox

    def whoami(self, body: Body, params: Params, who: Token) -> Answer:
        """Return the caller's name and role."""
        return 200, {"name": who.name, "role": who.role}

    def alerts(self, body: Body, params: Params, who: Token) -> Answer:
        """Return every alert instance."""
        muted = dict(self.notifier.muted)
        return 200, [{"labels": dict(a.labels), "state": a.state, "value": a.value,
                      "active_at": a.active_at, "annotations": a.annotations,
                      "inhibited": muted.get(a.labels) == "inhibited",
                      "muted": muted.get(a.labels, "")}
                     for a in self.engine.all_alerts()]  # fmt: skip

    def rules(self, body: Body, params: Params, who: Token) -> Answer:
        """Return the rules in force."""
        return 200, [{"group": g.name, "alert": r.alert, "expr": str(r.expr), "op": r.op,
                      "thresholds": dict(r.thresholds), "for": r.hold, "source": r.source}
                     for g in self.engine.groups for r in g.rules]  # fmt: skip

    def list_silences(self, body: Body, params: Params, who: Token) -> Answer:
        """Return every silence."""
        return 200, [s.to_json() for s in self.silences.load()]

    def add_silence(self, body: Body, params: Params, who: Token) -> Answer:
        """Create a silence; the author defaults to the token's name."""
        raw, comment = body.get("matchers"), body.get("comment", "")
        if not isinstance(raw, list) or not all(isinstance(m, str) for m in raw) or not raw:
            return 400, {"error": "matchers must be a non-empty list of strings"}
        if not isinstance(comment, str) or not comment.strip():
            return 400, {"error": "a silence needs a comment (a string)"}
        try:
            matchers = [matcher_from_cli(m) for m in raw]
            duration = parse_duration(body.get("duration", "1h"))
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if not MIN_SILENCE <= duration <= MAX_SILENCE:
            return 400, {"error": "duration must be between 1s and 365d"}
        comment = comment.strip()
        author = body.get("author")
        silence = self.silences.add(
            matchers, duration, author if isinstance(author, str) and author else who.name, comment
        )
        return 201, silence.to_json()

    def expire(self, body: Body, params: Params, who: Token) -> Answer:
        """End a silence now."""
        if self.silences.expire(params["id"]):
            return 200, {"expired": params["id"]}
        return 404, {"error": f"no active silence {params['id']}"}

    def reload(self, body: Body, params: Params, who: Token) -> Answer:
        """Re-read config and rules, as SIGHUP does."""
        if self.reload_fn():
            return 200, {"reloaded": True}
        return 400, {"reloaded": False, "error": "refused: see the agent's log"}

    def show_outbox(self, body: Body, params: Params, who: Token) -> Answer:
        """Return the notifications waiting."""
        return 200, self.outbox.items(limit=500)

    def show_config(self, body: Body, params: Params, who: Token) -> Answer:
        """Return the effective configuration, secrets and URL paths redacted."""
        return 200, redact(self.cfg.model_dump(mode="json", by_alias=True))

    def endpoints(self) -> list[Endpoint]:
        """Return the route table."""
        return [
            endpoint("GET", "/api/v1/whoami", "viewer", self.whoami),
            endpoint("GET", "/api/v1/alerts", "viewer", self.alerts),
            endpoint("GET", "/api/v1/rules", "viewer", self.rules),
            endpoint("GET", "/api/v1/silences", "viewer", self.list_silences),
            endpoint("POST", "/api/v1/silences", "operator", self.add_silence),
            endpoint("DELETE", "/api/v1/silences/{id}", "operator", self.expire),
            endpoint("POST", "/api/v1/reload", "operator", self.reload),
            endpoint("GET", "/api/v1/outbox", "admin", self.show_outbox),
            endpoint("GET", "/api/v1/config", "admin", self.show_config),
        ]


class Admin(AdminApi):
    """The admin API of the running agent; a reload swaps its tokens and configuration."""

    def __init__(self, cfg: Config, tokens: list[Token], engine: RuleEngine, notifier: Notifier,
                 reload: Callable[[], bool]) -> None:  # fmt: skip
        audit = JsonLinesLog(cfg.agent.state_dir / "audit.log", cfg.notify.alert_log_max_bytes)
        self.routes = Routes(cfg, engine, notifier, reload)
        super().__init__(tokens, self.routes.endpoints(), audit)

    def configure(self, cfg: Config, tokens: list[Token]) -> None:
        """Take the reloaded configuration and tokens: a removed token is refused from now."""
        self.tokens, self.routes.cfg = tokens, cfg
