"""docs/DESIGN.md is the document the code cites, and the repository is self-contained.

Every "DESIGN §N" in code, tests, scripts and docs names a section that exists;
nothing cites the old out-of-tree specification or reaches for a sibling folder.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "DESIGN.md"
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)
# "DESIGN §5.2", "DESIGN §1.1, §1.2, §2", "DESIGN §3, §3.1": every § of the run.
CITATION = re.compile(r"DESIGN\s+(§\d+(?:\.\d+)?(?:(?:,|;|\s+and)\s*§\d+(?:\.\d+)?)*)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sql", ".clj", ".sh", ".cfg", ".txt", ""}


def repository_texts() -> list[Path]:
    """The files a clone has (tracked, plus new ones not ignored), as text."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    paths = [ROOT / p for p in listed if p]
    return [p for p in paths if p.suffix in TEXT_SUFFIXES and p.is_file()]


def sections() -> set[str]:
    return set(HEADING.findall(DESIGN.read_text(encoding="utf-8")))


def test_the_design_document_has_the_cited_numbering() -> None:
    found = sections()
    expected = {str(n) for n in range(1, 12)} | {"1.1", "1.2", "3.1", "5.1", "5.2", "7.1"}
    assert expected | {"8.1", "8.2"} <= found


def test_every_design_citation_names_an_existing_section() -> None:
    found = sections()
    dangling: list[str] = []
    cited = 0
    for path in repository_texts():
        text = path.read_text(encoding="utf-8", errors="replace")
        for run in CITATION.findall(text):
            for number in SECTION.findall(run):
                cited += 1
                if number not in found:
                    dangling.append(f"{path.relative_to(ROOT)}: §{number}")
    assert cited > 50  # the code does cite it
    assert dangling == []


def test_nothing_cites_the_old_spec_or_reaches_outside_the_repository() -> None:
    offenders = []
    for path in repository_texts():
        text = path.read_text(encoding="utf-8", errors="replace")
        # Spelt in pieces, so this file does not match itself (nor a bulk rewrite).
        for needle in ("SPEC" + " §", "SPEC" + ".md", "../" + "shared", "TUIAUDIT_" + "SHARED"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []
