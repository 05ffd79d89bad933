"""Sending the instance report (DESIGN §5 step 3): ledger, POST, clear the pin.

The body comes from :func:`tuiaudit.report.next_report`, the function the
preview and the dashboard call, so what they showed (a pinned report) is what
leaves. A failed report is logged and recorded in the sent ledger, never
raised: it does not block the event batches.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from tuiaudit.daemon.retry import ShipError
from tuiaudit.daemon.sinks import Sink, redact_uri
from tuiaudit.report import Report, clear_pin, next_report
from tuiaudit.site_policy import SitePolicy
from tuiaudit.storage.base import Store

log = logging.getLogger("tuiaudit.shipper")


async def prepare_report(
    store: Store, *, instance_id: uuid.UUID, version: str, now: datetime, site: SitePolicy
) -> Report | None:
    """The report to send now (a preview's pin if valid today), or None if it cannot be built."""
    try:
        return await next_report(
            store, instance_id=instance_id, version=version, now=now, pin=False, site=site
        )
    except Exception as exc:  # the store or a bug: the batches still go
        log.warning("could not build the instance report: %s", exc)
        return None


async def send_report(
    store: Store, sink: Sink, report: Report, *, clock: Callable[[], datetime]
) -> bool:
    """POST ``report`` through ``sink``; True when the receiver accepted it."""
    now = clock()
    entry = await store.ledger_begin(
        kind="report",
        events=0,
        raw_bytes=len(report.body),
        encoded_bytes=len(report.body),
        body_sha256=report.sha256,
        batch_key=report.key,
        attempt=1,
        sink=redact_uri(sink.uri),
        started_at=now,
    )
    try:
        result = await sink.send(report.body, idempotency_key=report.key, now=now)
    except ShipError as exc:
        await store.ledger_finish(
            entry,
            status="failed",
            ended_at=clock(),
            http_status=exc.status,
            error_class=exc.error_class,
            error=str(exc),
        )
        log.warning("instance report failed (%s); sending the batches anyway", exc.error_class)
        return False
    await store.ledger_finish(
        entry,
        status="ok",
        ended_at=clock(),
        http_status=result.status,
        latency_ms=result.latency_ms,
    )
    if report.pinned_at is not None:
        await clear_pin(store, report)
    return True
