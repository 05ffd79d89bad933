"""kill -9 the real daemon (``python -m tuiaudit daemon``) while it drains a backlog.

``tests/test_kill9.py`` kills a bare shipper process over FIFO rows; this
extends it to the whole daemon (instance-start at every restart, heartbeat,
command loop) over rows as the ingest path makes them (ids and timestamps of
the day). ``bench/reliability/kill9.py --full`` is the big loop (50 kills over
100,000 events); this is the same scenario, small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from reliability.harness import receiver, telemetry_rows
from reliability.kill9 import kill9_scenario

from tuiaudit import __version__
from tuiaudit.batch import next_batch
from tuiaudit.config import Settings
from tuiaudit.consent import accept
from tuiaudit.daemon.service import running_daemon
from tuiaudit.instance import get_instance_id
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.storage import open_store


@pytest.mark.slow
async def test_kill9_daemon_loses_nothing_and_costs_at_most_a_page(
    store_url: str, tmp_path: Path
) -> None:
    figures = await kill9_scenario(
        store_url, tmp_path, events=600, kills=3, batch_rows=50, lease_ttl=1.0, seed=3
    )
    print(figures)
    # kill9_scenario asserts these; restated so the test says what it proves.
    assert figures["lost"] == 0
    assert figures["duplicates"] <= figures["kills"] * 50
    assert figures["pending_left"] == 0


async def test_a_page_resent_after_a_crash_keeps_its_key(store_url: str, tmp_path: Path) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    page = telemetry_rows(40, start=day + timedelta(seconds=1))  # strict FIFO, today
    async with receiver(None) as (state, uri):
        settings = Settings(
            store=store_url, listen="127.0.0.1:0", telemetry_uri=uri, jitter=0, batch_rows=20
        )
        async with open_store(store_url) as store:
            await store.insert_rows(page)
            await accept(store, POLICY_VERSION)
            # The crash: the first page was POSTed and accepted, never deleted.
            batch = await next_batch(
                store, settings, instance_id=await get_instance_id(store), version=__version__
            )
            assert batch is not None
        import aiohttp

        async with aiohttp.ClientSession() as s:
            headers = {"Idempotency-Key": batch.batch_key, "Content-Type": "application/json"}
            async with s.post(uri, data=batch.body, headers=headers) as r:
                assert r.status == 204
        # The restart: a daemon ships the queue.
        async with running_daemon(settings) as daemon:
            await _wait_drained(daemon)
    assert set(state.event_ids) >= {str(r.id) for r in page}
    assert state.duplicate_events == 20
    assert state.key_mismatches == 0


async def _wait_drained(daemon: Any) -> None:
    import asyncio

    async with asyncio.timeout(60):
        while (await daemon.store.queue_stats()).pending:  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)
