"""Alertmanager's API v2: POST /api/v2/alerts, so a fleet deduplicates centrally."""

from __future__ import annotations

from typing import Any

from agent.notify.channels.base import Request, json_request, ok_2xx

FIELDS = ("labels", "annotations", "startsAt", "endsAt", "generatorURL")


class Alertmanager:
    """Posts the alerts of a payload to one Alertmanager."""

    def __init__(self, url: str, secret: bytes | None, text: str | None) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"

    def request(self, payload: dict[str, Any], key: str) -> Request:
        """Send each alert with the fields the API takes."""
        alerts = [{k: a[k] for k in FIELDS if a.get(k)} for a in payload["alerts"]]
        return json_request(self.url, alerts, key)

    def accepted(self, status: int, text: str) -> bool:
        """Any 2xx."""
        return ok_2xx(status, text)
