"""The wire between the daemon process and its ingest workers (daemon/ingest_workers.py).

A frame is a 4-byte length and a msgpack array: ``[id, kind, body]`` asks,
``[id, "=ok", body]`` / ``[id, "=err", [class, message]]`` answers; either end
may ask, answers come in any order. A store error raised while answering
reaches the asking side as the same ``StoreError`` class, so the worker's
routes answer 503/409/500 exactly as in one process. A request's rows travel
packed for SQLite (``pack_rows``: msgpack bytes of the column values, which
the writer binds without making a Python object of them; ``rows_params``
only for a value msgpack cannot carry) or as typed msgpack for PostgreSQL
(its binary COPY needs UUIDs and datetimes).
The counters a worker reports for /metrics are here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec
from prometheus_client import Histogram

from tuiaudit.daemon.metrics import Metrics
from tuiaudit.storage.base import (
    AuditRow,
    StoreConflict,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    WebhookJob,
    new_row,
)
from tuiaudit.storage.columns import ColumnRows, rows_params

log = logging.getLogger("tuiaudit.daemon.workers")

MAX_FRAME = 256 * 1024 * 1024
"""Larger than any request's rows (the body limit is far smaller)."""

_HEADER = struct.Struct("!I")

# ------------------------------------------------------------------ channel

_ERRORS: dict[str, type[StoreError]] = {
    "unavailable": StoreUnavailable,
    "read-only": StoreReadOnly,
    "conflict": StoreConflict,
    "error": StoreError,
}

Handler = Callable[[str, Any], Awaitable[Any]]


def _error_name(exc: StoreError) -> str:
    for name, cls in _ERRORS.items():  # most specific first
        if type(exc) is cls:
            return name
    if isinstance(exc, StoreConflict):
        return "conflict"
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    return "error"


class Channel:
    """One end of a daemon ⇄ worker stream: numbered asks, answers in any order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._encoder = msgspec.msgpack.Encoder()
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    async def ask(self, kind: str, body: Any = None) -> Any:
        """Send an ask and wait for its answer; a store error comes back raised."""
        if self.closed.is_set():
            raise StoreUnavailable("the daemon's writer process is gone")
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[self._next] = future
        self._send([self._next, kind, body])
        return await future

    def _send(self, message: list[Any]) -> None:
        payload = self._encoder.encode(message)
        # Two buffers, not one concatenated copy of a request's rows (tens of kB).
        self._writer.writelines((_HEADER.pack(len(payload)), payload))

    async def serve(self, handler: Handler) -> None:
        """Read frames until the other end closes; asks go to ``handler``."""
        try:
            while True:
                head = await self._reader.readexactly(_HEADER.size)
                (size,) = _HEADER.unpack(head)
                if size > MAX_FRAME:
                    raise ValueError(f"frame of {size} bytes")
                msg_id, kind, body = msgspec.msgpack.decode(await self._reader.readexactly(size))
                if kind == "=ok" or kind == "=err":
                    self._answered(msg_id, kind, body)
                else:
                    task = asyncio.create_task(self._answer(handler, msg_id, kind, body))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, msgspec.DecodeError):
            pass
        finally:
            self.closed.set()
            gone = StoreUnavailable("the daemon's writer process is gone")
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(gone)
            self._waiting.clear()

    def _answered(self, msg_id: int, kind: str, body: Any) -> None:
        future = self._waiting.pop(msg_id, None)
        if future is None or future.done():
            return
        if kind == "=ok":
            future.set_result(body)
        else:
            name, message = body
            future.set_exception(_ERRORS.get(name, StoreError)(message))

    async def _answer(self, handler: Handler, msg_id: int, kind: str, body: Any) -> None:
        try:
            result = await handler(kind, body)
        except StoreError as exc:
            reply = [msg_id, "=err", [_error_name(exc), str(exc)]]
        except Exception as exc:  # a bug must not hang the asking side
            log.exception("channel-handler-failed", extra={"fields": {"kind": kind}})
            reply = [msg_id, "=err", ["error", f"{type(exc).__name__} in the {kind} handler"]]
        else:
            reply = [msg_id, "=ok", result]
        if not self.closed.is_set():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self._send(reply)

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._writer.close()


# ------------------------------------------------------- rows on the wire

# PostgreSQL takes typed rows (its COPY is binary); SQLite takes the text
# parameters ``rows_params`` makes, so the writer converts nothing.
_PgRow = tuple[
    uuid.UUID, str, str, str, uuid.UUID, str, dict[str, Any], dict[str, Any], datetime,
    datetime, datetime | None,
]  # fmt: skip
_PG_ROWS = msgspec.msgpack.Decoder(list[_PgRow])
_ENCODER = msgspec.msgpack.Encoder()


def pack_rows(rows: Sequence[Sequence[Any]]) -> bytes | None:
    """``rows`` (``rows_params`` tuples, or ``rows_columns``' with the id a UUID:
    msgspec writes a UUID as its canonical text, as ``str`` does) as one msgpack
    array of arrays: what ``SqliteStore.insert_packed`` takes. None when msgpack
    cannot carry a value as it is (a lone surrogate is not UTF-8)."""
    try:
        return _ENCODER.encode(rows)
    except (msgspec.EncodeError, TypeError, ValueError):
        return None


def encode_rows(backend: str, rows: Sequence[AuditRow]) -> Any:
    if backend == "sqlite":
        return rows_params(rows)
    return _ENCODER.encode(  # bytes in the frame, decoded typed by the writer
        [
            (
                r.id,
                r.name,
                r.type,
                r.source,
                r.profile_id,
                r.ip_addr,
                r.props,
                r.context,
                r.tracked_at,
                r.created_at,
                r.archived_at,
            )
            for r in rows
        ]
    )


def decode_pg_rows(body: Any) -> list[AuditRow]:
    return [new_row(*t) for t in _PG_ROWS.decode(body)]


class RemoteStore:
    """What a worker's ``AuditLog`` and routes use of the store, done by the daemon."""

    def __init__(self, channel: Channel, backend: str) -> None:
        self.channel = channel
        self.backend = backend

    @property
    def takes_columns(self) -> bool:
        """True when ``insert_rows`` takes a ``columns.ColumnRows`` (the rows' column
        tuples, made without ``AuditRow`` objects by ``AuditLog.ingest_frontend``)
        in place of the rows: on SQLite, which takes them packed."""
        return self.backend == "sqlite"

    async def insert_rows(
        self, rows: Sequence[AuditRow], webhook_jobs: Sequence[WebhookJob] = ()
    ) -> None:
        if not rows and not webhook_jobs:
            return
        jobs = [(j.event, j.event_name, j.batch_key, j.batch_timeout_ms) for j in webhook_jobs]
        if self.backend == "sqlite":
            # The rows packed (SqliteStore.insert_packed): the daemon's writer binds
            # them from these bytes. ``params`` only for a value msgpack cannot
            # carry (a lone surrogate): the daemon's store then says what is wrong.
            given: Any = rows  # (takes_columns: a ColumnRows may come in place of rows)
            # (the tuples as made: their ids are UUIDs, which msgpack writes as text)
            made = given if type(given) is ColumnRows else rows_params(rows)
            packed = pack_rows(made)
            if packed is not None:
                await self.channel.ask("packed", [packed, len(rows), jobs])
                return
            params = made.params() if type(made) is ColumnRows else made
            await self.channel.ask("rows", [params, jobs])
            return
        await self.channel.ask("rows", [encode_rows(self.backend, rows), jobs])

    async def add_drops(self, reason: str, count: int) -> None:
        await self.channel.ask("drops", [reason, count])

    async def ping(self) -> None:
        await self.channel.ask("ping")


