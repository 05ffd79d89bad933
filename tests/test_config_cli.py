"""``tuiaudit config show`` (provenance, redaction) and ``config init``, through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tuiaudit.commands.config import render_init
from tuiaudit.config import Settings, load_settings, setting_names


def cli(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_") and k != "DO_NOT_TRACK"
    }
    base |= {"XDG_CONFIG_HOME": str(tmp_path / "xdg-config"), "XDG_DATA_HOME": str(tmp_path / "d")}
    return subprocess.run(
        [sys.executable, "-m", "tuiaudit", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=120,
    )


def show(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = cli(tmp_path, "config", "show", "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_show_says_where_each_setting_came_from(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('listen = "127.0.0.1:7000"\ninterval = 60\nmax-rows = 500\n')
    got = show(
        tmp_path,
        "--config", str(conf),
        "--interval", "30",
        env={"TUIAUDIT_MAX_ROWS": "900", "TUIAUDIT_FLAGS": "audit-log"},
    )  # fmt: skip
    assert got["interval"] == {"value": 30.0, "from": "flag --interval"}
    assert got["max-rows"] == {"value": 900, "from": "env TUIAUDIT_MAX_ROWS"}
    assert got["flags"] == {"value": ["audit-log"], "from": "env TUIAUDIT_FLAGS"}
    assert got["listen"] == {"value": "127.0.0.1:7000", "from": f"file {conf}"}
    assert got["jitter"] == {"value": 10.0, "from": "default"}
    assert set(got) >= {n.replace("_", "-") for n in setting_names()}


def test_show_redacts_secrets(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-SECRET-1\n")
    token_file.chmod(0o600)
    out = cli(
        tmp_path,
        "config", "show",
        "--token-file", str(token_file),
        "--telemetry-uri", "https://user:pw-SECRET-2@t.example/in?key=SECRET-3",
        "--store", "postgresql://app:pw-SECRET-4@db.example/audit",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "SECRET" not in out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "***" in lines["token"] and "token_file" in lines["token"]
    assert (
        "t.example" in lines["telemetry-uri"] and "flag --telemetry-uri" in lines["telemetry-uri"]
    )
    got = show(tmp_path, "--token", "tok-SECRET-5")
    assert got["token"] == {"value": "***", "from": "flag --token"}


def test_show_includes_the_policy_table_when_present(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[policy]\nprofile-id = "drop"\ndrop-events = ["debug-dump"]\n')
    got = show(tmp_path, "--config", str(conf))
    assert got["policy"]["from"] == f"file {conf}"
    assert got["policy"]["value"]["profile-id"] == "drop"
    assert got["policy"]["value"]["drop-events"] == ["debug-dump"]
    assert len(got["policy-fingerprint"]["value"]) == 64


def test_show_bad_value_is_one_line(tmp_path: Path) -> None:
    out = cli(tmp_path, "config", "show", env={"TUIAUDIT_INTERVAL": "soon"})
    assert out.returncode == 2
    assert "TUIAUDIT_INTERVAL" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_init_lists_every_setting_and_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "config.toml"
    out = cli(tmp_path, "config", "init", "-o", str(target))
    assert out.returncode == 0, out.stderr
    text = target.read_text()
    assert text == render_init()
    assert tomllib.loads(text) == {}  # all commented out: changes nothing
    for name in setting_names():
        assert f"# {name.replace('_', '-')} = " in text, name
    # Uncomment every setting that has a default value: the file then says
    # exactly the defaults (a setting unset by default keeps its example out).
    active = "\n".join(
        line[2:]
        for line in text.splitlines()
        if line.startswith("# ") and " = " in line and "(default:" not in line
        and not line.startswith("# [") and "#" not in line[2:]
    )  # fmt: skip
    conf = tmp_path / "active.toml"
    conf.write_text(active)
    parsed = tomllib.loads(active)
    assert len(parsed) >= len(setting_names()) - 10
    settings = load_settings({"config": str(conf)}, environ={})
    defaults = Settings()
    for name in setting_names():
        if name.replace("_", "-") in parsed:
            assert getattr(settings, name) == getattr(defaults, name), name
    # a second init refuses to overwrite, --force replaces
    again = cli(tmp_path, "config", "init", "-o", str(target))
    assert again.returncode == 1 and "--force" in again.stderr
    assert cli(tmp_path, "config", "init", "-o", str(target), "--force").returncode == 0
