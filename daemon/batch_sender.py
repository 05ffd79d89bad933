"""One run's batch loop: build ahead, ledger, POST, delete, split and quarantine (DESIGN §5).

:class:`BatchSender` is what :meth:`daemon.shipper.Shipper.run_once` runs
once the run may send: it drains the telemetry queue in order, a batch at a
time, and records the outcome (failures, back-off, last error) on the
shipper, which outlives the run.

Rows are deleted only after the receiver accepted them, and the
``Idempotency-Key`` is derived from the row ids, so a crash at any moment
loses nothing. Each batch is journaled before its POST (its key and ids, the
server property ``shipping-inflight``) and a run starts by re-sending it
while its rows are pending: the page boundaries of the queue can move after
a restart (rows of the same day share their ``created_at``), the batch in
flight does not, so its re-send carries the same body and key.

Consent and pause are asked again before every POST (DESIGN §7.1): a revoke
or a pause that returned while a request was on the wire stops the loop
before the next one, and the batches built ahead are dropped with the
producer. (A revoke from another process that commits in the instant between
that check and the request's start cannot be excluded without a lock shared
with every process; that request is "the one already on the wire".)
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from tuiaudit.approval import APPROVAL_MANUAL, KIND_EVENTS, pending_batch, policy_key
from tuiaudit.batch import (
    INFLIGHT_PROPERTY,
    Batch,
    build_batch,
    inflight_entry,
    queue_batches,
    read_inflight,
)
from tuiaudit.daemon.retry import (
    ConfigurationShipError,
    MalformedBatchError,
    RetryableShipError,
    ShipError,
)
from tuiaudit.daemon.sinks import Sink, redact_uri

if TYPE_CHECKING:
    from tuiaudit.daemon.shipper import RunReport, Shipper

log = logging.getLogger("tuiaudit.shipper")

MAX_ATTEMPT_KEYS = 1000  # batch keys whose attempt count is remembered


class SendHeld(Exception):
    """Consent was revoked, shipping paused (...) since the run started: stop sending."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchSender:
    """Sends the queued telemetry of one run through ``sink``, reporting into ``run_report``."""

    def __init__(self, shipper: Shipper, sink: Sink, run_report: RunReport) -> None:
        self.shipper = shipper
        self.store = shipper.store
        self.settings = shipper.settings
        self.sink = sink
        self.run_report = run_report
        assert shipper.instance_id is not None
        self.instance_id = shipper.instance_id
        self.manual = self.settings.approval == APPROVAL_MANUAL
        """Approval mode (DESIGN §10): only approved bodies leave, byte for byte."""

    async def run(self) -> None:
        """Send batches in order until the queue is empty or a failure stops the loop.

        A producer task runs up to two batches ahead (one queued, one being
        fetched and built) so the store's SELECT, the parse and the encoding
        of the next pages overlap the POST and DELETE of this one. When a hold
        stops the loop, those are cancelled unsent.
        """
        if self.manual:
            await self._run_approved()
            return
        ready: asyncio.Queue[Batch | BaseException | None] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            batches = self._batches()
            try:
                async for batch in batches:
                    await ready.put(batch)
            except Exception as exc:  # raised by the consumer, in order
                await ready.put(exc)
                return
            finally:
                await batches.aclose()  # cancelled while a batch waits: close it now
            await ready.put(None)

        producer = asyncio.create_task(produce(), name="tuiaudit-shipper-batches")
        try:
            while (batch := await ready.get()) is not None:
                if isinstance(batch, BaseException):
                    raise batch
                if batch.oversize:
                    self.run_report.quarantined += await self.store.quarantine(
                        batch.ids,
                        reason=f"too large: one event makes a {batch.encoded_bytes}-byte body, "
                        f"over batch_bytes={self.settings.batch_bytes}",
                    )
                    continue
                if not await self._send_splitting(batch):
                    return
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _run_approved(self) -> None:
        """Approval mode: send the approved batches, oldest first, each only if its
        rebuilt body still has the approved SHA-256 (else it is void: refused, and its
        rows get a new body to approve at the next sync)."""
        store = self.store
        for body in await store.approval_list():
            if body.kind != KIND_EVENTS or body.approved_at is None:
                continue
            rows = await store.telemetry_rows(body.ids)
            batch = None
            if len(rows) == len(body.ids):
                batch = await asyncio.to_thread(
                    build_batch, rows, instance_id=self.instance_id, version=self.shipper.version
                )
            if batch is None or batch.sha256 != body.sha256:
                log.warning(
                    "not sending approved body %s: %s; its rows need a new approval",
                    body.sha256,
                    "some of its rows left the queue"
                    if batch is None
                    else f"rebuilt, it has SHA-256 {batch.sha256}",
                )
                self.run_report.refused += 1
                await store.approval_remove([body.sha256])
                continue
            if not await self._send_splitting(batch):
                return
            await store.approval_remove([body.sha256])

    async def _batches(self) -> AsyncGenerator[Batch, None]:
        """Every batch of this run in order (:func:`tuiaudit.batch.queue_batches`, the
        one cut of the queue): the journaled batch first, then pages by keyset cursor,
        each planned by bytes, read and built while the previous batch is in flight."""
        s, store = self.settings, self.store
        version = self.shipper.version
        inflight = await read_inflight(store)
        if inflight.found and not inflight.rows:
            await store.delete_property(INFLIGHT_PROPERTY)  # stale: its rows are gone
        elif inflight.rows:
            log.info(
                "re-sending the batch in flight at the last stop: %d of its %d rows pending%s",
                len(inflight.rows),
                len(inflight.ids),
                "" if inflight.whole else " (a new batch key: some rows were dropped)",
            )
        # The resumed rows are deleted only once accepted, while pages are read
        # ahead: the one cut of the queue leaves them out of the pages.
        async for batch in queue_batches(
            store, s, instance_id=self.instance_id, version=version, inflight=inflight
        ):
            yield batch

    async def _send_splitting(self, batch: Batch) -> bool:
        """Send ``batch``; on a malformed-batch answer send its halves, quarantine lone rows.

        False when the loop must stop (retryable or configuration failure, lost lease).
        """
        shipper, run_report = self.shipper, self.run_report
        if not await shipper.renew_lease():
            run_report.error, run_report.error_class = (
                "lost the shipper lease to another process",
                "lease",
            )
            return False
        try:
            await self._send_batch(batch)
            return True
        except SendHeld as held:
            shipper.stop_held(run_report, held.reason)
            return False
        except MalformedBatchError as exc:
            if batch.count == 1:
                run_report.quarantined += await self.store.quarantine(
                    batch.ids, reason=f"rejected by the receiver (HTTP {exc.status})"
                )
                log.warning("quarantined 1 row the receiver rejected (HTTP %s)", exc.status)
                return True
            mid = batch.count // 2
            if self.manual:
                # The halves are new bodies: a person approves them first (DESIGN §10).
                policy = policy_key(self.settings.policy)
                halves = [
                    build_batch(part, instance_id=self.instance_id, version=shipper.version)
                    for part in (batch.rows[:mid], batch.rows[mid:])
                ]
                await self.store.approval_add(
                    [pending_batch(h, policy=policy, now=shipper.clock()) for h in halves]
                )
                log.warning(
                    "the receiver refused an approved body (HTTP %s): its halves wait for approval",
                    exc.status,
                )
                return True
            for part in (batch.rows[:mid], batch.rows[mid:]):
                half = build_batch(part, instance_id=self.instance_id, version=shipper.version)
                if not await self._send_splitting(half):
                    return False
            return True
        except ConfigurationShipError as exc:
            shipper.config_error = str(exc)
            self._stop_with(exc)
            return False
        except RetryableShipError as exc:
            next_run = shipper.next_run_at or shipper.clock() + timedelta(
                seconds=self.settings.interval
            )
            run_report.retry_at = shipper.back_off(
                retry_after=exc.retry_after, next_run_at=next_run
            )
            self._stop_with(exc)
            return False

    def _stop_with(self, exc: ShipError) -> None:
        self.run_report.error, self.run_report.error_class = str(exc), exc.error_class
        self.shipper.last_error = str(exc)
        log.warning(
            "telemetry batch failed (%s, HTTP %s); keeping the rows", exc.error_class, exc.status
        )

    async def _send_batch(self, batch: Batch) -> None:
        """Ledger, POST, then delete exactly the shipped rows; raises ``ShipError``."""
        shipper, run_report, store, metrics = (
            self.shipper,
            self.run_report,
            self.store,
            self.shipper.metrics,
        )
        attempts = shipper.attempts
        attempt = attempts.get(batch.batch_key, 0) + 1
        if len(attempts) > MAX_ATTEMPT_KEYS:
            attempts.clear()
        attempts[batch.batch_key] = attempt
        # The journal first: after a crash from here on, the next run re-sends
        # exactly this batch (same body, same key) before anything else.
        await store.set_property(INFLIGHT_PROPERTY, inflight_entry(batch))
        # Asked per POST, as late as possible: a pause keeps the journal (the
        # next run re-sends this batch), a revoke purged its rows (stale journal).
        held = await shipper.hold_reason()
        if held is not None:
            raise SendHeld(held)
        now = shipper.clock()
        entry = await store.ledger_begin(
            kind="events",
            events=batch.count,
            raw_bytes=batch.raw_bytes,
            encoded_bytes=batch.encoded_bytes,
            body_sha256=batch.sha256,
            batch_key=batch.batch_key,
            attempt=attempt,
            sink=redact_uri(self.sink.uri),
            started_at=now,
        )
        try:
            result = await self.sink.send(batch.body, idempotency_key=batch.batch_key, now=now)
        except ShipError as exc:
            run_report.batches_failed += 1
            metrics.batches_failed += 1
            await store.ledger_finish(
                entry,
                status="failed",
                ended_at=shipper.clock(),
                http_status=exc.status,
                error_class=exc.error_class,
                error=str(exc),
            )
            raise
        # The ledger first: it then tells the truth about the exchange even if we
        # crash before the delete (the rows are re-sent under the same key).
        await store.ledger_finish(
            entry,
            status="ok",
            ended_at=shipper.clock(),
            http_status=result.status,
            latency_ms=result.latency_ms,
        )
        await store.delete_rows(batch.ids)
        # Cleared so that a preview may journal the next batch (it never
        # overwrites one); a crash before this leaves a journal of gone rows,
        # which the next run ignores and clears.
        await store.delete_property(INFLIGHT_PROPERTY)
        attempts.pop(batch.batch_key, None)
        shipper.failures = 0
        shipper.retry_at = None
        shipper.config_error = None
        shipper.last_error = None
        run_report.batches_sent += 1
        run_report.rows_sent += batch.count
        run_report.bytes_sent += batch.encoded_bytes
        metrics.batches_ok += 1
        metrics.send_seconds.observe(result.latency_ms / 1000)
        metrics.events_sent += batch.count
        metrics.bytes_sent += batch.encoded_bytes
        if self.settings.keep_sent_bodies:
            await self._keep_body(batch)

    async def _keep_body(self, batch: Batch) -> None:
        directory = Path(self.settings.keep_sent_bodies or ".")
        try:
            await asyncio.to_thread(_write_body, directory, batch.sha256, batch.body)
        except OSError as exc:
            log.warning("could not keep a copy of the sent body in %s: %s", directory, exc.strerror)


def _write_body(directory: Path, sha256: str, body: bytes) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{sha256}.json"
    tmp = path.with_suffix(".tmp")
    # 0600 like the store (DESIGN §8.2): a body is what this instance shared.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    os.replace(tmp, path)
