"""kill -9 a shipping process at random moments: no event is lost, and every event
that arrives twice arrives with the same event id under the same batch key.

A bounded loop (a few kills per back-end); ``bench/kill9.py`` runs many more.
The waits here are real (a process must run to be killed mid-flight); they
bound the test, nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from shipper_support import consent, rows

from tuiaudit.daemon.receiver import STATE_KEY, ReceiverState, make_receiver_app, serve
from tuiaudit.storage import open_store
from tuiaudit.timeutil import utcnow

KILLS = 6
ROWS = 400

WORKER = r"""
import asyncio, sys
import aiohttp
from tuiaudit.daemon.shipper import Shipper
from tuiaudit.storage import open_store
from tuiaudit.config import Settings

async def main() -> None:
    store_url, uri = sys.argv[1], sys.argv[2]
    settings = Settings(store=store_url, telemetry_uri=uri, jitter=0, batch_rows=int(sys.argv[3]),
                        interval=3600)
    async with open_store(store_url) as store, aiohttp.ClientSession() as session:
        shipper = Shipper(store, settings, session=session, lease_ttl_s=1.0)
        print("ready", flush=True)
        await shipper.run(asyncio.Event())

asyncio.run(main())
"""


async def start_worker(script: Path, store_url: str, uri: str, batch_rows: int) -> Any:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        store_url,
        uri,
        str(batch_rows),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.strip() == b"ready"
    return proc


async def kill9(proc: Any) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    await proc.wait()


def check_duplicates(state: ReceiverState) -> int:
    """Every event id arrived under one batch key only; returns how many re-arrivals."""
    keys_by_id: dict[str, set[str | None]] = {}
    for key, ids in state.log:
        for i in ids:
            keys_by_id.setdefault(i, set()).add(key)
    mixed = {i: k for i, k in keys_by_id.items() if len(k) > 1}
    assert not mixed, f"{len(mixed)} event(s) re-sent under a different batch key"
    assert state.key_mismatches == 0
    return state.duplicate_events


@pytest.mark.slow
async def test_kill9_loses_nothing_and_duplicates_share_id_and_key(
    store_url: str, tmp_path: Path
) -> None:
    rng = random.Random(9)
    page = rows(ROWS, start=utcnow() - timedelta(hours=1))  # the worker's clock is real
    async with open_store(store_url) as store:
        await store.insert_rows(page)
        await consent(store)
    app = make_receiver_app(tmp_path / "received.jsonl", delay=0.005)
    state = app[STATE_KEY]
    runner, port = await serve(app, "127.0.0.1", 0)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    uri = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(KILLS):
            proc = await start_worker(
                script, store_url, uri, batch_rows=5
            )  # same settings: same batches
            await asyncio.sleep(rng.uniform(0.05, 0.6))
            await kill9(proc)
        # The last one runs to the end: every row must arrive.
        proc = await start_worker(script, store_url, uri, batch_rows=5)
        try:
            async with asyncio.timeout(120):
                while len(state.event_ids) < ROWS:  # noqa: ASYNC110 - polling a counter
                    await asyncio.sleep(0.05)
                # The last 204 may still be on its way to the delete: let it land.
                async with open_store(store_url) as store:
                    while (await store.queue_stats()).pending:  # noqa: ASYNC110 - polling the store
                        await asyncio.sleep(0.05)
        finally:
            await kill9(proc)
    finally:
        await runner.cleanup()

    assert set(state.event_ids) == {str(r.id) for r in page}
    dups = check_duplicates(state)
    print(f"kill9: {KILLS} kills, {dups} duplicate event(s) re-sent with the same key")
    async with open_store(store_url) as store:
        assert (await store.queue_stats()).pending == 0
        assert (await store.queue_stats()).quarantined == 0
