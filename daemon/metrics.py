"""The daemon's Prometheus metrics (``GET /metrics``), exposed with ``prometheus_client``.

One ``Metrics`` object lives for the daemon's life with its own
``CollectorRegistry`` (never the process-global one: tests and the demo run
several daemons in one process). The ingest API and the shipper increment its
plain-int counters (one event loop, no locks needed) and observe its two
histograms; a custom collector turns the counters, and a snapshot of the store
taken just before the scrape, into metric families. The store snapshot (queue,
drops by reason, the recent shipping ledger) is cached for a few seconds so a
tight scrape loop cannot load the store.

Names follow the Prometheus conventions (``promtool check metrics`` is clean):
base units (seconds, bytes), ``_total`` on counters only, timestamps as
``*_timestamp_seconds``. A gauge with no meaningful value (the oldest pending
row of an empty queue, the last success before any) is left out rather than
reported as 0, so an age alert never fires on an empty queue (DESIGN §5).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from tuiaudit import __version__
from tuiaudit.policy import rule_counts
from tuiaudit.storage.base import (
    DELETE_REASONS,
    DROP_REASONS,
    ArchiveStats,
    LedgerEntry,
    QueueStats,
    Store,
)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""Text exposition 0.0.4: what every Prometheus and promtool version reads."""

LEDGER_WINDOW = 50
"""Recent shipping attempts read per scrape: the failure streak is counted up to this."""

REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SEND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What /metrics reads from the store (one cached read per few seconds)."""

    queue: QueueStats
    drops: dict[str, int]
    ledger: list[LedgerEntry]
    """Recent shipping attempts, newest first."""
    archive: ArchiveStats | None = None
    """The audit archive queue and deletions by reason (DESIGN §9)."""


async def store_snapshot(store: Store) -> StoreSnapshot:
    return StoreSnapshot(
        queue=await store.queue_stats(),
        drops=await store.drop_counts(),
        ledger=await store.ledger_recent(LEDGER_WINDOW),
        archive=await store.archive_stats(),
    )


@dataclass(eq=False)
class Metrics:
    events_accepted: int = 0
    """Events in requests that were validated and stored."""
    events_rejected: int = 0
    """Events in requests answered 400 (nothing of them stored)."""
    events_stored: int = 0
    """Audit rows written (mode B writes two per event)."""
    requests: Counter[int] = field(default_factory=Counter)
    """HTTP requests by response status."""
    batches_ok: int = 0
    """Telemetry batches the receiver accepted (incremented by the shipper)."""
    batches_failed: int = 0
    """Telemetry batch attempts that failed (incremented by the shipper)."""
    bytes_sent: int = 0
    """Encoded body bytes of accepted telemetry batches (incremented by the shipper)."""
    events_sent: int = 0
    """Telemetry events the receiver accepted (incremented by the shipper)."""
    archive_rows: int = 0
    """Full audit rows the archive accepted (incremented by the archiver)."""
    archive_bytes: int = 0
    """Body bytes of accepted archive chunks (incremented by the archiver)."""
    archive_failed: int = 0
    """Archive chunk attempts that failed (incremented by the archiver)."""
    search_pending: int | None = None
    """Rows the SQLite search indexer has not indexed yet (None: no indexer runs)."""
    registry: CollectorRegistry = field(init=False, repr=False)
    """This daemon's registry: the collector below, process metrics, the histograms."""
    request_seconds: Histogram = field(init=False, repr=False)
    """Ingest API request latency by route (observed by the ingest middleware)."""
    send_seconds: Histogram = field(init=False, repr=False)
    """Latency of accepted telemetry sends (observed by the shipper)."""
    snapshot: StoreSnapshot | None = field(default=None, init=False, repr=False)
    """The store as of the current scrape; None when the store did not answer."""

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_DaemonCollector(self))
        ProcessCollector(registry=self.registry)
        self.request_seconds = Histogram(
            "tuiaudit_http_request_duration_seconds",
            "Ingest API request latency, by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.send_seconds = Histogram(
            "tuiaudit_telemetry_send_duration_seconds",
            "Latency of telemetry batch sends the receiver accepted.",
            buckets=SEND_BUCKETS,
            registry=self.registry,
        )


def render(metrics: Metrics, snapshot: StoreSnapshot | None) -> bytes:
    """The text exposition of every metric, with ``snapshot`` as the store's state."""
    metrics.snapshot = snapshot
    return generate_latest(metrics.registry)


_COUNTERS = (
    ("events_accepted", "tuiaudit_events_accepted", "Events accepted by the ingest API."),
    ("events_rejected", "tuiaudit_events_rejected", "Events rejected by the ingest API."),
    ("events_stored", "tuiaudit_rows_stored", "Audit rows stored by the ingest API."),
    ("batches_ok", "tuiaudit_batches_ok", "Telemetry batches accepted by the receiver."),
    ("batches_failed", "tuiaudit_batches_failed", "Telemetry batch attempts that failed."),
    ("bytes_sent", "tuiaudit_sent_bytes", "Encoded telemetry bytes accepted by the receiver."),
    ("events_sent", "tuiaudit_events_sent", "Telemetry events accepted by the receiver."),
    ("archive_rows", "tuiaudit_archive_rows", "Full audit rows accepted by the archive."),
    ("archive_bytes", "tuiaudit_archive_sent_bytes", "Archive body bytes accepted."),
    ("archive_failed", "tuiaudit_archive_attempts_failed", "Archive chunk attempts that failed."),
)


