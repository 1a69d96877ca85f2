"""The Redis password: a ${REDIS_PASSWORD} reference in a 0600 feature_store.yaml, never the secret itself;
never echoed; a broken feature_store.yaml is one `error:` line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacdr.cli import app
from features import store as fs

# every character that could end a YAML scalar or start a substitution, but no comma (Feast splits on it)
NASTY = 's3cr"et\'${HOME}#: x\\'
URL = "redis://127.0.0.1:6390/2"


def _error_line(res: object) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    lines = res.stderr.splitlines()
    assert res.exit_code == 2, (res.output, repr(res.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _build_args(tmp_path: Path, url: str) -> list[str]:
    """`dacdr features build` onto redis at `url` (refused before --logs is read)."""
    return ["features", "build", "--logs", str(tmp_path), "--workdir", str(tmp_path / "w"),
            "--online", "redis", "--redis-url", url]


def test_password_is_a_reference_in_an_owner_only_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$REDIS_PASSWORD with quotes, `${`, `#` and `: ` is written as ${REDIS_PASSWORD} (0600); Feast's own
    loader substitutes it back exactly, and the file parses."""
    from feast.repo_config import load_repo_config

    monkeypatch.setenv(fs.PASSWORD_ENV, NASTY)
    path = fs.write_store_yaml(tmp_path / "repo", fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=URL))
    text = path.read_text()
    assert "s3cr" not in text and "${REDIS_PASSWORD}" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_repo_config(path.parent, path)
    assert config.online_store.connection_string == f"127.0.0.1:6390,db=2,password={NASTY}"


def test_no_password_no_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without $REDIS_PASSWORD the connection string has no password part (a passwordless Redis)."""
    monkeypatch.delenv(fs.PASSWORD_ENV, raising=False)
    path = fs.write_store_yaml(tmp_path / "repo", fs.OnlineConfig(kind=fs.ONLINE_REDIS, redis_url=URL))
    assert "password" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("url", [
    "redis://:hunter2@127.0.0.1:6379/0",  # a password in the url would be written to the file
    "redis://admin:hunter2@127.0.0.1:6379/0",
    "http://admin:hunter2@127.0.0.1:6379/0",  # a bad scheme
    "127.0.0.1:6379,password=hunter2",  # Feast's own form
])
def test_url_password_is_refused_without_echo(url: str, tmp_path: Path) -> None:
    """A password on the command line is refused in one line that never shows it."""
    res = CliRunner().invoke(app, _build_args(tmp_path, url))
    line = _error_line(res)
    assert "hunter2" not in res.output and "--redis-url" in line, line
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("password", ["a,b", "two\nlines", "true", "null", "1e3"])
def test_password_feast_cannot_carry_is_refused_without_echo(
    password: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Feast splits its connection string on commas and JSON-decodes values: such a password is refused,
    by name of the variable, not by value."""
    monkeypatch.setenv(fs.PASSWORD_ENV, password)
    res = CliRunner().invoke(app, _build_args(tmp_path, URL))
    line = _error_line(res)
    assert "$REDIS_PASSWORD" in line and password not in line.split("$REDIS_PASSWORD", 1)[1], line


@pytest.mark.parametrize("yaml_text", [
    'project: dacdr\nonline_store:\n  connection_string: "127.0.0.1:6379,password=a"b"\n',  # broken YAML
    # valid YAML, not a valid config; pydantic's own message would quote the connection string
    "project: dacdr\nprovider: local\nonline_store:\n  type: redis\n  redis_type: nope\n"
    '  connection_string: "127.0.0.1:6379,password=a\\"b"\n',
    "project: dacdr\nprovider: local\nentity_key_serialization_version: x\n",
])
@pytest.mark.parametrize("command", ["apply", "materialize"])
def test_broken_store_yaml_is_one_line(command: str, yaml_text: str, tmp_path: Path) -> None:
    """A hand-broken feature_store.yaml: one `error:` line naming the file's problem, never its text."""
    repo = fs.repo_dir(tmp_path)
    repo.mkdir(parents=True)
    (repo / fs.YAML_NAME).write_text(yaml_text)
    res = CliRunner().invoke(app, ["features", command, "--workdir", str(tmp_path)])
    line = _error_line(res)
    assert "feature_store.yaml" in line and 'a"b' not in line, line
