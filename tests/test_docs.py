"""The README documents every command and option (so it cannot fall behind the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tuiaudit.clidocs import BEGIN, END, commands, options, render

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def reference_section() -> str:
    start, end = README.find(BEGIN), README.find(END)
    assert 0 <= start < end, "README.md lacks the generated command reference markers"
    return README[start : end + len(END)]


def test_every_command_and_option_is_in_the_readme() -> None:
    section = reference_section()
    missing = []
    for path, parser in commands():
        if f"`tuiaudit {path}`" not in section:
            missing.append(f"tuiaudit {path}")
        for spelling, _ in options(parser):
            if f"`{spelling}`" not in section:
                missing.append(f"tuiaudit {path} {spelling}")
    assert not missing, (
        "undocumented in README.md (run `python -m tuiaudit.clidocs --write`): "
        + ", ".join(missing)
    )


def test_reference_is_current() -> None:
    assert reference_section() == render(), "run `python -m tuiaudit.clidocs --write`"


def test_every_command_has_examples_in_its_help() -> None:
    for path, parser in commands():
        if " " in path:  # sub-commands (webhooks add …) share their parent's examples
            continue
        assert parser.epilog and "tuiaudit" in parser.epilog, (
            f"`tuiaudit {path} --help` lacks examples"
        )


def test_readme_names_the_two_setup_commands() -> None:
    for script in ("scripts/run-demo", "scripts/run-tests"):
        assert f"\n{script}\n" in README
        assert (ROOT / script).exists()


def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tuiaudit", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("tuiaudit ")
