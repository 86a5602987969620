"""What the notifier reports each round: the outbox and each receiver URL's deliveries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from agent.notify.sender import Sender
from agent.store import MetricInfo, Sample, sample

METRICS = {
    "dsagent_outbox_pending": MetricInfo("gauge", "Notifications waiting in the outbox."),
    "dsagent_outbox_oldest_seconds": MetricInfo("gauge", "Age of the oldest waiting notification."),
    "dsagent_notifications_sent_total": MetricInfo("counter", "Notifications delivered (2xx)."),
    "dsagent_notifications_failed_total": MetricInfo("counter", "Delivery attempts that failed."),
    "dsagent_alerts_suppressed": MetricInfo("gauge", "Alerts not notified: silenced or inhibited."),
    "dsagent_outbox_write_failures_total": MetricInfo(
        "counter", "Outbox writes that failed (disk full, I/O error) and are tried again."
    ),
    "dsagent_notifications_dropped_total": MetricInfo(
        "counter", "Queued notifications dropped past the queue's bounds (expired, overflow)."
    ),
}


def figures(senders: Sequence[Sender], counts: Counter[tuple[str, str]],
            stats: dict[str, tuple[int, float]], suppressed: int,
            write_failures: int) -> list[Sample]:  # fmt: skip
    """Return the notifier's samples: per receiver URL, then the suppressed and failed writes."""
    out = []
    for sender in senders:
        rid = sender.receiver
        pending, oldest = stats.get(rid, (0, 0.0))
        out.append(sample("dsagent_outbox_pending", pending, receiver=rid))
        out.append(sample("dsagent_outbox_oldest_seconds", oldest, receiver=rid))
        out.append(sample("dsagent_notifications_sent_total", counts[(rid, "sent")],
                          receiver=rid))  # fmt: skip
        out.append(sample("dsagent_notifications_failed_total", counts[(rid, "failed")],
                          receiver=rid))  # fmt: skip
        for reason in ("expired", "overflow"):
            out.append(sample("dsagent_notifications_dropped_total",
                              counts[(rid, f"dropped_{reason}")], receiver=rid,
                              reason=reason))  # fmt: skip
    out.append(sample("dsagent_alerts_suppressed", suppressed))
    out.append(sample("dsagent_outbox_write_failures_total", write_failures))
    return out
