"""The shipper in a running daemon: ingest → telemetry copy → receiver; ship-now; status."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tuiaudit.config import Settings
from tuiaudit.daemon.receiver import STATE_KEY, make_receiver_app, serve
from tuiaudit.daemon.service import running_daemon
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store


async def _until(predicate: Any) -> None:
    """Bound a wait on the daemon's own loops (a hang guard, not a timing check)."""
    async with asyncio.timeout(30):
        while not await predicate():  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)


async def test_daemon_ships_ingested_events_and_answers_ship_now(
    store_url: str, tmp_path: Path
) -> None:
    app = make_receiver_app(tmp_path / "r.jsonl")
    runner, port = await serve(app, "127.0.0.1", 0)
    state = app[STATE_KEY]
    try:
        settings = Settings(
            store=store_url,
            listen="127.0.0.1:0",
            flags=("audit-log", "telemetry"),
            telemetry_uri=f"http://127.0.0.1:{port}/",
            accept_policy=POLICY_VERSION,
            jitter=0,
        )
        async with running_daemon(settings) as daemon, aiohttp.ClientSession() as client:
            # The start-up run ships the instance-start event.
            await _until(lambda: _true(state.events >= 1))
            assert "ship-now" in daemon.actions.kinds() and "gc" in daemon.actions.kinds()
            submit = f"http://127.0.0.1:{daemon.port}/api/audit/submit"
            events = [
                {"name": "file-created", "type": "action", "props": {"n": i}} for i in range(3)
            ]
            async with client.post(submit, json={"events": events}) as resp:
                assert resp.status == 204
            cmd = await daemon.store.enqueue_command("ship-now")

            async def done() -> bool:
                c = await daemon.store.get_command(cmd)
                return c is not None and c.status in ("done", "failed")

            await _until(done)
            result = await daemon.store.get_command(cmd)
            assert result is not None and result.status == "done"
            assert result.result["rows-sent"] == 3 and result.result["ok"] is True
            assert state.events == 4 and state.duplicate_events == 0
            assert daemon.info["held"] is None and daemon.info["config-error"] is None
            assert daemon.next_run_at is not None
        async with open_store(store_url) as store:
            assert (await store.queue_stats()).pending == 0
            (state_row,) = await store.daemon_states()
            assert "next-run-at" in state_row.info
    finally:
        await runner.cleanup()


async def _true(value: bool) -> bool:
    return value
