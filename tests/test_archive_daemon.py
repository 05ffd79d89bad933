"""The archiver in a running daemon, `tuiaudit archive`, `tuiaudit gc --archived` (DESIGN §9)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from shipper_support import Reply, ScriptedReceiver

from tuiaudit.archive_status import archive_status
from tuiaudit.cli import main
from tuiaudit.commands.status import collect, render_text
from tuiaudit.config import Settings
from tuiaudit.daemon.service import running_daemon
from tuiaudit.storage import open_store
from tuiaudit.storage.base import AuditFilter


async def _until(predicate: Any) -> None:
    """Bound a wait on the daemon's own loops (a hang guard, not a timing check)."""
    async with asyncio.timeout(30):
        while not await predicate():  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)


async def test_daemon_archives_ingested_rows_and_reports_them(store_url: str) -> None:
    rx = ScriptedReceiver(default=Reply(204))
    async with rx.serve():
        settings = Settings(
            store=store_url,
            listen="127.0.0.1:0",
            flags=("audit-log", "telemetry", "audit-log-archive"),
            archive_uri=rx.url,
            archive_interval=3600,
        )
        async with running_daemon(settings) as daemon, aiohttp.ClientSession() as client:
            store = daemon.store
            # The start-up run archives the instance-start event (a full row).
            await _until(lambda: _rows_archived(store, 1))
            assert "archive-now" in daemon.actions.kinds()
            submit = f"http://127.0.0.1:{daemon.port}/api/audit/submit"
            events = [
                {"name": "file-created", "type": "action", "props": {"n": i}} for i in range(5)
            ]
            async with client.post(submit, json={"events": events}) as resp:
                assert resp.status == 204
            request = await store.enqueue_command("archive-now")

            async def done() -> bool:
                c = await store.get_command(request)
                return c is not None and c.status in ("done", "failed")

            await _until(done)
            result = await store.get_command(request)
            assert result is not None and result.status == "done", result
            assert result.result["rows-archived"] == 5 and result.result["ok"] is True
            # keep-days 0: archived rows are deleted right after the run, and counted.
            assert result.result["deleted-archived"] == 5
            full = await store.count_rows(AuditFilter(source="backend"))
            assert full == 0
            telemetry = await store.count_rows(AuditFilter(source="telemetry:*"))
            assert telemetry == 6  # the telemetry copies stay for the shipper

            async with client.get(f"http://127.0.0.1:{daemon.port}/metrics") as resp:
                text = await resp.text()
            assert "tuiaudit_archive_rows_total 6.0" in text
            assert 'tuiaudit_audit_rows_deleted_total{reason="archived"} 6.0' in text
            assert "tuiaudit_archive_pending_rows 0.0" in text

            await daemon.write_state()
            (live,) = await store.daemon_states()
            data = await archive_status(store, live)
            assert data["archiving"] and data["uri"] == rx.url
            assert data["deleted"] == {"archived": 6, "retention": 0}
            assert data["attempts"][0]["status"] == "ok"
            status = await collect(store, settings)
            assert status["archive"]["pending"] == 0
            assert f"archive: {rx.url}" in render_text(status)
    archived = [uuid.UUID(e["id"]) for r in rx.requests for e in orjson.loads(r.body)["events"]]
    assert len(archived) == len(set(archived)) == 6


async def _rows_archived(store: Any, n: int) -> bool:
    return sum((await store.archive_stats()).deletions.values()) >= n


def test_cli_archive_local_to_a_file_then_gc(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    out = tmp_path / "archive.jsonl"
    assert main(["migrate", "--store", str(db)]) == 0
    for name in ("login", "logout"):
        assert main(["submit", "--store", str(db), "--name", name, "--type", "action"]) == 0
    code = main(
        ["archive", "--local", "--store", str(db), "--archive-uri", out.as_uri(),
         "--archive-keep-days", "30"]
    )  # fmt: skip
    assert code == 0
    lines = out.read_bytes().splitlines()
    assert [e["name"] for e in orjson.loads(lines[0])["events"]] == ["login", "logout"]
    assert main(["gc", "--archived", "--store", str(db), "--archive-keep-days", "30"]) == 0

    async def count() -> tuple[int, dict[str, int]]:
        async with open_store(db) as store:
            stats = await store.archive_stats()
            return stats.archived, stats.deletions

    assert asyncio.run(count()) == (2, {"archived": 0, "retention": 0})  # kept 30 days
    assert main(["gc", "--archived", "--store", str(db)]) == 0  # keep 0 days
    assert asyncio.run(count()) == (0, {"archived": 2, "retention": 0})


def test_cli_archive_without_uri_is_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    assert main(["migrate", "--store", str(db)]) == 0
    capsys.readouterr()
    assert main(["archive", "--local", "--store", str(db), "--config", ""]) == 3
    assert "held: no archive uri" in capsys.readouterr().out
    bad = ["archive", "--local", "--store", str(db), "--archive-format", "xml", "--config", ""]
    assert main(bad) == 2
    assert "not an archive format" in capsys.readouterr().err
