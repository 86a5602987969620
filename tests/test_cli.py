"""The command line as a user meets it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import ROOT

pytestmark = pytest.mark.integration  # each test runs the dsagent command in a subprocess


def dsagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DSAGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=180,
        check=False,
        env={**clean, **(env or {})},
    )


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["check-config", "--help"], ["version", "--help"]]
)
def test_help(args: list[str]) -> None:
    out = dsagent(*args)
    assert out.returncode == 0
    assert "usage: dsagent" in out.stdout


def test_version() -> None:
    out = dsagent("version")
    assert out.stdout.strip() == f"dsagent {__version__}"


def test_check_config_ok_prints_one_line(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[agent]\nnode_name = "gpu-01"\n[network]\nprobe_targets = ["127.0.0.1"]\n')
    out = dsagent("check-config", "--config", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "config OK" in lines[0] and "node gpu-01" in lines[0]
    assert "1 probe target(s)" in lines[0] and "gpu auto" in lines[0]


def test_check_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[agent]\nsample_interval = "fast"\n[http]\nlisten = 9840\n')
    out = dsagent("check-config", "--config", str(path))
    assert out.returncode == 2
    assert f"{path}:2: agent.sample_interval: invalid duration 'fast'" in out.stderr
    assert f"{path}:4: http.listen:" in out.stderr
    assert "2 problem(s)" in out.stderr


def test_check_config_env_problem(tmp_path: Path) -> None:
    out = dsagent("check-config", env={"DSAGENT_HTTP__LISTEN": "bad"})
    assert out.returncode == 2
    assert "env DSAGENT_HTTP__LISTEN: http.listen: invalid listen address 'bad'" in out.stderr


def test_run_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text("[agent\n")
    out = dsagent("run", "--config", str(path))
    assert out.returncode == 2
    assert f"{path}:1: TOML syntax error" in out.stderr


def test_run_fails_cleanly_when_the_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = dsagent(
            "run",
            env={
                "DSAGENT_HTTP__LISTEN": f"127.0.0.1:{port}",
                "DSAGENT_AGENT__STATE_DIR": str(tmp_path),
            },
        )
    assert out.returncode == 1
    assert f"cannot start: 127.0.0.1:{port} is in use" in out.stderr
    assert "http.listen" in out.stderr and "DSAGENT_HTTP__LISTEN" in out.stderr
    assert "Traceback" not in out.stderr


def test_silence_list_says_when_there_are_none(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n')
    out = dsagent("silence", "list", "--config", str(config))
    assert out.returncode == 0 and out.stdout.strip() == "no active silences"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sim_worker_exits_0_on_sigterm_and_sigint_even_started_from_a_script(
    sig: signal.Signals,
) -> None:
    # A script's background job starts with SIGINT ignored; the simulator must still stop.
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "sim-worker", "--port", "0"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )  # fmt: skip
    assert proc.stdout is not None and b"sim-worker" in proc.stdout.readline()
    proc.send_signal(sig)
    assert proc.wait(10) == 0


def test_log_options_work_after_the_subcommand_too(tmp_path: Path) -> None:
    cases = [
        ["check-config", "--log-level", "debug"],
        ["rules", "check", "--log-format", "json"],
        ["--log-level", "error", "version"],
    ]
    for args in cases:
        out = dsagent(*args)
        assert out.returncode == 0, (args, out.stderr)


def test_every_option_has_help(tmp_path: Path) -> None:
    from agent.cli import build_parser

    def walk(parser: object) -> list[str]:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    missing += walk(sub)
            elif not action.help and action.dest != "help":
                missing.append(f"{parser.prog} {action.dest}")
        return missing

    assert walk(build_parser()) == []


def test_an_env_variable_that_is_not_json_is_named(tmp_path: Path) -> None:
    out = dsagent("check-config", env={"DSAGENT_NETWORK__PROBE_TARGETS": "10.0.0.1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "env DSAGENT_NETWORK__PROBE_TARGETS: '10.0.0.1' is not JSON" in out.stderr
    assert '["10.0.0.1"]' in out.stderr, "the expected form"


def test_check_config_lists_every_stage_in_file_order_with_suggestions(tmp_path: Path) -> None:
    rules = tmp_path / "r.yml"
    rules.write_text("groups:\n  - name: g\n    rules: 5\n")
    conf = tmp_path / "agent.toml"
    worker = '[[workers]]\nname = "a"\nurl = "http://127.0.0.1:8000"\ntimout = "1s"\n'
    conf.write_text(f'{worker}[agent]\nsample_intervall = "1s"\n[rules]\npaths = ["{rules}"]\n')
    out = dsagent("check-config", "--config", str(conf))
    assert out.returncode == 2
    lines = [x.strip() for x in out.stderr.splitlines() if x.startswith("  ")]
    assert lines[0].startswith(f"{conf}:4: workers.0.timout: unknown key (did you mean 'timeout'?)")
    assert lines[1].startswith(f"{conf}:6: agent.sample_intervall: unknown key (did you mean "
                               "'sample_interval'?)")  # fmt: skip
    assert lines[2].startswith(f"{rules}:3: group 'g': rules must be a list"), "the rule stage too"


def test_cli_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    out = dsagent("status", "--url", "127.0.0.1:19999")
    assert out.returncode == 2 and "needs the scheme http:// or https://" in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = dsagent("sim-worker", "--port", str(port))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"cannot serve on 127.0.0.1:{port}" in out.stderr
    out = dsagent("demo", "--pace", "0")
    assert out.returncode == 2 and "give a factor from 0.1 to 10" in out.stderr
    for args in (("rules", "check", str(tmp_path / "none.yml")),
                 ("check-config", "--config", str(tmp_path)),
                 ("status", "--token-file", str(tmp_path / "none"))):  # fmt: skip
        out = dsagent(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, args
        assert len(out.stderr.strip().splitlines()) <= 2, out.stderr
