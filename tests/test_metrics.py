"""GET /metrics: the exposition parses, passes promtool, and says the truth about the store."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from metrics_support import Scraper, scraping
from prometheus_client.parser import text_string_to_metric_families

from tuiaudit import __version__
from tuiaudit.storage.base import DROP_REASONS, Store
from tuiaudit.timeutil import day_start, utcnow


@pytest.fixture
async def scraper(store: Store) -> AsyncIterator[Scraper]:
    async with scraping(store) as s:
        yield s


def _value(samples: dict, name: str, **labels: str) -> float | None:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_families_types_and_names(scraper: Scraper) -> None:
    await scraper.submit(2)
    scraper.metrics.bytes_sent += 123  # what the shipper does
    families = {f.name: f for f in text_string_to_metric_families(await scraper.text())}
    types = {name: f.type for name, f in families.items()}
    assert types["tuiaudit_sent_bytes"] == "counter"  # the parser strips _total
    assert "tuiaudit_bytes_sent" not in types  # the old name is gone
    assert types["tuiaudit_http_request_duration_seconds"] == "histogram"
    assert types["tuiaudit_telemetry_send_duration_seconds"] == "histogram"
    assert types["tuiaudit_telemetry_dropped"] == "counter"
    assert types["process_resident_memory_bytes"] == "gauge"
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_build_info", version=__version__) == 1
    assert _value(samples, "tuiaudit_sent_bytes_total") == 123
    assert _value(samples, "tuiaudit_events_accepted_total") == 2
    route = "/api/audit/submit"
    assert _value(samples, "tuiaudit_http_request_duration_seconds_count", route=route) == 1
    assert _value(samples, "tuiaudit_store_up") == 1


async def test_empty_queue_has_no_oldest_pending_sample(scraper: Scraper) -> None:
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_telemetry_pending_rows") == 0
    assert not any(
        name == "tuiaudit_telemetry_oldest_pending_timestamp_seconds" for name, _ in samples
    )
    before = utcnow()
    await scraper.submit(3)
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_telemetry_pending_rows") == 3
    oldest = _value(samples, "tuiaudit_telemetry_oldest_pending_timestamp_seconds")
    # a telemetry copy's created_at is its UTC day (DESIGN §3): the age is coarse
    assert oldest is not None and day_start(before).timestamp() <= oldest <= utcnow().timestamp()


async def test_drops_by_reason(scraper: Scraper) -> None:
    samples = await scraper.samples()
    assert {
        labels[0][1] for name, labels in samples if name == "tuiaudit_telemetry_dropped_total"
    } >= set(DROP_REASONS)
    assert all(
        _value(samples, "tuiaudit_telemetry_dropped_total", reason=r) == 0 for r in DROP_REASONS
    )
    await scraper.store.add_drops("age", 3)
    await scraper.store.add_drops("consent-revoked", 2)
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_telemetry_dropped_total", reason="age") == 3
    assert _value(samples, "tuiaudit_telemetry_dropped_total", reason="consent-revoked") == 2
    assert _value(samples, "tuiaudit_telemetry_dropped_total", reason="cap") == 0


async def _attempt(store: Store, status: str, at_s: int) -> None:
    started = utcnow() - timedelta(seconds=at_s)
    entry = await store.ledger_begin(
        kind="events",
        events=1,
        raw_bytes=10,
        encoded_bytes=10,
        body_sha256="0" * 64,
        batch_key=f"k{at_s}",
        attempt=1,
        sink="http://127.0.0.1:9/x",
        started_at=started,
    )
    await store.ledger_finish(
        entry, status=status, ended_at=started + timedelta(seconds=1), http_status=200
    )


async def test_last_success_and_failure_streak(scraper: Scraper) -> None:
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_telemetry_last_success_timestamp_seconds") is None
    assert _value(samples, "tuiaudit_telemetry_consecutive_failures") == 0
    await _attempt(scraper.store, "failed", 100)
    await _attempt(scraper.store, "ok", 90)
    await _attempt(scraper.store, "failed", 80)
    await _attempt(scraper.store, "failed", 70)
    samples = await scraper.samples()
    last_ok = _value(samples, "tuiaudit_telemetry_last_success_timestamp_seconds")
    assert last_ok is not None
    assert abs(last_ok - (utcnow() - timedelta(seconds=89)).timestamp()) < 30
    assert _value(samples, "tuiaudit_telemetry_consecutive_failures") == 2


async def test_store_down_keeps_counters_and_says_so(scraper: Scraper) -> None:
    await scraper.submit(1)
    await scraper.store.close()
    samples = await scraper.samples()
    assert _value(samples, "tuiaudit_store_up") == 0
    assert _value(samples, "tuiaudit_events_accepted_total") == 1
    assert _value(samples, "tuiaudit_telemetry_pending_rows") is None


@pytest.mark.skipif(
    shutil.which("promtool") is None and os.environ.get("CI") != "true",
    reason="promtool is not installed (Debian package: prometheus)",
)
async def test_promtool_check_metrics_is_clean(scraper: Scraper) -> None:
    await scraper.submit(2)
    await scraper.store.add_drops("cap", 1)
    await _attempt(scraper.store, "ok", 10)
    scraper.metrics.send_seconds.observe(0.2)
    text = await scraper.text()
    out = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr
