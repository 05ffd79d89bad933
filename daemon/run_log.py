"""One log line per telemetry run: outcome, rows, bytes and every body's SHA-256.

The daemon's JSON-lines log (``daemon/logs.py``) then holds, for each run,
the hash of each body it posted, so an operator can check the receiver's
copies against the log as well as against the ledger (DESIGN §5.2). Only
hashes, counts and sizes are logged: never a body or a value from it.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from tuiaudit.daemon.logs import log_event
from tuiaudit.daemon.sinks import SendResult, Sink

if TYPE_CHECKING:
    from tuiaudit.daemon.shipper import RunReport

log = logging.getLogger("tuiaudit.shipper")

RUN_EVENT = "telemetry-run"


class RecordingSink:
    """``sink`` noting the SHA-256 of every body it was asked to send, by outcome."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.uri = sink.uri
        self.sent: list[str] = []
        self.failed: list[str] = []
        self.sent_bytes = 0
        """Bytes of the accepted bodies: the report's too, unlike ``RunReport.bytes_sent``."""

    async def send(
        self, body: bytes, *, idempotency_key: str, now: datetime | None = None
    ) -> SendResult:
        digest = hashlib.sha256(body).hexdigest()
        try:
            result = await self.sink.send(body, idempotency_key=idempotency_key, now=now)
        except BaseException:
            self.failed.append(digest)
            raise
        self.sent.append(digest)
        self.sent_bytes += len(body)
        return result


def outcome(run: RunReport, sink: RecordingSink | None) -> str:
    """``held``, ``failed`` (stopped by an error), ``sent`` or ``idle`` (nothing to send)."""
    if run.error:
        return "failed"
    if sink is not None and (sink.sent or sink.failed):
        return "sent"
    return "held" if run.held else "idle"


def log_run(run: RunReport, sink: RecordingSink | None) -> None:
    """The run's line, a held run's too (its reason says what lifts the hold).

    Info level: a failure already has its own warning from the batch sender.
    """
    log_event(
        log,
        RUN_EVENT,
        outcome=outcome(run, sink),
        held=run.held,
        rows=run.rows_sent,
        bytes=sink.sent_bytes if sink is not None else 0,
        batches=run.batches_sent,
        failed_attempts=run.batches_failed,
        quarantined=run.quarantined,
        report_ok=run.report_ok,
        sha256=sink.sent if sink is not None else [],
        failed_sha256=sink.failed if sink is not None else [],
        error_class=run.error_class,
    )
