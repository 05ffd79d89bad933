"""The audit archiver: full audit rows to an external archive, then GC and retention (DESIGN §9).

One :class:`Archiver` per daemon (flag ``audit-log-archive`` with
``--archive-uri``, or ``--audit-retention-days`` alone). :meth:`Archiver.run`
is the background component: a run at start, then every
``archive_interval`` seconds, earlier for a back-off retry;
:meth:`Archiver.run_once` is one run, also used by ``tuiaudit archive`` and
the ``archive-now`` request.

A run:

1. **Archive.** Chunk after chunk (``archive_chunk`` rows, oldest first), the
   store selects and holds the rows, the archiver encodes ``{"events": [...]}``
   (:mod:`daemon.archive_body`) and POSTs it (or appends it to a
   ``file:///…jsonl``), and the store marks exactly those rows ``archived_at``
   on a 2xx, in the same unit as the selection (``Store.archive_chunk`` says
   how each back-end holds them). Telemetry copies are never selected. The
   ``Idempotency-Key`` is the hash of the chunk's ids, and each event carries
   its ``id``: a chunk re-sent after a crash between the POST and the mark is
   the same rows, and the archive can drop the duplicate.
2. **Stop on failure** and retry as the shipper does (DESIGN §5.2): a
   retryable failure (connection, timeout, 408, 429, 5xx) backs off from
   ``backoff_initial`` seconds, doubling, full jitter, never past the next
   scheduled run, ``Retry-After`` honoured; any other failure (the archive
   refuses us or the chunk) waits for the next scheduled run, its error shown
   in status. Nothing is skipped or quarantined: the archive is the audit
   trail, every row reaches it in order or stays.
3. **Archive GC**: archived rows created more than ``archive_keep_days`` ago
   are deleted (default 0: right after archiving); then **retention**: with
   ``audit_retention_days``, full rows older than that are deleted, archived
   or not. Both count their deletions by reason in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from tuiaudit.batch import batch_key
from tuiaudit.config import Settings
from tuiaudit.daemon.archive_body import FORMATS
from tuiaudit.daemon.logs import log_event
from tuiaudit.daemon.metrics import Metrics
from tuiaudit.daemon.retry import RETRYABLE, ShipError
from tuiaudit.daemon.schedule import Clock, Periodic, Sleep, iso
from tuiaudit.daemon.sinks import FileSink, HttpSink, Sink, check_uri, redact_uri
from tuiaudit.storage.base import ArchiveAttempt, AuditRow, Store
from tuiaudit.timeutil import utcnow

if TYPE_CHECKING:
    from tuiaudit.daemon.service import Daemon

log = logging.getLogger("tuiaudit.archiver")

FLAG = "audit-log-archive"
LEASE_MARGIN_S = 30.0
LOG_KEEP = 1000
"""Archive attempts kept in the store's ``archive_log`` (older ones pruned after a run)."""
HOLD_ANOTHER_ARCHIVER = "another archiver holds the store's archive lease"
MAX_ERROR_CHARS = 500


@dataclass
class ArchiveRun:
    """What one archive run did (printed by ``tuiaudit archive``, kept in daemon state)."""

    started_at: datetime
    ended_at: datetime | None = None
    held: str | None = None
    chunks: int = 0
    rows_archived: int = 0
    bytes_sent: int = 0
    failed_attempts: int = 0
    error: str | None = None
    error_class: str | None = None
    retry_at: datetime | None = None
    deleted_archived: int = 0
    deleted_retention: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("started_at", "ended_at", "retry_at"):
            value = getattr(self, key)
            out[key] = value.isoformat() if value else None
        out["ok"] = self.ok
        return {k.replace("_", "-"): v for k, v in out.items()}

    def summary(self) -> str:
        parts = []
        if self.held:
            parts.append(f"held: {self.held}")
        parts.append(
            f"{self.rows_archived} row(s) archived in {self.chunks} chunk(s), "
            f"{self.bytes_sent} bytes"
        )
        if self.failed_attempts:
            parts.append(f"{self.failed_attempts} failed attempt(s)")
        if self.error:
            parts.append(f"error ({self.error_class}): {self.error}")
        if self.retry_at:
            parts.append(f"retry at {self.retry_at.isoformat(timespec='seconds')}")
        parts.append(
            f"deleted {self.deleted_archived} archived row(s), "
            f"{self.deleted_retention} past retention"
        )
        return "; ".join(parts)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def archive_uri_problem(uri: str) -> str | None:
    """None when ``uri`` can receive the archive, else what is wrong with it."""
    if urlsplit(uri).scheme not in ("http", "https", "file"):
        return f"{uri!r}: the archive URI must start with http://, https:// or file:///"
    return check_uri(uri)


def _status_error(exc: ShipError) -> str:
    """The failure in the archive's words (the shipper's messages name --telemetry-uri)."""
    status = exc.status
    if status is None:  # connection, timeout, file: already says where and what to do
        return str(exc)
    if exc.error_class == RETRYABLE:
        return f"archive answered HTTP {status}; will retry with back-off"
    return (
        f"archive answered HTTP {status}: check --archive-uri and the archive's access "
        "rules; archiving waits for the next scheduled run"
    )


