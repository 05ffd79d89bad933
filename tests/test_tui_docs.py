"""Every dashboard key binding is documented in README.md's "Dashboard keys" section."""

from __future__ import annotations

import re
from pathlib import Path

from tuiaudit.tui.keys import KEYS

README = Path(__file__).resolve().parent.parent / "README.md"


def dashboard_keys_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^(#+) Dashboard keys\s*$", text, re.MULTILINE)
    assert match, 'README.md needs a "Dashboard keys" section (see tuiaudit.tui.keys.keys_markdown)'
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def test_every_binding_is_in_the_readme() -> None:
    section = dashboard_keys_section()
    rows = [line for line in section.splitlines() if line.startswith("|")]
    missing = [
        f"{k.display}: {k.description}"
        for k in KEYS
        if not any(f"`{k.display}`" in row and k.description in row for row in rows)
    ]
    assert not missing, "README.md 'Dashboard keys' lacks: " + "; ".join(missing)
