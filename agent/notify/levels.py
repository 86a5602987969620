"""One alert per rule and label set across its levels, for receivers that page people.

The engine keeps an instance per level, as Prometheus does (and promtool checks). A receiver
sees them as one alert: firing at its highest firing level, resolved when it leaves every
level. A change of level is an update of that alert, marked upgrade or downgrade, never a new
page: a critical alert easing off to warning on its way down no longer pages on-call again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from agent.notify.payload import Notice, fingerprint

RANK = {"info": 0, "warning": 1, "critical": 2}


def base(labels: Mapping[str, str]) -> str:
    """Return the fingerprint of an alert's labels without its severity: the same at each level."""
    return fingerprint({k: v for k, v in labels.items() if k != "severity"})


def known(alerts: Sequence[Notice]) -> set[str]:
    """Return every fingerprint the alerts go by: each level's, and their rule's across levels."""
    return {a.fingerprint for a in alerts} | {base(a.labels) for a in alerts}


def one_per_rule(alerts: Sequence[Notice]) -> list[Notice]:
    """Merge each alert's level instances into one: its highest firing level, else resolved."""
    levels: dict[str, list[Notice]] = {}
    for alert in alerts:
        levels.setdefault(base(alert.labels), []).append(alert)
    out = []
    for fp, same in levels.items():
        firing = [a for a in same if a.status == "firing"]
        pick = max(firing or same, key=lambda a: RANK.get(a.severity(), -1))
        began = min(a.starts_at for a in (firing or same))
        out.append(dataclasses.replace(pick, fingerprint=fp, starts_at=began))
    return out


def transition(before: Notice | None, now: Notice) -> str:
    """Say how a firing alert's level moved since it was last notified ('' if it did not)."""
    if before is None or before.severity() == now.severity():
        return ""
    up = RANK.get(now.severity(), -1) > RANK.get(before.severity(), -1)
    return f"{'upgrade' if up else 'downgrade'} from {before.severity()}"