class Archiver(Periodic[ArchiveRun]):
    """Archives the full audit rows of ``store`` to ``settings.archive_uri``."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        session: aiohttp.ClientSession | None = None,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        holder: str | None = None,
    ) -> None:
        super().__init__(clock=clock, sleep=sleep, rng=rng)
        self.store = store
        self.settings = settings
        self.session = session
        self.metrics = metrics if metrics is not None else Metrics()
        self.holder = holder or default_holder()
        self.lease_s = 2 * settings.request_timeout + LEASE_MARGIN_S
        """How long one chunk may hold its rows: two POST time limits and a margin."""
        self.format = FORMATS[settings.archive_format]

        self.last_run: ArchiveRun | None = None
        self._sink: Sink | None = None
        self._retry_after: float | None = None

    # ---------------------------------------------------------------- settings

    @property
    def archiving(self) -> bool:
        return self.settings.has(FLAG)

    def hold_reason(self) -> str | None:
        """Why no row may be archived now, or None."""
        s = self.settings
        if not s.has(FLAG):
            return f"the {FLAG} flag is off"
        if not s.archive_uri:
            return "no archive uri (--archive-uri)"
        problem = archive_uri_problem(s.archive_uri)
        if problem:
            return f"bad archive uri: {problem}"
        if s.archive_uri.startswith(("http:", "https:")) and self.session is None:
            return "no HTTP session"
        return None

    def _get_sink(self) -> Sink:
        if self._sink is None:
            uri = self.settings.archive_uri
            assert uri is not None  # checked by hold_reason()
            if uri.startswith("file:"):
                self._sink = FileSink(uri)
            else:
                assert self.session is not None
                self._sink = HttpSink(
                    self.session,
                    uri,
                    connect_timeout=self.settings.connect_timeout,
                    request_timeout=self.settings.request_timeout,
                    content_type=self.format.content_type,
                )
        return self._sink

    # ------------------------------------------------------------------- runs

    async def run_once(self, stop: asyncio.Event | None = None) -> ArchiveRun:
        """One run: archive every pending chunk (until a failure or ``stop``), then delete."""
        async with self._lock:
            self.running = True
            try:
                return await self._run(stop)
            finally:
                self.running = False

    async def _run(self, stop: asyncio.Event | None) -> ArchiveRun:
        rr = ArchiveRun(started_at=self.clock())
        try:
            rr.held = self.hold_reason() if self.archiving else None
            if self.archiving and rr.held is None:
                await self._archive(rr, stop)
            if stop is None or not stop.is_set():
                await self.collect(rr)
        finally:
            rr.ended_at = self.clock()
            self.last_run = rr
        return rr

    async def _archive(self, rr: ArchiveRun, stop: asyncio.Event | None) -> None:
        chunk_rows = max(self.settings.archive_chunk, 1)
        try:
            while stop is None or not stop.is_set():
                done = await self.store.archive_chunk(
                    self._send, limit=chunk_rows, holder=self.holder, lease_s=self.lease_s
                )
                if done.held:
                    rr.held = HOLD_ANOTHER_ARCHIVER
                    return
                attempt = done.attempt
                if done.rows == 0 or attempt is None:
                    return
                if not attempt.ok:
                    rr.failed_attempts += 1
                    rr.error, rr.error_class = attempt.error, attempt.error_class
                    self.metrics.archive_failed += 1
                    log_event(
                        log,
                        "archive-failed",
                        logging.WARNING,
                        rows=done.rows,
                        http_status=attempt.http_status,
                        error_class=attempt.error_class,
                        error=attempt.error,
                    )
                    return
                rr.chunks += 1
                rr.rows_archived += done.archived
                rr.bytes_sent += attempt.bytes
                self.metrics.archive_rows += done.archived
                self.metrics.archive_bytes += attempt.bytes
                # The reference sleeps 100 ms between chunks to leave the database to
                # others; here a chunk's transactions are short and each await lets the
                # event loop serve ingest, so one yield is enough.
                await asyncio.sleep(0)
        finally:
            try:
                await self.store.release_archive_lease(self.holder)
            except Exception:  # the lease lapses by itself; never mask the run's outcome
                log.warning("could not release the archive lease", exc_info=True)
            if rr.rows_archived:
                log_event(log, "archive-run", rows=rr.rows_archived, chunks=rr.chunks)
            try:
                await self.store.prune_archive_log(LOG_KEEP)
            except Exception:
                log.warning("could not prune the archive log", exc_info=True)

    async def _send(self, rows: list[AuditRow]) -> ArchiveAttempt:
        """Encode and send one chunk while the store holds it; never raises for a failed send."""
        sink = self._get_sink()
        started = self.clock()
        body = self.format.encode(rows)
        status, http_status, error_class, error = "ok", None, None, None
        latency_ms: float | None = None
        self._retry_after = None
        try:
            result = await sink.send(
                body, idempotency_key=batch_key([r.id for r in rows]), now=started
            )
            http_status, latency_ms = result.status, result.latency_ms
        except ShipError as exc:
            if exc.status is not None and 200 <= exc.status <= 299:
                http_status = exc.status  # any 2xx is success here (DESIGN §9), not only 200-206
            else:
                status, http_status, error_class = "failed", exc.status, exc.error_class
                error = _status_error(exc)[:MAX_ERROR_CHARS]
                self._retry_after = exc.retry_after
        return ArchiveAttempt(
            started_at=started,
            ended_at=self.clock(),
            status=status,
            events=len(rows),
            bytes=len(body),
            body_sha256=hashlib.sha256(body).hexdigest(),
            http_status=http_status,
            error_class=error_class,
            error=error,
            latency_ms=latency_ms,
            sink=redact_uri(sink.uri),
            holder=self.holder,
        )

    async def collect(self, rr: ArchiveRun | None = None) -> ArchiveRun:
        """The archive GC (when archiving) and retention (when set), at the clock's now."""
        rr = rr if rr is not None else ArchiveRun(started_at=self.clock())
        now = self.clock()
        s = self.settings
        if self.archiving:
            rr.deleted_archived = await self.gc_archived(now)
        if s.audit_retention_days is not None:
            rr.deleted_retention = await self.store.delete_expired(
                older_than=now - timedelta(days=s.audit_retention_days)
            )
        if rr.deleted_archived or rr.deleted_retention:
            log_event(
                log,
                "audit-rows-deleted",
                archived=rr.deleted_archived,
                retention=rr.deleted_retention,
            )
        return rr

    async def gc_archived(self, now: datetime | None = None) -> int:
        """Delete archived rows created more than ``archive_keep_days`` before ``now``."""
        now = now or self.clock()
        days = self.settings.archive_keep_days
        return await self.store.gc_archived(older_than=now - timedelta(days=days))

    # -------------------------------------------------------------- scheduler

    def _interval_s(self) -> float:
        return self.settings.archive_interval

    def _is_retry(self, now: datetime, woken: bool) -> bool:
        return not woken and (self.next_run_at is None or self.next_run_at > now)

    async def _run_due(
        self, now: datetime, stop: asyncio.Event, *, is_retry: bool, woken: bool
    ) -> ArchiveRun:
        return await self.run_once(stop)

    def _run_failed(self, started: datetime, exc: Exception) -> None:
        log.exception("archive run failed")
        self.last_run = ArchiveRun(
            started_at=started,
            ended_at=self.clock(),
            error=f"{exc.__class__.__name__}: {exc}"[:MAX_ERROR_CHARS],
            error_class=RETRYABLE,
        )
        self.back_off(retry_after=None, next_run_at=self.next_run_at)

    def _ran(self, result: ArchiveRun) -> None:
        self._after(result)

    def _after(self, rr: ArchiveRun) -> None:
        if rr.held == HOLD_ANOTHER_ARCHIVER:
            # Another process is archiving this store (or died holding the lease,
            # which lapses): look again after one lease.
            self.retry_at = self.clock() + timedelta(seconds=self.lease_s)
        elif rr.error_class == RETRYABLE:
            self.back_off(retry_after=self._retry_after, next_run_at=self.next_run_at)
        elif rr.error is None:
            self.failures = 0
        rr.retry_at = self.retry_at

    # ------------------------------------------------------------ state, actions

    async def handle_archive_now(self, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """``archive-now``: one run now; its report is the request's result."""
        rr = await self.run_once()
        self._after(rr)
        self._publish()
        return rr.to_dict()

    def state_info(self) -> dict[str, Any]:
        """Archiver facts for ``daemon_state.info["archive"]`` (JSON-safe)."""
        last = self.last_run
        return {
            "uri": redact_uri(self.settings.archive_uri),
            "format": self.format.name,
            "held": self.hold_reason() if self.archiving else None,
            "keep-days": self.settings.archive_keep_days,
            "retention-days": self.settings.audit_retention_days,
            "failures": self.failures,
            "retry-at": iso(self.retry_at),
            "next-run-at": iso(self.next_run_at),
            "archiving": self.running,
            "last-run": last.to_dict() if last else None,
        }


def archiver_component(daemon: Daemon) -> Archiver | None:
    """The daemon's component factory: the archiver, when archiving or retention is on."""
    s = daemon.settings
    if not s.has(FLAG) and s.audit_retention_days is None:
        return None
    archiver = Archiver(
        daemon.store,
        s,
        session=daemon.session,
        metrics=daemon.metrics,
        clock=daemon.clock,
        holder=f"{daemon.host}:{os.getpid()}:{daemon.daemon_id}",
    )

    def publish(a: Archiver) -> None:
        daemon.info["archive"] = a.state_info()

    archiver.on_state = publish
    publish(archiver)
    daemon.actions.register("archive-now", archiver.handle_archive_now)
    return archiver
