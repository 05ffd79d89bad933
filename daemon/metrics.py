"""Process-wide counters, rendered as Prometheus text exposition (``GET /metrics``).

One ``Metrics`` object lives for the daemon's life; the ingest API and the
shipper increment it (plain ints: one event loop, no locks needed). The
pending-queue gauges are read from the store, cached for a few seconds so a
tight scrape loop cannot load it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tuiaudit.storage.base import QueueStats


@dataclass
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


_COUNTERS = (
    ("events_accepted", "tuiaudit_events_accepted_total", "Events accepted by the ingest API."),
    ("events_rejected", "tuiaudit_events_rejected_total", "Events rejected by the ingest API."),
    ("events_stored", "tuiaudit_rows_stored_total", "Audit rows stored by the ingest API."),
    ("batches_ok", "tuiaudit_batches_ok_total", "Telemetry batches accepted by the receiver."),
    ("batches_failed", "tuiaudit_batches_failed_total", "Telemetry batch attempts that failed."),
    ("bytes_sent", "tuiaudit_bytes_sent_total", "Encoded telemetry bytes accepted."),
    ("events_sent", "tuiaudit_events_sent_total", "Telemetry events accepted by the receiver."),
)


def render(metrics: Metrics, stats: QueueStats | None) -> str:
    lines: list[str] = []
    for attr, name, help_ in _COUNTERS:
        lines += [
            f"# HELP {name} {help_}",
            f"# TYPE {name} counter",
            f"{name} {getattr(metrics, attr)}",
        ]
    name = "tuiaudit_http_requests_total"
    lines += [f"# HELP {name} HTTP requests by status.", f"# TYPE {name} counter"]
    lines += [f'{name}{{status="{s}"}} {n}' for s, n in sorted(metrics.requests.items())]
    if stats is not None:
        oldest = stats.oldest_created_at.timestamp() if stats.oldest_created_at else 0
        for gname, help_, value in (
            (
                "tuiaudit_telemetry_pending_rows",
                "Telemetry rows waiting to be sent.",
                stats.pending,
            ),
            (
                "tuiaudit_telemetry_quarantined_rows",
                "Telemetry rows in quarantine.",
                stats.quarantined,
            ),
            (
                "tuiaudit_telemetry_oldest_pending_timestamp_seconds",
                "created_at of the oldest pending row (0 when none).",
                oldest,
            ),
        ):
            lines += [f"# HELP {gname} {help_}", f"# TYPE {gname} gauge", f"{gname} {value}"]
    return "\n".join(lines) + "\n"


class CachedStats:
    """``store.queue_stats()`` at most once per ``ttl`` seconds."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[QueueStats]],
        *,
        ttl: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._monotonic = monotonic
        self._value: QueueStats | None = None
        self._at = float("-inf")

    async def get(self) -> QueueStats:
        now = self._monotonic()
        if self._value is None or now - self._at >= self._ttl:
            self._value = await self._fetch()
            self._at = now
        return self._value
