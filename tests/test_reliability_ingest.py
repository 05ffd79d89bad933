"""Crashes and readers around ingest and shipping, on the real daemon process, both back-ends.

The same scenarios as ``bench/reliability/ingest_crash.py`` and
``bench/reliability/live_reader.py`` (which assert the same things), small
enough for CI; the scripts' ``--full`` runs are the report's figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.ingest_crash import ingest_crash_scenario
from reliability.live_reader import live_reader_scenario


@pytest.mark.slow
async def test_kill9_mid_ingest_keeps_every_acknowledged_event(
    store_url: str, tmp_path: Path
) -> None:
    figures = await ingest_crash_scenario(store_url, tmp_path, kills=3, min_acked=10)
    print(figures)
    assert figures["lost_acknowledged"] == 0
    assert figures["telemetry_copies"] == figures["stored_events"]
    assert figures["integrity_check"] in ("ok", "n/a")
    if store_url.startswith("sqlite"):
        assert figures["integrity_check"] == "ok"


@pytest.mark.slow
async def test_a_hard_polling_reader_during_a_drain_sees_no_busy_error(
    store_url: str, tmp_path: Path
) -> None:
    figures = await live_reader_scenario(store_url, tmp_path, events=5000, batch_rows=1000)
    print(figures)
    assert figures["reader_errors"] == 0
    assert figures["daemon_busy_or_locked_lines"] == 0
    assert figures["reader_ops"] > 0
