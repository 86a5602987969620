"""Alert state across restarts: written atomically, restored as Prometheus restores `for` state."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from agent.alerting.state import Alert
from agent.files import atomic_write

log = logging.getLogger(__name__)


def save(path: Path, alerts: list[Alert], now: float) -> None:
    """Write every instance to `path` through a temporary file and an atomic rename."""
    records = [{**asdict(a), "labels": [list(kv) for kv in a.labels]} for a in alerts]
    atomic_write(path, json.dumps({"saved_at": now, "alerts": records}, separators=(",", ":")))


FIELDS = {f.name for f in fields(Alert)}


def _alert(record: dict[str, Any]) -> Alert:
    record = {k: v for k, v in record.items() if k in FIELDS}  # older files had more keys
    record["labels"] = tuple(tuple(kv) for kv in record["labels"])
    return Alert(**record)


def restore(path: Path, holds: dict[str, float], now: float, tolerance: float,
            grace: float) -> list[Alert]:  # fmt: skip
    """Return the saved instances to resume, with pending `for` timers shifted past the outage.

    As Prometheus' for-outage-tolerance and for-grace-period: nothing is restored after an
    outage longer than `tolerance`; a pending timer resumes where it stopped, but fires no
    sooner than `grace` after the restart; rules whose `for` is shorter than `grace` start over.
    """
    try:
        doc = json.loads(path.read_text())
        saved_at, records = float(doc["saved_at"]), list(doc["alerts"])
        alerts = [_alert(r) for r in records]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("alert state %s unreadable (%s): starting without it", path, exc)
        return []
    down = now - saved_at
    if down > tolerance:
        log.warning("alert state is %.0fs old, over the outage tolerance: starting fresh", down)
        return []
    kept = []
    for alert in alerts:
        hold = holds.get(alert.rule)
        if hold is None:
            continue  # the rule is gone
        if alert.state == "pending":
            if hold < grace:
                continue
            remaining = hold - (saved_at - alert.active_at)
            if remaining < grace:
                alert.active_at = now + grace - hold
            else:
                alert.active_at += down
        kept.append(alert)
    log.info("restored %d alert instance(s) from %s (down %.0fs)", len(kept), path, down)
    return kept
