"""Logging to stderr: one line per event, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from agent.secrets import SECRETS


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as a JSON line."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return SECRETS.redact(json.dumps(entry))


class OneLineFormatter(logging.Formatter):
    """Plain text that keeps a traceback on the same line, so one event is one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record; newlines in messages and tracebacks become ' | '."""
        return SECRETS.redact(super().format(record).replace("\n", " | "))


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Send the agent's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The client logs every request at INFO and every node flap at WARNING; the agent says
    # what matters once per change of the cluster's state (agent.backends).
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
