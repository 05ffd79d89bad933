"""When would telemetry rows start being dropped? (DESIGN §5.2 "Forecast")

From the ingest rate of telemetry rows over the last hour, the queue, and
whether shipping is draining it (no failure streak, not held), estimate when
the cap eviction and the age GC would begin dropping rows. ``status`` and the
dashboard print :attr:`Forecast.text`.

The rate is measured from what happened (``ingest_rate``): rows stored and
rows the ledger says were sent in the last hour, never from the day-truncated
timestamps of the copies still queued (they read "0.0 rows/min" while the
shipper sent hundreds a minute).

In approval mode (DESIGN §10) the queue drains only as fast as a person
approves: while bodies wait, shipping counts as held ("waiting for approval
(N bodies, oldest 2 d)"), so the forecast says when the wait makes the cap or
the age GC drop rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from tuiaudit.approval import APPROVAL_MANUAL, waiting
from tuiaudit.holds import NO_URI
from tuiaudit.storage.base import TELEMETRY_SOURCE_PREFIX

if TYPE_CHECKING:
    from tuiaudit.config import Settings
    from tuiaudit.storage.base import LedgerEntry, Store

RATE_WINDOW = timedelta(hours=1)
LEDGER_WINDOW = 500  # ledger rows read: the sends of the last hour (10,000-row batches)
FULL_SOURCES = ("backend", "frontend")


@dataclass(frozen=True, slots=True)
class Forecast:
    cap_drop_at: datetime | None
    """When the queue would reach ``max_rows`` (the next GC after it evicts the oldest)."""
    age_drop_at: datetime | None
    """When the oldest pending row passes ``max_age_days`` (the next GC after it drops it)."""
    rate_per_min: float
    """Telemetry rows arriving per minute over the last hour (``ingest_rate``)."""
    failing: bool
    """The most recent batch attempt(s) failed."""
    failure_streak: int = 0
    pending: int = 0
    held: str | None = None
    text: str = ""


async def ingest_rate(store: Store, ledger: list[LedgerEntry], now: datetime) -> float:
    """Telemetry rows arriving per minute over the last hour, from what really happened.

    A telemetry copy keeps only its UTC day (DESIGN §3), so its ``created_at``
    cannot say when it arrived, and a shipped row is gone from the queue. The
    rate is the largest of: the full audit rows stored in the window (mode B
    makes one copy per row), the rows the ledger says were sent in it (mode
    C while shipping works), and the copies dated inside it.
    """
    since = now - RATE_WINDOW
    counts: list[int] = []
    for prefix in (*FULL_SOURCES, TELEMETRY_SOURCE_PREFIX):
        buckets = await store.rows_per_minute(source_prefix=prefix, since=since)
        counts.append(sum(n for _, n in buckets))
    full = counts[0] + counts[1]
    sent = sum(
        e.events
        for e in ledger
        if e.kind == "events" and e.status == "ok" and (e.ended_at or e.started_at) >= since
    )
    minutes = RATE_WINDOW.total_seconds() / 60
    return float(max(full, sent, counts[2])) / minutes


def failure_streak(entries: list[LedgerEntry]) -> int:
    """Consecutive failed/interrupted batch attempts, newest first, before the last success."""
    streak = 0
    for entry in entries:
        if entry.kind != "events" or entry.status == "running":
            continue
        if entry.status == "ok":
            break
        streak += 1
    return streak


async def forecast(
    store: Store, settings: Settings, now: datetime, *, held: str | None = None
) -> Forecast:
    """The forecast for ``store`` now; ``held`` is the shipper's hold reason if any."""
    ledger = await store.ledger_recent(LEDGER_WINDOW)
    rate = await ingest_rate(store, ledger, now)
    streak = failure_streak(ledger)
    if held is None and not settings.telemetry_uri:
        held = NO_URI
    queue = await store.queue_stats()
    if held is None and settings.approval == APPROVAL_MANUAL and queue.pending:
        wait = waiting(await store.approval_list())
        if wait.approved < wait.bodies or not wait.bodies:  # all approved: it drains
            held = wait.text(now)
    return compute(
        now=now,
        rate_per_min=rate,
        pending=queue.pending,
        oldest=queue.oldest_created_at,
        streak=streak,
        held=held,
        max_rows=settings.max_rows,
        max_age=timedelta(days=settings.max_age_days),
        interval=timedelta(seconds=settings.interval),
    )


def compute(
    *,
    now: datetime,
    rate_per_min: float,
    pending: int,
    oldest: datetime | None,
    streak: int,
    held: str | None,
    max_rows: int,
    max_age: timedelta,
    interval: timedelta,
) -> Forecast:
    """The arithmetic of :func:`forecast`, separate so it is tested without a store."""
    draining = streak == 0 and held is None
    cap_at: datetime | None = None
    if pending >= max_rows:
        cap_at = now
    elif rate_per_min > 0:
        cap_at = now + timedelta(minutes=(max_rows - pending) / rate_per_min)
        # A draining queue empties every interval: only a burst filling the cap
        # within one interval drops rows.
        if draining and cap_at - now > interval:
            cap_at = None
    age_at: datetime | None = None
    if not draining:
        if oldest is not None:
            age_at = max(oldest + max_age, now)
        elif rate_per_min > 0:
            age_at = now + max_age
    elif interval >= max_age and (pending or rate_per_min > 0):
        age_at = (oldest or now) + max_age  # rows age out before the next run sends them
    return Forecast(
        cap_drop_at=cap_at,
        age_drop_at=age_at,
        rate_per_min=rate_per_min,
        failing=streak > 0,
        failure_streak=streak,
        pending=pending,
        held=held,
        text=_text(now, cap_at, age_at, rate_per_min, streak, held, max_rows),
    )


def _when(now: datetime, at: datetime) -> str:
    delta = at - now
    if delta <= timedelta(0):
        return "now"
    hours = delta.total_seconds() / 3600
    span = (
        f"{hours * 60:.0f} min"
        if hours < 1
        else f"{hours:.1f} h"
        if hours < 48
        else f"{hours / 24:.1f} days"
    )
    return f"in ~{span} ({at.strftime('%Y-%m-%d %H:%M')} UTC)"


def _text(
    now: datetime,
    cap_at: datetime | None,
    age_at: datetime | None,
    rate: float,
    streak: int,
    held: str | None,
    max_rows: int,
) -> str:
    if held:
        why = f"held ({held})"
    elif streak:
        why = f"sending failing ({streak} attempt{'s' if streak != 1 else ''})"
    else:
        why = "draining"
    drops = []
    if cap_at is not None:
        drops.append(f"the {max_rows:,}-row cap is reached {_when(now, cap_at)}")
    if age_at is not None:
        drops.append(f"the oldest rows age out {_when(now, age_at)}")
    if not drops:
        return f"{why} at {rate:.1f} rows/min: no drops expected"
    return f"{why} at {rate:.1f} rows/min: " + "; ".join(drops)
