"""What the dashboard reads, as plain async functions over a ``Store``.

No widgets here: each function takes the store (and the clock's ``now``) and
returns a frozen snapshot the panes render, so the same reads are testable
without a terminal and the panes stay thin.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tuiaudit import __version__
from tuiaudit.approval import APPROVAL_MANUAL, waiting
from tuiaudit.batch import Batch, next_batch
from tuiaudit.config import Settings
from tuiaudit.consent import consent_state
from tuiaudit.effective import Hold, daemon_settings, hold_now, live_daemon
from tuiaudit.forecast import forecast
from tuiaudit.liveness import ALIVE, STALE, STOPPED, daemon_liveness
from tuiaudit.report import Report, next_report
from tuiaudit.storage.base import (
    DROP_REASONS,
    TELEMETRY_SOURCE_PREFIX,
    AuditFilter,
    Cursor,
    DaemonState,
    LedgerEntry,
    PendingBody,
    QuarantinedRow,
    QueueStats,
    ScanPage,
    Store,
)
from tuiaudit.timeutil import utcnow

SPARK_MINUTES = 60
LEDGER_ROWS = 50
QUARANTINE_ROWS = 50


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    state: str  # tuiaudit.liveness: ALIVE | STALE | STOPPED
    daemon: DaemonState | None
    heartbeat_age: timedelta | None

    @property
    def banner(self) -> str | None:
        """What to tell the user when shipping cannot happen, or None."""
        if self.daemon is None:
            return "No daemon has run on this store: start one with `tuiaudit daemon`."
        if self.state == STOPPED:
            return "The daemon is stopped: nothing is shipped until `tuiaudit daemon` runs again."
        if self.state == STALE:
            age = int(self.heartbeat_age.total_seconds()) if self.heartbeat_age else 0
            return (
                f"The daemon (pid {self.daemon.pid} on {self.daemon.host}) has not sent a "
                f"heartbeat for {age}s: it may have died; restart `tuiaudit daemon`."
            )
        return None


def daemon_health(states: list[DaemonState], now: datetime) -> DaemonHealth:
    """The newest daemon's liveness from its heartbeat row."""
    if not states:
        return DaemonHealth(STOPPED, None, None)
    newest = states[0]
    # The same rule as `tuiaudit status` (tuiaudit.liveness).
    return DaemonHealth(daemon_liveness(newest, now), newest, now - newest.heartbeat_at)


def info_get(info: dict[str, Any], *names: str) -> Any:
    """First present key among snake/kebab spellings of ``names``."""
    for name in names:
        for key in (name, name.replace("_", "-"), name.replace("-", "_")):
            if key in info and info[key] is not None:
                return info[key]
    return None


@dataclass(frozen=True, slots=True)
class ConsentView:
    accepted_version: int | None
    current_version: int
    ok: bool


@dataclass(frozen=True, slots=True)
class ShippingSnapshot:
    taken_at: datetime
    health: DaemonHealth
    consent: ConsentView | None
    queue: QueueStats
    max_rows: int
    drops: dict[str, int]
    ledger: list[LedgerEntry]
    quarantine: list[QuarantinedRow]
    ingested_per_minute: list[int]
    shipped_per_minute: list[int]
    forecast: str | None
    errors: list[str] = field(default_factory=list)  # parts that could not be read
    approval: str | None = None
    """Approval mode (DESIGN §10): what waits for a person, e.g. "waiting for approval
    (2 bodies, oldest 2 d)"; None when the shipper does not wait for approvals."""
    hold: Hold | None = None
    """Why a run starting now would send nothing, in `tuiaudit status`'s words
    (``tuiaudit.holds``); None when not read."""


def per_minute_series(
    buckets: list[tuple[datetime, int]], now: datetime, minutes: int = SPARK_MINUTES
) -> list[int]:
    """Dense per-minute counts for the last ``minutes`` minutes, oldest first."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    series = [0] * minutes
    for at, count in buckets:
        index = int((at.replace(second=0, microsecond=0) - start).total_seconds() // 60)
        if 0 <= index < minutes:
            series[index] += count
    return series


def shipped_buckets(ledger: list[LedgerEntry]) -> list[tuple[datetime, int]]:
    """Rows shipped per minute, from the successful event attempts of the ledger."""
    counts: Counter[datetime] = Counter()
    for entry in ledger:
        if entry.kind == "events" and entry.status == "ok":
            at = entry.ended_at or entry.started_at
            counts[at.replace(second=0, microsecond=0)] += entry.events
    return sorted(counts.items())


async def load_consent(store: Store) -> ConsentView:
    state = await consent_state(store)
    return ConsentView(state.accepted_version, state.current_version, state.ok)


async def shipping_hold(
    store: Store, settings: Settings, daemon: DaemonState | None, now: datetime
) -> tuple[Settings, Hold]:
    """The live daemon's settings (where the dashboard was not given its own) and the
    hold judged from the consent and pause now, not from the daemon's last run (a
    resume shows at once), as `tuiaudit status` does."""
    live = daemon if daemon is not None and daemon_liveness(daemon, now) == ALIVE else None
    effective = daemon_settings(settings, live)
    return effective, await hold_now(store, effective, daemon_alive=live is not None)


async def forecast_text(store: Store, effective: Settings, hold: Hold, now: datetime) -> str | None:
    """The shipper's forecast of when the cap or the age GC would start dropping rows."""
    result = await forecast(store, effective, now, held=hold.reason)
    return result.text or None


