"""One alert per rule and label set across its levels, for receivers that page people.

The engine keeps an instance per level, as Prometheus does (and promtool checks). A receiver
sees them as one alert: firing at its highest firing level, resolved when it leaves every
level. A change of level is an update of that alert, marked upgrade or downgrade, never a new
page: a critical alert easing off to warning on its way down no longer pages on-call again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.notify.payload import fingerprint

AlertDict = dict[str, Any]
RANK = {"info": 0, "warning": 1, "critical": 2}


def base(labels: Mapping[str, str]) -> str:
    """Return the fingerprint of an alert's labels without its severity: the same at each level."""
    return fingerprint({k: v for k, v in labels.items() if k != "severity"})


def known(alerts: Sequence[AlertDict]) -> set[str]:
    """Return every fingerprint the alerts go by: each level's, and their rule's across levels."""
    return {a["fingerprint"] for a in alerts} | {base(a["labels"]) for a in alerts}


def severity(alert: AlertDict) -> str:
    """Return an alert's severity label."""
    return str(alert["labels"].get("severity", ""))


def one_per_rule(alerts: Sequence[AlertDict]) -> list[AlertDict]:
    """Merge each alert's level instances into one: its highest firing level, else resolved."""
    levels: dict[str, list[AlertDict]] = {}
    for alert in alerts:
        levels.setdefault(base(alert["labels"]), []).append(alert)
    out = []
    for fp, same in levels.items():
        firing = [a for a in same if a["status"] == "firing"]
        pick = max(firing or same, key=lambda a: RANK.get(severity(a), -1))
        began = min(str(a["startsAt"]) for a in (firing or same))
        out.append({**pick, "fingerprint": fp, "startsAt": began})
    return out


def transition(before: AlertDict | None, now: AlertDict) -> str:
    """Say how a firing alert's level moved since it was last notified ('' if it did not)."""
    if before is None or severity(before) == severity(now):
        return ""
    up = RANK.get(severity(now), -1) > RANK.get(severity(before), -1)
    return f"{'upgrade' if up else 'downgrade'} from {severity(before)}"