class _DaemonCollector(Collector):
    """The counters of ``Metrics`` and the store snapshot, as metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        info = GaugeMetricFamily(
            "tuiaudit_build_info", "The running tuiaudit version (always 1).", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        for attr, name, help_ in _COUNTERS:
            yield CounterMetricFamily(name, help_, value=getattr(m, attr))
        requests = CounterMetricFamily(
            "tuiaudit_http_requests", "Ingest API requests by response status.", labels=["status"]
        )
        for status, n in sorted(m.requests.items()):
            requests.add_metric([str(status)], n)
        yield requests
        changes = CounterMetricFamily(
            "tuiaudit_policy_changes",
            "Fields the telemetry policy removed or altered at ingest, by rule (DESIGN §3.1).",
            labels=["rule"],
        )
        for rule, n in sorted(rule_counts().items()):
            changes.add_metric([rule], n)
        yield changes
        if m.search_pending is not None:
            yield GaugeMetricFamily(
                "tuiaudit_search_index_pending_rows",
                "Audit rows the free-text index does not hold yet (searches scan them).",
                value=m.search_pending,
            )
        snap = m.snapshot
        yield GaugeMetricFamily(
            "tuiaudit_store_up",
            "1 when the store answered this scrape's reads, else 0 (store gauges then absent).",
            value=0 if snap is None else 1,
        )
        if snap is not None:
            yield from _store_families(snap)


def _store_families(snap: StoreSnapshot) -> Iterator[Metric]:
    q = snap.queue
    yield GaugeMetricFamily(
        "tuiaudit_telemetry_pending_rows", "Telemetry rows waiting to be sent.", value=q.pending
    )
    yield GaugeMetricFamily(
        "tuiaudit_telemetry_quarantined_rows", "Telemetry rows in quarantine.", value=q.quarantined
    )
    if q.oldest_created_at is not None:  # no sample on an empty queue: nothing is old
        yield GaugeMetricFamily(
            "tuiaudit_telemetry_oldest_pending_timestamp_seconds",
            "Unix time the oldest pending telemetry row was created (absent when none).",
            value=q.oldest_created_at.timestamp(),
        )
    drops = CounterMetricFamily(
        "tuiaudit_telemetry_dropped",
        "Telemetry rows dropped without being sent, by reason (the store's totals).",
        labels=["reason"],
    )
    for reason in dict.fromkeys((*DROP_REASONS, *sorted(snap.drops))):
        drops.add_metric([reason], snap.drops.get(reason, 0))
    yield drops
    last_ok = _last_success(snap.ledger)
    if last_ok is not None:
        yield GaugeMetricFamily(
            "tuiaudit_telemetry_last_success_timestamp_seconds",
            "Unix time the last telemetry send was accepted (absent when none is recent).",
            value=last_ok.timestamp(),
        )
    yield GaugeMetricFamily(
        "tuiaudit_telemetry_consecutive_failures",
        f"Telemetry send attempts failed since the last success (counted up to {LEDGER_WINDOW}).",
        value=_failure_streak(snap.ledger),
    )
    if snap.archive is not None:
        yield from _archive_families(snap.archive)


def _archive_families(a: ArchiveStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tuiaudit_archive_pending_rows", "Full audit rows not archived yet.", value=a.pending
    )
    yield GaugeMetricFamily(
        "tuiaudit_archive_archived_rows",
        "Archived rows still in the store (the archive GC deletes them).",
        value=a.archived,
    )
    deleted = CounterMetricFamily(
        "tuiaudit_audit_rows_deleted",
        "Full audit rows deleted by reason: archived (archive GC), retention (store totals).",
        labels=["reason"],
    )
    for reason in dict.fromkeys((*DELETE_REASONS, *sorted(a.deletions))):
        deleted.add_metric([reason], a.deletions.get(reason, 0))
    yield deleted


def _last_success(ledger: list[LedgerEntry]) -> datetime | None:
    for entry in ledger:
        if entry.status == "ok":
            return entry.ended_at or entry.started_at
    return None


def _failure_streak(ledger: list[LedgerEntry]) -> int:
    streak = 0
    for entry in ledger:
        if entry.status == "ok":
            break
        if entry.status == "failed":
            streak += 1
    return streak


class CachedStats:
    """``fetch()`` (a store snapshot) at most once per ``ttl`` seconds."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[StoreSnapshot]],
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._monotonic = monotonic
        self._value: StoreSnapshot | None = None
        self._at = float("-inf")

    async def get(self) -> StoreSnapshot:
        now = self._monotonic()
        if self._value is None or now - self._at >= self._ttl:
            self._value = await self._fetch()
            self._at = now
        return self._value
