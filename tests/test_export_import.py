"""``export`` then ``import`` is a faithful copy, and importing twice changes nothing.

Issue 14 item 7, through the real CLI: full audit rows keep their id, source
(backend and frontend), timestamps and IP; telemetry copies stay out of an
export unless asked and are skipped by import; a second import of the same
file skips every row and says so in one summary line; ``--as-new`` still
feeds the events through the modes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cli_support import run_cli

ROWS: list[dict[str, Any]] = [
    {
        "id": "0190d5c1-0000-7000-8000-000000000001",
        "name": "login-with-password",
        "type": "action",
        "source": "backend",
        "profile-id": "5a4d1c2e-0000-4000-8000-000000000001",
        "ip-addr": "203.0.113.7",
        "props": {"email": "ann@example.com", "n": 3},
        "context": {"version": "2.1"},
        "tracked-at": "2024-05-01T09:59:58.123Z",
        "created-at": "2024-05-01T10:00:00.456Z",
    },
    {
        "id": "0190d5c1-0000-7000-8000-000000000002",
        "name": "navigate",
        "type": "action",
        "source": "frontend",
        "profile-id": "5a4d1c2e-0000-4000-8000-000000000002",
        "ip-addr": "2001:db8::1",
        "props": {"route": "workspace"},
        "context": {"browser": "firefox", "original-tracked-at": "2024-05-01T08:00:00Z"},
        "tracked-at": "2024-05-01T10:00:01.000Z",
        "created-at": "2024-05-01T10:00:01.000Z",
        "archived-at": "2024-05-02T00:00:00.000Z",
    },
]


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_export_import_export_is_equal_and_a_second_import_skips_all(
    tmp_path: Path,
) -> None:
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    src = _jsonl(tmp_path / "rows.jsonl", ROWS)
    first = await run_cli("import", "--store", a, str(src))
    assert first.code == 0, first.err
    # A new event next to them: in mode B it gets a telemetry copy.
    new = _jsonl(tmp_path / "new.jsonl", [{"name": "file-created", "type": "action"}])
    assert (await run_cli("import", "--store", a, str(new))).code == 0

    e1, e2 = tmp_path / "e1.jsonl", tmp_path / "e2.jsonl"
    assert (await run_cli("export", "--store", a, "-o", str(e1))).code == 0
    exported = _load(e1)
    assert [r["source"] for r in exported] == ["backend", "frontend", "backend"]
    restored = {r["id"]: r for r in exported}
    for original in ROWS:  # id, source, timestamps, IP, props, context: as they were
        assert restored[original["id"]] == original

    imported = await run_cli("import", "--store", b, str(e1))
    assert imported.code == 0, imported.err
    assert (await run_cli("export", "--store", b, "-o", str(e2))).code == 0
    assert e2.read_bytes() == e1.read_bytes()
    # No telemetry copy was made for the restored rows.
    copies = await run_cli("export", "--store", b, "--source", "telemetry:*")
    assert copies.out == ""

    again = await run_cli("import", "--store", b, str(e1))
    assert again.code == 0, again.err
    assert again.out == (
        f"{e1}: 3 lines, 0 events accepted (0 rows stored), "
        "3 already in the store (skipped), 0 rejected\n"
    )
    assert again.err == ""
    assert (await run_cli("export", "--store", b, "-o", str(e2))).code == 0
    assert e2.read_bytes() == e1.read_bytes()


async def test_telemetry_copies_are_exported_only_when_asked_and_never_imported(
    tmp_path: Path,
) -> None:
    a, b = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    new = _jsonl(tmp_path / "new.jsonl", [{"name": "file-created", "type": "action"}] * 2)
    assert (await run_cli("import", "--store", a, str(new))).code == 0
    everything = tmp_path / "all.jsonl"
    assert (await run_cli("export", "--store", a, "--telemetry", "-o", str(everything))).code == 0
    sources = sorted(r["source"] for r in _load(everything))
    assert sources == ["backend", "backend", "telemetry:backend", "telemetry:backend"]
    result = await run_cli("import", "--store", b, str(everything))
    assert result.code == 0, result.err
    assert "2 events accepted (2 rows stored), 2 telemetry copies skipped" in result.out


async def test_import_as_new_feeds_the_events_through_the_modes(tmp_path: Path) -> None:
    store = str(tmp_path / "c.db")
    src = _jsonl(tmp_path / "rows.jsonl", ROWS)
    result = await run_cli("import", "--as-new", "--store", store, str(src))
    assert result.code == 0, result.err
    assert "2 events accepted (4 rows stored)" in result.out  # mode B: a copy each
    rows = [json.loads(line) for line in (await run_cli("export", "--store", store)).out.split()]
    assert {r["source"] for r in rows} == {"backend"}
    assert all(not r["created-at"].startswith("2024-05-01") for r in rows)
