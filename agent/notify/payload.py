"""What a notification says: Alertmanager's webhook payload (version 4) and plain text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agent import files
from agent.alerting.state import Alert

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"


def rfc3339(ts: float | None) -> str:
    """Format a Unix time as RFC 3339 UTC, as Alertmanager does; None is its 'not ended'."""
    return ZERO_TIME if ts is None else files.rfc3339(ts)


def fingerprint(labels: Mapping[str, str]) -> str:
    """Return a stable 16-hex-digit id of a label set."""
    text = json.dumps(sorted(labels.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Notice:
    """One alert as notify/ passes it on: what Alertmanager's webhook and API say of it."""

    status: str  # firing or resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    ends_at: str = ZERO_TIME
    generator_url: str = ""
    fingerprint: str = ""

    def json(self) -> dict[str, Any]:
        """Return the alert as Alertmanager's webhook (version 4) and API write it."""
        return {"status": self.status, "labels": dict(self.labels),
                "annotations": dict(self.annotations), "startsAt": self.starts_at,
                "endsAt": self.ends_at, "generatorURL": self.generator_url,
                "fingerprint": self.fingerprint}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Notice:
        """Read the form `json` wrote (the notification log keeps it); raise if damaged."""
        return cls(str(data["status"]), dict(data["labels"]), dict(data["annotations"]),
                   str(data["startsAt"]), str(data["endsAt"]), str(data["generatorURL"]),
                   str(data["fingerprint"]))  # fmt: skip

    def severity(self) -> str:
        """Return its severity label."""
        return self.labels.get("severity", "")


def notice(alert: Alert, node: str, external_url: str) -> Notice:
    """Return an alert instance as it is notified (its labels with the node's name)."""
    labels = {**dict(alert.labels), "node": node}
    return Notice(
        "resolved" if alert.state == "resolved" else "firing", labels, dict(alert.annotations),
        rfc3339(alert.active_at), rfc3339(alert.resolved_at),
        f"{external_url.rstrip('/')}/alerts" if external_url else "", fingerprint(labels),
    )  # fmt: skip


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_v4(receiver: str, group_key: str, group_labels: Mapping[str, str],
               alerts: Sequence[Notice], external_url: str) -> dict[str, Any]:  # fmt: skip
    """Build the webhook payload, version 4, that receivers written for Alertmanager expect."""
    firing = any(a.status == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": external_url,
        "alerts": [a.json() for a in alerts],
    }


def summary_lines(payload: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Return a title and one line per alert, for the chat channels."""
    alerts = payload["alerts"]
    firing = [a for a in alerts if a["status"] == "firing"]
    name = payload["commonLabels"].get("alertname") or payload["groupLabels"].get("alertname", "")
    node = payload["commonLabels"].get("node", "")
    head = f"[FIRING:{len(firing)}]" if firing else "[RESOLVED]"
    late = payload.get("queuedSeconds")
    late_text = f"(late: queued {late // 60:.0f} min ago)" if isinstance(late, int) else ""
    title = " ".join(x for x in (head, name, f"on {node}" if node else "", late_text) if x)
    lines = []
    for a in alerts:
        text = a["annotations"].get("summary") or a["labels"].get("alertname", "")
        # As in Prometheus, a resolved alert's annotations hold its last firing value.
        when = " (as it last fired)" if a["status"] == "resolved" else ""
        lines.append(f"{a['status']} {a['labels'].get('severity', '')}: {text}{when}")
    return title, lines


def render_text(payload: Mapping[str, Any], template: str | None) -> str:
    """Render the chat text: a template with {title}, {alerts}, {status}, {count}, or a default."""
    title, lines = summary_lines(payload)
    alerts = "\n".join(f"- {line}" for line in lines)
    if template is None:
        return f"{title}\n{alerts}"
    fields = {"title": title, "alerts": alerts, "status": payload["status"],
              "count": str(len(payload["alerts"]))}  # fmt: skip
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        return f"{title}\n{alerts}\n(template error: {type(exc).__name__}: {exc})"
