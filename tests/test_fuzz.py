"""Every parser is total: hypothesis over config, environment, rules, web.yml, exposition.

The budgets here are small so `make test` stays quick; `make fuzz` (bench/fuzz.py) runs the
same targets with thousands of cases each and prints cases and crashes per target.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzzing import TARGETS, Target, check_config, check_head, check_rules, check_web

SEEDS_CONFIG = [
    "agent.sample_interval = [1]\n",
    "[agent]\nsample_interval = {a = 1}\n",
    '[rules]\npaths = ["a\\u0000b"]\n',
    "x = " + "[" * 3000 + "]" * 3000 + "\n",
    "[[api_tokens]]\nname = 'x'\nrole = 'admin'\ntoken_file = '/dev/null'\n",
    "[[receivers]]\nname = 'x'\ntype = 'slack'\nurl = 'http://h'\ntext = '{title.foo}'\n",
    "\udcff = 1\n",  # written as bytes that are not UTF-8
]
SEEDS_RULES = [
    "rules: 5\n",
    "groups:\n  - name: g\n    interval: {a: 1}\n    rules: []\n",
    "groups:\n  - name: g\n    rules:\n      - {alert: A, expr: x, thresholds: {warning: 1},"
    " annotations: {s: '{{ \"x }}'}}\n",
    "groups: " + "[" * 2000 + "]" * 2000 + "\n",
    "groups:\n  - name: g\n    rules:\n      - {alert: A, expr: x, for: }\n",
]
SEEDS_HEADS = [b"GET /metrics HTTP/0.9", b"a b c d HTTP/0.9", b"\x00\x12G\x02\xbfHTTP/1.1 a b"]
SEEDS_WEB = ["tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: [TLS12]\n"]


@pytest.mark.parametrize("text", SEEDS_CONFIG)
def test_config_seeds(text: str) -> None:
    check_config(text)


@pytest.mark.parametrize("text", SEEDS_RULES)
def test_rule_seeds(text: str) -> None:
    check_rules(text)


@pytest.mark.parametrize("text", SEEDS_WEB)
def test_web_seeds(text: str) -> None:
    check_web(text)


@pytest.mark.parametrize("head", SEEDS_HEADS)
def test_head_seeds(head: bytes) -> None:
    check_head(head)  # HTTP/0.9 was answered without a status line


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_target(target: Target) -> None:
    @settings(max_examples=100, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(target.inputs)
    def run(value: object) -> None:
        target.check(value)

    run()
