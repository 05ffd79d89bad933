"""The test suite is hermetic: the user's config file and variables never reach a test.

tests/conftest.py gives each test XDG directories of its own and clears every
``TUIAUDIT_*`` variable and ``DO_NOT_TRACK``. The check runs an inner pytest
under a hostile environment (a config file where the user's would be, and
variables set), once with our conftest and once without it: the second run
shows the environment does leak when nothing guards against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuiaudit.config import default_config_path, default_store_path, load_settings

INNER_TEST = """
import os
from tuiaudit.config import load_settings

def test_settings_are_the_defaults():
    leaked = sorted(k for k in os.environ if k.startswith("TUIAUDIT_") or k == "DO_NOT_TRACK")
    assert leaked == []
    s = load_settings({})
    assert (s.jitter, s.listen, s.flags) == (10.0, "127.0.0.1:6061", ("audit-log", "telemetry"))
    assert s.config_file is None
"""


def run_inner(tmp_path: Path, with_conftest: bool) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / ("guarded" if with_conftest else "bare")
    suite.mkdir()
    (suite / "test_inner.py").write_text(INNER_TEST)
    if with_conftest:
        shutil.copy(Path(__file__).with_name("conftest.py"), suite / "conftest.py")
    # The user's config where platformdirs looks, and their variables.
    home = tmp_path / "user-home"
    (home / ".config" / "tuiaudit").mkdir(parents=True, exist_ok=True)
    (home / ".config" / "tuiaudit" / "config.toml").write_text("jitter = 99\n")
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TUIAUDIT_LISTEN": "0.0.0.0:9",
        "DO_NOT_TRACK": "1",
        "CI": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=suite,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_users_config_and_variables_do_not_reach_tests(tmp_path: Path) -> None:
    bare = run_inner(tmp_path, with_conftest=False)
    assert "1 failed" in bare.stdout, bare.stdout + bare.stderr  # unguarded, settings leak in
    guarded = run_inner(tmp_path, with_conftest=True)
    assert guarded.returncode == 0, guarded.stdout + guarded.stderr


def test_default_paths_are_inside_this_tests_own_directories(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.getbasetemp()
    assert default_config_path().is_relative_to(base)
    assert Path(default_store_path()).is_relative_to(base)
    assert not default_config_path().exists()
    assert load_settings({}).config_file is None
