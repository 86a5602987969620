"""Alert state across restarts: written atomically, restored as Prometheus restores `for` state."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from agent.alerting.state import Alert
from agent.files import atomic_write, set_aside

log = logging.getLogger(__name__)


def save(path: Path, alerts: list[Alert], now: float) -> None:
    """Write every instance to `path` through a temporary file and an atomic rename."""
    records = [{**asdict(a), "labels": [list(kv) for kv in a.labels]} for a in alerts]
    atomic_write(path, json.dumps({"saved_at": now, "alerts": records}, separators=(",", ":")))


FIELDS = {f.name for f in fields(Alert)}


NUMBERS = ("active_at", "value", "fired_at", "resolved_at", "keep_firing_since")


def _alert(record: dict[str, Any]) -> Alert:
    """Rebuild one saved instance; raise ValueError, KeyError or TypeError if it is damaged."""
    record = {k: v for k, v in record.items() if k in FIELDS}  # older files had more keys
    labels = tuple((str(k), str(v)) for k, v in record["labels"])
    if record["state"] not in ("pending", "firing", "resolved") or not isinstance(
        record["rule"], str
    ):
        raise ValueError(f"state {record['state']!r} of rule {record['rule']!r}")
    for key in NUMBERS:
        if record.get(key) is not None:
            record[key] = float(record[key])
    if not isinstance(record.get("annotations", {}), dict):
        raise TypeError("annotations are not a mapping")
    return Alert(**{**record, "labels": labels})


def _records(path: Path) -> tuple[float, list[Alert]] | None:
    """Read the saved instances; a damaged file is moved aside, a damaged record skipped."""
    kept = "starting without the saved alert state"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        set_aside(path, exc, kept)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        set_aside(path, "not an object with a list of alerts", kept)
        return None
    try:
        saved_at = float(doc["saved_at"])
    except (KeyError, TypeError, ValueError):
        set_aside(path, "no saved_at time", kept)
        return None
    alerts, bad = [], 0
    for record in doc["alerts"]:
        try:
            alerts.append(_alert(record))
        except (AttributeError, KeyError, TypeError, ValueError):
            bad += 1
    if bad:
        log.error("alert state %s: %d damaged record(s) skipped, %d read", path, bad, len(alerts))
    return saved_at, alerts


def restore(path: Path, holds: dict[str, float], now: float, tolerance: float,
            grace: float) -> list[Alert]:  # fmt: skip
    """Return the saved instances to resume, with pending `for` timers shifted past the outage.

    As Prometheus' for-outage-tolerance and for-grace-period: nothing is restored after an
    outage longer than `tolerance`; a pending timer resumes where it stopped, but fires no
    sooner than `grace` after the restart; rules whose `for` is shorter than `grace` start over.
    """
    read = _records(path)
    if read is None:
        return []
    saved_at, alerts = read
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
