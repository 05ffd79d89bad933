"""Settings precedence: flags, then TUIAUDIT_* variables, then TOML, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuiaudit.config import ConfigError, Settings, load_settings


def test_defaults_match_the_spec() -> None:
    s = load_settings({}, environ={"TUIAUDIT_CONFIG": ""})
    assert s.listen == "127.0.0.1:6061"
    assert s.flags == ("audit-log", "telemetry")
    assert s.telemetry_uri is None
    assert (s.interval, s.jitter, s.max_rows, s.batch_rows) == (10800, 10, 100_000, 10_000)
    assert s.batch_bytes == 4 * 1024 * 1024 and s.max_body == 1024 * 1024
    assert s.store_url.endswith("tuiaudit.db")


@pytest.mark.parametrize(
    ("given", "environ"),
    [({}, {"TUIAUDIT_CONFIG": ""}), ({"config": ""}, {"TUIAUDIT_CONFIG": "elsewhere.toml"})],
    ids=["variable", "flag"],
)
def test_empty_config_name_means_no_file(
    given: dict[str, str],
    environ: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A config file where the default path points: "" must not read it.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    default = tmp_path / "tuiaudit" / "config.toml"
    default.parent.mkdir()
    default.write_text('jitter = 99\nlisten = "0.0.0.0:1"\n')
    assert load_settings({}, environ={}).jitter == 99  # the default file is read...
    s = load_settings(given, environ=environ)
    assert (s.jitter, s.listen) == (10, "127.0.0.1:6061")  # ...but not with ""
    assert s.config_file is None


def test_flag_beats_env_beats_toml(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('interval = 5\njitter = 3\nlisten = "0.0.0.0:1"\n')
    env = {"TUIAUDIT_CONFIG": str(toml), "TUIAUDIT_JITTER": "7", "TUIAUDIT_LISTEN": "127.0.0.1:2"}
    s = load_settings({"listen": "127.0.0.1:3"}, environ=env)
    assert s.listen == "127.0.0.1:3"  # flag
    assert s.jitter == 7  # env over TOML
    assert s.interval == 5  # TOML over default


def test_toml_table_and_kebab_keys(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[tuiaudit]\ntelemetry-uri = "file:///tmp/x.jsonl"\nflags = ["audit-log"]\n')
    s = load_settings({"config": str(toml)}, environ={})
    assert s.telemetry_uri == "file:///tmp/x.jsonl"
    assert s.flags == ("audit-log",)


def test_do_not_track_removes_telemetry() -> None:
    s = load_settings({"flags": "audit-log,telemetry"}, environ={"DO_NOT_TRACK": "1"})
    assert s.flags == ("audit-log",)
    assert s.do_not_track
    assert not load_settings({}, environ={"DO_NOT_TRACK": "0"}).do_not_track


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"flags": "audit-log,telemtry"}, "telemtry"),
        ({"listen": "localhost"}, "--listen"),
        ({"interval": "soon"}, "--interval"),
        ({"jitter": "-1"}, "--jitter"),
    ],
)
def test_bad_values_name_the_setting(given: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(given, environ={})


def test_env_error_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="TUIAUDIT_MAX_ROWS"):
        load_settings({}, environ={"TUIAUDIT_MAX_ROWS": "many"})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"config": str(tmp_path / "nope.toml")}, environ={})


def test_settings_is_immutable() -> None:
    with pytest.raises(AttributeError):
        Settings().interval = 1  # type: ignore[misc]
