"""What a notification says: Alertmanager's webhook payload (version 4) and plain text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
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


def alert_dict(alert: Alert, node: str, external_url: str) -> dict[str, Any]:
    """One alert as Alertmanager's webhook and API describe it."""
    labels = {**dict(alert.labels), "node": node}
    return {
        "status": "resolved" if alert.state == "resolved" else "firing",
        "labels": labels,
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.active_at),
        "endsAt": rfc3339(alert.resolved_at),
        "generatorURL": f"{external_url.rstrip('/')}/alerts" if external_url else "",
        "fingerprint": fingerprint(labels),
    }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_v4(receiver: str, group_key: str, group_labels: Mapping[str, str],
               alerts: Sequence[dict[str, Any]], external_url: str) -> dict[str, Any]:  # fmt: skip
    """Build the webhook payload, version 4, that receivers written for Alertmanager expect."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a["labels"] for a in alerts]),
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": list(alerts),
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