async def load_shipping(store: Store, settings: Settings, now: datetime) -> ShippingSnapshot:
    """Everything the Shipping pane shows, read in one pass."""
    errors: list[str] = []
    states = await store.daemon_states()
    queue = await store.queue_stats()
    drops = await store.drop_counts()
    ledger = await store.ledger_recent(LEDGER_ROWS)
    quarantine = await store.list_quarantine(QUARANTINE_ROWS)
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=SPARK_MINUTES - 1)
    ingested = per_minute_series(await store.rows_per_minute(source_prefix=None, since=since), now)
    shipped = per_minute_series(shipped_buckets(ledger), now)
    consent = await load_consent(store)
    health = daemon_health(states, now)
    effective, hold = await shipping_hold(store, settings, health.daemon, now)
    forecast = await forecast_text(store, effective, hold, now)
    bodies = await store.approval_list()
    manual = daemon_settings(settings, health.daemon).approval == APPROVAL_MANUAL
    approval = waiting(bodies).text(now) if manual or bodies else None
    return ShippingSnapshot(
        taken_at=now,
        health=health,
        consent=consent,
        queue=queue,
        max_rows=daemon_settings(settings, health.daemon).max_rows,
        drops={reason: drops.get(reason, 0) for reason in DROP_REASONS},
        ledger=ledger,
        quarantine=quarantine,
        ingested_per_minute=ingested,
        shipped_per_minute=shipped,
        forecast=forecast,
        errors=errors,
        approval=approval,
        hold=hold,
    )


@dataclass(frozen=True, slots=True)
class BatchPreview:
    """The next batch exactly as the sender would post it (or why there is none)."""

    batch: Batch | None
    instance_id: uuid.UUID | None
    pending: int
    note: str | None = None
    report: Report | None = None
    """The instance report posted before the batches (tuiaudit.report.next_report)."""
    queue: list[PendingBody] = field(default_factory=list)
    """Approval mode (DESIGN §10): the bodies waiting for a person, oldest first."""
    manual: bool = False
    """The shipper runs in approval mode (its recorded setting, or the dashboard's)."""
    taken_at: datetime = field(default_factory=utcnow)


async def load_preview(store: Store, settings: Settings) -> BatchPreview:
    """Call the one builder of POST bodies, as the shipper does."""
    now = utcnow()
    effective = daemon_settings(settings, live_daemon(await store.daemon_states(), now))
    bodies = await store.approval_list()
    manual = effective.approval == APPROVAL_MANUAL
    raw_id = await store.get_property("instance-id")
    queue = await store.queue_stats()
    if raw_id is None:
        return BatchPreview(
            None,
            None,
            queue.pending,
            "No instance id yet: the daemon creates one at its first start "
            "(`tuiaudit daemon`), and the batch body depends on it.",
            queue=bodies,
            manual=manual,
            taken_at=now,
        )
    instance_id = uuid.UUID(str(raw_id))
    batch = await next_batch(store, settings, instance_id=instance_id, version=__version__)
    note = None if batch is not None else "The telemetry queue is empty: nothing would be sent."
    # The shipper's own report builder; the reader cannot pin, a preview's pin is shown.
    report = await next_report(
        store,
        instance_id=instance_id,
        version=__version__,
        now=utcnow(),
        pin=True,
        site=settings.policy,
    )
    return BatchPreview(
        batch, instance_id, queue.pending, note, report, queue=bodies, manual=manual, taken_at=now
    )


def is_telemetry(source: str) -> bool:
    return source.startswith(TELEMETRY_SOURCE_PREFIX)


# -------------------------------------------------------------- text search

# A substring cannot use an index, so a text filter is searched in bounded
# steps (``Store.scan_rows``): the first step is small so the first matches
# show at once, later steps grow toward STEP_TARGET_S each, so a rare text is
# searched at full speed while a new filter never waits for more than one step.
SCAN_FIRST = 5_000
SCAN_MIN = 1_000
SCAN_MAX = 200_000
STEP_TARGET_S = 0.1


def next_scan(scan: int, elapsed: float) -> int:
    """The next step's row count: toward STEP_TARGET_S, at most 4x bigger or smaller."""
    wanted = scan * STEP_TARGET_S / max(elapsed, 1e-4)
    return int(min(SCAN_MAX, max(SCAN_MIN, scan / 4, min(wanted, scan * 4))))


async def search_steps(
    store: Store,
    flt: AuditFilter,
    *,
    want: int,
    before: Cursor | None = None,
    scan: int = SCAN_FIRST,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[ScanPage]:
    """Bounded search steps, newest first, until ``want`` matches or no row is left.

    Yields every step as it ends (its matches may be empty), so the caller
    shows matches as they arrive and says how far the search got. The last
    page yielded is ``complete`` (nothing older is left) or holds the
    ``want``-th match (its ``next_cursor`` continues the search).
    """
    found = 0
    while True:
        started = clock()
        page = await store.scan_rows(flt, before=before, limit=want - found, scan=scan)
        # Timed before the yield: the caller's work on the page (table updates,
        # the total count) is not the store's speed and must not shrink the steps.
        elapsed = clock() - started
        found += len(page.rows)
        yield page
        if page.complete or found >= want:
            return
        before = page.next_cursor
        scan = next_scan(scan, elapsed)
