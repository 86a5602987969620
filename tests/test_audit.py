"""The audit log keeps every accepted call; a flood of refused ones is counted, not written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from agent.web.audit import MAX_KEYS, MAX_PATH, AuditLog
from tests.conftest import AgentProcess

T0 = 1_800_000_000.0  # on a minute


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def call(who: str | None, remote: str = "10.0.0.9", status: int = 200, path: str = "/api/v1/x",
         reason: str | None = None) -> dict[str, object]:  # fmt: skip
    return {"who": who, "role": "admin" if who else None, "method": "GET", "path": path,
            "status": status, "remote": remote, "reason": reason}  # fmt: skip


def test_a_flood_of_refused_calls_is_one_line_a_minute(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", 1 << 20)
    audit.record(call("ops", status=201, path="/api/v1/silences"), T0)
    for i in range(3000):
        audit.record(call(None, status=401, reason="bad token", path=f"/api/v1/{i}"), T0 + i / 100)
    written = lines(tmp_path / "audit.log")
    assert [e["who"] for e in written] == ["ops", None], "the admin's, and the first refusal"
    audit.record(call("ops"), T0 + 61)  # the next minute: the count of the last one is written
    summary = lines(tmp_path / "audit.log")[2]
    assert summary["refused"] == 2999 and summary["remote"] == "10.0.0.9"
    assert summary["reason"] == "bad token" and summary["path"] == "/api/v1/2999"
    assert lines(tmp_path / "audit.log")[3]["who"] == "ops"


def test_long_paths_are_cut_and_many_addresses_lumped(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.log", 1 << 20)
    audit.record(call("ops", path="/api/v1/" + "a" * 70_000), T0)
    assert len(str(lines(tmp_path / "audit.log")[0]["path"])) == MAX_PATH + 3
    for i in range(MAX_KEYS + 50):
        for _ in range(2):
            audit.record(call(None, remote=f"10.1.{i // 256}.{i % 256}", status=401,
                              reason="no token"), T0 + 1)  # fmt: skip
    audit.record(call("ops"), T0 + 60)
    refused = [e for e in lines(tmp_path / "audit.log") if e["who"] is None]
    assert len([e for e in refused if "refused" not in e]) == MAX_KEYS + 1, "firsts, then one *"
    lumped = [e for e in refused if e.get("remote") == "*"]
    assert len(lumped) == 1 and lumped[0]["refused"] == 99, "the rest counted together"


@pytest.mark.integration
def test_an_unauthenticated_flood_keeps_the_admins_entries(
    agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    token = tmp_path / "admin"
    token.write_text("admin-token-0123456789")
    agent = agent_factory(f'[[api_tokens]]\nname = "ops"\nrole = "admin"\ntoken_file = "{token}"\n')
    agent.wait_healthy()
    good = {"Authorization": "Bearer admin-token-0123456789"}
    assert requests.get(agent.url + "/api/v1/whoami", headers=good, timeout=5).ok
    with requests.Session() as s:  # bounded, on loopback
        for i in range(1500):
            s.get(f"{agent.url}/api/v1/{'x' * 4000}{i}", timeout=5,
                  headers={"Authorization": "Bearer wrong"})  # fmt: skip
    audit = lines(agent.state / "audit.log")
    assert audit[0]["who"] == "ops" and audit[0]["path"] == "/api/v1/whoami"
    assert len(audit) <= 5, "the admin's line, then two a minute at most"
    assert (agent.state / "audit.log").stat().st_size < 8192
