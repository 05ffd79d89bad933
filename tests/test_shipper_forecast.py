"""The drop forecast: when the cap or the age GC would start dropping rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shipper_support import T0, Reply, ScriptedReceiver, consent, rows, settings_for, shipper_for

from tuiaudit.forecast import compute, forecast

DAY = timedelta(days=1)
BASE: dict[str, Any] = {
    "now": T0,
    "max_rows": 1000,
    "max_age": 7 * DAY,
    "interval": timedelta(hours=3),
}


def test_draining_queue_expects_no_drops() -> None:
    f = compute(rate_per_min=2.0, pending=10, oldest=T0, streak=0, held=None, **BASE)
    assert f.cap_drop_at is None and f.age_drop_at is None and not f.failing
    assert "no drops expected" in f.text


def test_failing_queue_reaches_cap_and_age() -> None:
    f = compute(rate_per_min=10.0, pending=400, oldest=T0 - 2 * DAY, streak=3, held=None, **BASE)
    assert f.failing and f.failure_streak == 3
    assert f.cap_drop_at == T0 + timedelta(minutes=60)
    assert f.age_drop_at == T0 + 5 * DAY
    assert "failing" in f.text and "cap" in f.text and "age out" in f.text


def test_full_queue_drops_now_and_held_counts_as_not_draining() -> None:
    f = compute(rate_per_min=0.0, pending=1000, oldest=T0, streak=0, held="paused", **BASE)
    assert f.cap_drop_at == T0 and f.age_drop_at == T0 + 7 * DAY
    assert "held (paused)" in f.text


def test_a_burst_can_fill_the_cap_within_one_interval_even_when_draining() -> None:
    f = compute(rate_per_min=100.0, pending=0, oldest=None, streak=0, held=None, **BASE)
    assert f.cap_drop_at == T0 + timedelta(minutes=10)


async def test_forecast_reads_rate_streak_and_queue(store: Any) -> None:
    page = rows(30, start=T0 - timedelta(minutes=30), step=timedelta(minutes=1))
    await store.insert_rows(page)
    await consent(store)
    rx = ScriptedReceiver(default=Reply(503))
    async with rx.serve():
        settings = settings_for(rx.url, max_rows=100)
        async with shipper_for(store, settings) as sh:
            await sh.run_once()
            await sh.run_once()
        f = await forecast(store, settings, T0)
    assert f.rate_per_min == 0.5 and f.pending == 30 and f.failure_streak == 2
    assert f.cap_drop_at == T0 + timedelta(minutes=140)
    assert f.age_drop_at == page[0].created_at + 7 * DAY
