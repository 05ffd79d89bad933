"""``tuiaudit demo``: traffic generator, the in-process environment, the headless CLI path."""

from __future__ import annotations

import asyncio
import random
import re
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from tui_support import NOW

from tuiaudit.cli import main
from tuiaudit.demo.run import Demo
from tuiaudit.demo.traffic import EVENTS_PATH, SUBMIT_PATH, TrafficGenerator
from tuiaudit.events import prepare_backend_events, prepare_frontend_events
from tuiaudit.policy import anonymise
from tuiaudit.timeutil import utcnow


async def wait_until(check: Callable[[], Awaitable[bool]], what: str, limit: float = 30.0) -> None:
    """Poll a real, running system (daemon + receiver) for an outcome, bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_generated_requests_are_valid_and_carry_pii() -> None:
    gen = TrafficGenerator(random.Random(7), clock=lambda: NOW)
    seen_paths = set()
    emails = 0
    for _ in range(300):
        req = gen.next_request()
        seen_paths.add(req.path)
        if req.path == EVENTS_PATH:
            rows = prepare_frontend_events(
                req.body["events"],
                profile_id=uuid.UUID(req.body["profile-id"]),
                ip_addr=req.headers["X-Forwarded-For"],
                now=NOW,
            )
            assert len(rows) == req.events
        else:
            assert req.path == SUBMIT_PATH
            prepared = prepare_backend_events([req.body], now=NOW)
            rows = [p.row for p in prepared]
            # Secrets never reach a row.
            assert "password" not in rows[0].props
        for row in rows:
            if "email" in row.props:
                emails += 1
                shared = anonymise(row)
                assert "email" not in shared.props and "fullname" not in shared.props
            assert "session" not in anonymise(row).context
    assert seen_paths == {EVENTS_PATH, SUBMIT_PATH}
    assert emails > 0


async def test_demo_environment_ingests_ships_and_feeds_the_dashboard(tmp_path: Path) -> None:
    from tuiaudit.tui.app import AuditApp

    async with Demo(tmp_path, fail_rate=0.0, interval=3600, rate=50, seed=3) as demo:
        assert demo.daemon is not None

        async def ingested() -> bool:
            return demo.daemon.metrics.events_accepted >= 20  # type: ignore[union-attr]

        await wait_until(ingested, "demo traffic to be ingested")
        store = demo.daemon.store
        command_id = await store.enqueue_command("ship-now", {})

        async def shipped() -> bool:
            command = await store.get_command(command_id)
            return command is not None and command.status in ("done", "failed")

        await wait_until(shipped, "the ship-now command")
        summary = await demo.summary()
        assert summary.events_ingested >= 20
        assert summary.events_shipped > 0
        assert summary.receiver_events == summary.events_shipped
        assert summary.batches_failed == 0
        assert "events shipped" in summary.text()

        app = AuditApp(demo.store_url, settings=demo.settings, refresh_interval=None, clock=utcnow)
        async with app.run_test(size=(120, 36)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.audit_view.table.row_count > 0
            assert app.health is not None and app.health.state == "alive"


def test_headless_cli_prints_a_summary_and_removes_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "demo"

    def fake_mkdtemp(prefix: str = "") -> str:
        workdir.mkdir()
        return str(workdir)

    monkeypatch.setattr(tempfile, "mkdtemp", fake_mkdtemp)
    rc = main(
        [
            "demo",
            "--headless",
            "--duration",
            "3",
            "--interval",
            "1",
            "--seed",
            "5",
            "--fail-rate",
            "0.3",
            "--rate",
            "20",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    for label in ("events ingested", "events shipped", "batches failed", "dropped"):
        assert label in out
    ingested = int(re.search(r"events ingested\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert ingested > 0
    assert not workdir.exists()


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--headless", "--duration", "0"]) == 2
    assert main(["demo", "--headless", "--fail-rate", "2"]) == 2
    assert "--fail-rate" in capsys.readouterr().err
