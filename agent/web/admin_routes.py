"""What the admin API exposes, by role: viewer reads, operator silences and reloads, admin all."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from agent.alerting.engine import RuleEngine
from agent.config import Config
from agent.durations import parse_duration
from agent.matchers import Selector, parse_selector
from agent.notify.notifier import Notifier
from agent.notify.silences import matcher_from_cli
from agent.store import SeriesStore
from agent.web.admin import AdminApi, Answer, Endpoint, endpoint, redact
from agent.web.audit import AuditLog
from agent.web.auth import Token

Body = dict[str, Any]
MIN_SILENCE, MAX_SILENCE = 1.0, 365 * 86400.0
Params = dict[str, str]


class Routes:
    """The endpoints' handlers, over the running agent's one engine, notifier and stores."""

    def __init__(self, cfg: Config, engine: RuleEngine, notifier: Notifier,
                 reload: Callable[[], bool], store: SeriesStore | None = None) -> None:  # fmt: skip
        self.cfg, self.engine, self.notifier, self.reload_fn = cfg, engine, notifier, reload
        self.silences, self.outbox, self.store = notifier.silences, notifier.outbox, store

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

    def series(self, body: Body, params: Params, who: Token) -> Answer:
        """Return recent history: ?match=SELECTOR (repeatable)&range=15m&points=60."""
        if self.store is None:
            return 404, {"error": "no store"}
        query = parse_qs(params.get("?", ""))
        try:
            selectors = [parse_selector(m) for m in query.get("match", [])]
            span = parse_duration(query.get("range", ["15m"])[0])
            points = int(query.get("points", ["60"])[0])
        except ValueError as exc:
            return 400, {"error": str(exc)}
        if not 1 <= len(selectors) <= 50 or not 1 <= points <= 600 or not 0 < span <= 86400:
            return 400, {"error": "give 1 to 50 match selectors, points 1..600, range up to 1d"}
        return 200, history(self.store, selectors, span, points, time.time())

    def show_config(self, body: Body, params: Params, who: Token) -> Answer:
        """Return the effective configuration, secrets and URL paths redacted."""
        return 200, redact(self.cfg.model_dump(mode="json", by_alias=True))

    def endpoints(self) -> list[Endpoint]:
        """Return the route table."""
        return [
            endpoint("GET", "/api/v1/whoami", "viewer", self.whoami),
            endpoint("GET", "/api/v1/alerts", "viewer", self.alerts, loopback=True),
            endpoint("GET", "/api/v1/series", "viewer", self.series, loopback=True),
            endpoint("GET", "/api/v1/rules", "viewer", self.rules),
            endpoint("GET", "/api/v1/silences", "viewer", self.list_silences),
            endpoint("POST", "/api/v1/silences", "operator", self.add_silence),
            endpoint("DELETE", "/api/v1/silences/{id}", "operator", self.expire),
            endpoint("POST", "/api/v1/reload", "operator", self.reload),
            endpoint("GET", "/api/v1/outbox", "admin", self.show_outbox),
            endpoint("GET", "/api/v1/config", "admin", self.show_config),
        ]


def history(store: SeriesStore, selectors: list[Selector], span: float, points: int,
            now: float) -> dict[str, Any]:  # fmt: skip
    """Each matching series over the span, as its last value in each of `points` steps."""
    step, start = span / points, now - span
    out = []
    for sel in selectors:
        for series in store.select(sel.name, sel.matches):
            ts, vals = store.window(series, start, now)
            values: list[float | None] = [None] * points
            for t, v in zip(ts, vals, strict=True):
                values[min(points - 1, int((t - start) / step))] = v if math.isfinite(v) else None
            out.append({"name": series.name, "labels": dict(series.labels),
                        "stale": series.stale, "values": values})  # fmt: skip
    return {"start": start, "step": step, "series": out}


class Admin(AdminApi):
    """The admin API of the running agent; a reload swaps its tokens and configuration."""

    def __init__(self, cfg: Config, tokens: list[Token], engine: RuleEngine, notifier: Notifier,
                 reload: Callable[[], bool], *,
                 store: SeriesStore | None = None) -> None:  # fmt: skip
        audit = AuditLog(cfg.agent.state_dir / "audit.log", cfg.notify.alert_log_max_bytes)
        self.routes = Routes(cfg, engine, notifier, reload, store)
        super().__init__(tokens, self.routes.endpoints(), audit)

    def configure(self, cfg: Config, tokens: list[Token]) -> None:
        """Take the reloaded configuration and tokens: a removed token is refused from now."""
        self.tokens, self.routes.cfg = tokens, cfg
