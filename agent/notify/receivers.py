"""How each receiver's queue is kept, and how long it may fail before it is overdue."""

from __future__ import annotations

from agent.config.notify import NotifyConfig, ReceiverConfig
from agent.notify.dispatch import Route
from agent.notify.sender import Policy


def policy(receiver: ReceiverConfig, notify: NotifyConfig) -> Policy:
    """Return how a receiver's queue is kept; Alertmanager takes each alert's current state."""
    return Policy(receiver.queue_max, receiver.queue_max_age, receiver.stale_after,
                  current_state=receiver.type == "alertmanager",
                  ends_in=4 * notify.resend_delay)  # fmt: skip


def patience(routes: list[Route], receivers: list[ReceiverConfig]) -> dict[str, float]:
    """Return per receiver how long it may fail before it is overdue: its longest group_interval."""
    allowed = {r.name: 0.0 for r in receivers}
    for route in routes:
        name = route.cfg.receiver
        allowed[name] = max(allowed.get(name, 0.0), route.cfg.group_interval)
    return {name: value or 60.0 for name, value in allowed.items()}
