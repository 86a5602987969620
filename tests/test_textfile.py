from __future__ import annotations

from agent.samplers.textfile import TextfileSampler
from tests.conftest import FIXTURES


def test_reads_prom_files_and_skips_a_broken_one() -> None:
    sampler = TextfileSampler(FIXTURES / "textfile")
    got = {(s.name, s.labels): s.value for s in sampler.sample(1.0)}
    assert got[("backup_last_success_seconds", (("job", "nightly"),))] == 1.7e9
    assert got[("model_loads_total", (("model", "deepseek-v3"),))] == 4.0
    assert got[("dsagent_textfile_errors_total", ())] == 1.0
    assert sampler.metrics["model_loads_total"].kind == "counter"
    assert sampler.metrics["backup_last_success_seconds"].help == "When the last backup finished."
