"""[rules.overrides]: one default rule's levels or for changed from the config, in every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.alerting.engine import RuleEngine
from agent.alerting.model import RuleProblems
from agent.alerting.rules import load_configured
from agent.config.settings import RulesConfig
from agent.store import SeriesStore, sample
from tests.conftest import promtool
from tests.test_cli import dsagent

T0 = 1_000_000.0
OVERRIDE = '[rules.overrides.GpuUtilizationHigh]\nthresholds = {critical = 0.95}\nfor = "10m"\n'


def rules(**overrides: dict[str, object]) -> RulesConfig:
    return RulesConfig.model_validate({"overrides": overrides})


def test_an_override_changes_one_level_and_for_and_keeps_the_rest() -> None:
    groups = load_configured(rules(GpuUtilizationHigh={"thresholds": {"critical": 0.95},
                                                       "for": "10m"}))  # fmt: skip
    rule = next(r for g in groups for r in g.rules if r.alert == "GpuUtilizationHigh")
    assert dict(rule.thresholds) == {"warning": 0.85, "critical": 0.95}, "warning kept"
    assert rule.hold == 600 and rule.clear == {"warning": 0.80, "critical": 0.85}
    other = next(r for g in groups for r in g.rules if r.alert == "GpuMemoryHigh")
    assert dict(other.thresholds) == {"warning": 0.85, "critical": 0.90}, "no other rule moves"


def test_our_engine_pages_at_the_new_level() -> None:
    groups = load_configured(rules(GpuUtilizationHigh={"thresholds": {"critical": 0.95},
                                                       "for": "10m"}))  # fmt: skip
    store = SeriesStore(retention=3600, interval=60)
    for i in range(20):
        store.ingest("gpu", [sample("gpu_saturation_ratio", 0.92, gpu="0", source="sm_active")],
                     T0 + i * 60)  # fmt: skip
    engine = RuleEngine(store, groups, started_at=T0)
    gpu = next(g for g in groups if g.name == "gpu")
    for i in range(20):
        engine.evaluate_group(gpu, T0 + i * 60)
        firing = {a.severity for a in engine.all_alerts() if a.state == "firing"
                  and dict(a.labels)["alertname"] == "GpuUtilizationHigh"}  # fmt: skip
        assert firing == (set() if i < 10 else {"warning"}), (i, firing)


@pytest.mark.parametrize(("toml", "says"), [
    ('[rules.overrides.GpuUtilisationHigh]\nfor = "1m"\n',
     "rules.overrides.GpuUtilisationHigh: no rule is called 'GpuUtilisationHigh' (did you mean "
     "'GpuUtilizationHigh'?)"),
    ("[rules.overrides.GpuUtilizationHigh]\nthresholds = {critical = 0.80}\n",
     "clear.critical 0.85 is past the threshold 0.8"),
    ("[rules.overrides.GpuLost]\nclear = {critical = 1}\n", "clear makes no sense with op =="),
    ("[rules.overrides.GpuLost]\nthresholds = {fatal = 1}\n", "rules.overrides.GpuLost.thresholds"),
])  # fmt: skip
def test_a_wrong_override_is_refused_naming_it(tmp_path: Path, toml: str, says: str) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(toml)
    out = dsagent("check-config", "--config", str(conf))
    assert out.returncode == 2 and says in out.stderr, out.stderr


def test_rules_export_shows_it_and_promtool_agrees(tmp_path: Path) -> None:
    conf = tmp_path / "agent.toml"
    conf.write_text(OVERRIDE)
    out = dsagent("rules", "export", "--config", str(conf))
    assert out.returncode == 0 and "[1m]) > 0.95)" in out.stdout and "for: 10m" in out.stdout
    exported = tmp_path / "exported.yml"
    exported.write_text(out.stdout)
    cases = tmp_path / "override.test.yml"
    cases.write_text(f"""rule_files: [{exported}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {{series: 'gpu_saturation_ratio{{gpu="0",source="utilization"}}', values: '0.92x30'}}
    alert_rule_test:
      - {{eval_time: 9m, alertname: GpuUtilizationHigh, exp_alerts: []}}
      - eval_time: 11m
        alertname: GpuUtilizationHigh
        exp_alerts:
          - exp_labels: {{readiness: block, gpu: "0", source: utilization, severity: warning}}
            exp_annotations: {{summary: "GPU 0 at 92% utilization for 5m"}}
""")
    run = promtool("test", "rules", str(cases))
    assert run.returncode == 0, run.stdout + run.stderr


def test_overrides_raise_rule_problems() -> None:
    with pytest.raises(RuleProblems):
        load_configured(rules(NoSuchRule={"for": "1m"}))