# ------------------------------------------------------------- counters


def counters_of(metrics: Metrics) -> dict[str, Any]:
    """A worker's share of the metrics: request counters and the latency histogram."""
    hist: dict[str, list[float]] = {}
    for labels, child in metrics.request_seconds._metrics.items():
        # prometheus_client keeps per-bucket (not cumulative) counts and the sum.
        h = cast(Histogram, child)
        hist[labels[0]] = [b.get() for b in h._buckets] + [h._sum.get()]
    return {
        "accepted": metrics.events_accepted,
        "rejected": metrics.events_rejected,
        "stored": metrics.events_stored,
        "requests": {str(k): v for k, v in metrics.requests.items()},
        "hist": hist,
    }


def add_counters(into: Metrics, part: dict[str, Any]) -> None:
    """Add a worker's ``counters_of`` to ``into`` (the daemon's or a scrape's copy)."""
    into.events_accepted += part["accepted"]
    into.events_rejected += part["rejected"]
    into.events_stored += part["stored"]
    into.requests.update({int(k): v for k, v in part["requests"].items()})
    for route, values in part["hist"].items():
        child = into.request_seconds.labels(route)
        for bucket, n in zip(child._buckets, values[:-1], strict=True):
            bucket.inc(n)
        child._sum.inc(values[-1])


def merged(own: Metrics, parts: Sequence[dict[str, Any]]) -> Metrics:
    """A scrape's view: the daemon's metrics plus every worker's counters."""
    out = Metrics()
    for attr in (
        "events_accepted", "events_rejected", "events_stored", "batches_ok", "batches_failed",
        "bytes_sent", "events_sent", "archive_rows", "archive_bytes", "archive_failed",
    ):  # fmt: skip
        setattr(out, attr, getattr(own, attr))
    out.requests = Counter(own.requests)
    out.search_pending = own.search_pending  # the indexer runs in the daemon process
    add_counters(out, counters_of(own))
    # The shipper's send latency (no labels) is observed in the daemon only.
    for b_out, b_own in zip(out.send_seconds._buckets, own.send_seconds._buckets, strict=True):
        b_out.inc(b_own.get())
    out.send_seconds._sum.inc(own.send_seconds._sum.get())
    for part in parts:
        add_counters(out, part)
    return out
