from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config, split_listen
from agent.config import settings as config_mod
from agent.config.errors import find_line


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DSAGENT_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(config_mod, "DEFAULT_PATH", Path("/nonexistent/agent.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def problems(path: Path | None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_defaults_without_any_file() -> None:
    cfg = load_config(None)
    assert cfg.http.listen == "127.0.0.1:9840"
    assert cfg.agent.sample_interval == 1.0
    assert cfg.agent.retention == 900.0
    assert cfg.network.probe_targets == []


def test_state_dir_default_depends_on_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert config_mod.default_state_dir() == Path("/var/lib/dsagent")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert config_mod.default_state_dir() == tmp_path / "dsagent"


def test_file_values_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        '[agent]\nnode_name = "gpu-07"\nsample_interval = "2s"\n'
        '[http]\nlisten = "127.0.0.1:9000"\n',
    )
    monkeypatch.setenv("DSAGENT_HTTP__LISTEN", "127.0.0.1:9999")
    cfg = load_config(path)
    assert cfg.agent.node_name == "gpu-07"
    assert cfg.agent.sample_interval == 2.0
    assert cfg.http.listen == "127.0.0.1:9999"


def test_sections_are_frozen() -> None:
    cfg = load_config(None)
    with pytest.raises(ValueError, match="frozen"):
        cfg.agent.sample_interval = 5  # type: ignore[misc]


def test_every_problem_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agent]\nnode_name = "n"\nsample_interval = "soon"\n\n'
        '[http]\nlisten = "nowhere"\n\n[network]\nprobe_targets = ["tcp://h"]\n'
        "bogus = 1\n[gpux]\nenabled = true\n",
    )
    found = problems(path)
    assert f"{path}:3: agent.sample_interval: invalid duration 'soon'" in found[0]
    assert any(p.startswith(f"{path}:6: http.listen: invalid listen address") for p in found)
    assert any(
        p.startswith(f"{path}:9: network.probe_targets") and "needs a port" in p for p in found
    )
    assert f"{path}:10: network.bogus: unknown key" in found
    assert f"{path}:11: gpux: unknown key (did you mean 'gpu'?)" in found
    assert len(found) == 5


def test_env_problem_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSAGENT_AGENT__SAMPLE_INTERVAL", "zz")
    assert problems(None) == [
        "env DSAGENT_AGENT__SAMPLE_INTERVAL: agent.sample_interval: invalid duration 'zz': "
        "use e.g. 500ms, 1s, 5m, 1h30m"
    ]


def test_misspelled_env_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSAGENT_HTTP_LISTEN", "127.0.0.1:1")
    assert problems(None) == ["env DSAGENT_HTTP_LISTEN: unknown setting: no section 'http_listen'"]


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nnode_name = "a"\nsample_interval = \n')
    (found,) = problems(path)
    assert found.startswith(f"{path}:3: TOML syntax error")


def test_unreadable_file(tmp_path: Path) -> None:
    (found,) = problems(tmp_path / "missing.toml")
    assert "missing.toml: cannot read" in found


def test_cross_check_probe_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, '[network]\nprobe_targets = ["127.0.0.1"]\nprobe_timeout = "2s"\n')
    assert problems(path) == [
        f"{path}:3: network.probe_timeout: must be shorter than agent.sample_interval"
    ]


def test_bad_regex_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[host]\ndisk_exclude = "(unclosed"\n')
    (found,) = problems(path)
    assert found.startswith(f"{path}:2: host.disk_exclude: invalid regular expression")


@pytest.mark.parametrize(
    ("listen", "parts"),
    [
        ("127.0.0.1:9840", ("127.0.0.1", 9840)),
        ("[::1]:80", ("::1", 80)),
        (":9840", ("0.0.0.0", 9840)),
    ],
)
def test_split_listen(listen: str, parts: tuple[str, int]) -> None:
    assert split_listen(listen) == parts


@pytest.mark.parametrize("bad", ["9840", "host", "h:99999", "[::1]", "a:b:c:1"])
def test_split_listen_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        split_listen(bad)


def test_find_line_in_arrays_of_tables_and_dotted_keys() -> None:
    text = '[[receivers]]\nname = "a"\n\n[network]\nprobe_count = 3\nagent.node_name = "x"\n'
    assert find_line(text, ["network", "probe_count"]) == 5
    assert find_line(text, ["receivers", 0, "name"]) == 2
    assert find_line(text, ["network", "agent", "node_name"]) == 6
    assert find_line(text, ["nothing"]) is None


def test_receiver_templates_secrets_and_tokens_are_checked_at_load(tmp_path: Path) -> None:
    latin = tmp_path / "secret"
    latin.write_bytes(b"\xff\xfe not utf-8")
    empty = tmp_path / "token"
    empty.write_text("  \n")
    path = tmp_path / "agent.toml"
    path.write_text(
        '[[receivers]]\nname = "chat"\ntype = "dingtalk"\nurl = "http://127.0.0.1:9/x"\n'
        f'text = "{{title.foo}}"\nsecret_file = "{latin}"\n'
        f'[[api_tokens]]\nname = "root"\nrole = "admin"\ntoken_file = "{empty}"\n'
    )
    found = "\n".join(problems(path))
    assert "receivers.0.text" in found and "AttributeError" in found
    assert "receivers.0.secret_file" in found and "UTF-8" in found
    assert "api_tokens.0.token_file" in found and "empty" in found


@pytest.mark.parametrize("url", ["127.0.0.1:18778", "ftp://127.0.0.1:21", "http://:80",
                                 "http://h:99999", "localhost"])  # fmt: skip
def test_a_worker_url_must_be_http_with_a_host(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[[workers]]\nname = "w"\nurl = "{url}"\n')
    (found,) = problems(path)
    assert "workers.0.url" in found and "http://HOST:PORT" in found


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "https://vllm.internal", "http://[::1]:8000/"]
)
def test_good_worker_urls(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f'[[workers]]\nname = "w"\nurl = "{url}"\n')).workers
