"""Textfile sampler: *.prom files in a directory, as node_exporter's textfile collector reads."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.config import Config
from agent.store import Kind, MetricInfo, Sample

log = logging.getLogger(__name__)

KINDS: dict[str, Kind] = {"counter": "counter", "gauge": "gauge"}


class TextfileSampler:
    """Reads every *.prom file each run; a malformed file is skipped, counted and logged once."""

    name = "textfile"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.metrics: dict[str, MetricInfo] = {
            "dsagent_textfile_errors_total": MetricInfo("counter", "Textfiles that did not parse."),
        }
        self.errors = 0
        self._bad: set[str] = set()

    def sample(self, now: float) -> Iterator[Sample]:
        """Parse the files; their samples keep their names and labels."""
        for path in sorted(self.directory.glob("*.prom")):
            try:
                samples = list(self._read(path))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                self.errors += 1
                if path.name not in self._bad:
                    log.warning("textfile %s skipped: %s", path, exc)
                self._bad.add(path.name)
                continue
            self._bad.discard(path.name)
            yield from samples
        yield Sample("dsagent_textfile_errors_total", float(self.errors))

    def _read(self, path: Path) -> Iterator[Sample]:
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
            kind = KINDS.get(family.type, "gauge")
            for s in family.samples:
                self.metrics.setdefault(s.name, MetricInfo(kind, family.documentation or s.name))
                yield Sample(s.name, float(s.value), tuple(sorted(s.labels.items())))


def build(cfg: Config) -> TextfileSampler | None:
    """Build the sampler when [textfile] directory is set."""
    directory = cfg.textfile.directory
    return TextfileSampler(directory) if directory else None
