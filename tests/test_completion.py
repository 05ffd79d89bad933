"""``tuiaudit completion SHELL``: scripts generated from the parser, and bash really completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuiaudit.clidocs import commands


def completion(shell: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "tuiaudit", "completion", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("TUIAUDIT_")},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def bash_complete(script: Path, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end), with the generated script."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\nCOMP_LINE={line!r}\nCOMP_POINT=${{#COMP_LINE}}\n"
        f"_shtab_tuiaudit tuiaudit {words[-1]!r} {words[-2]!r}\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_command_is_in_the_script(shell: str) -> None:
    text = completion(shell)
    for path, _ in commands():
        assert path.split()[-1] in text, (shell, path)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_actions_and_options(tmp_path: Path) -> None:
    script = tmp_path / "tuiaudit.bash"
    script.write_text(completion("bash"))
    assert set(bash_complete(script, "tuiaudit con")) == {"config", "consent"}
    assert set(bash_complete(script, "tuiaudit config ")) >= {"show", "init"}
    assert "--listen" in bash_complete(script, "tuiaudit config show --li")
    assert set(bash_complete(script, "tuiaudit completion ")) >= {"bash", "zsh", "fish"}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_script_parses_in_its_shell(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None and os.environ.get("CI") != "true":
        pytest.skip(f"{shell} is not installed (Debian package: {shell})")
    script = tmp_path / f"tuiaudit.{shell}"
    script.write_text(completion(shell))
    out = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
