"""The ONE builder of telemetry POST bodies: rows → events → blob v4 → envelope.

``tuiaudit preview``, the dashboard, approval mode's queue and the shipper all
cut the queue with :func:`queue_batches` (:func:`next_batch` is its first
batch) and build with :func:`plan_batches`, so the SHA-256 a user previews is
the SHA-256 the sent ledger records (DESIGN §5, §5.2, §10).

The batch in flight is journaled (the server property ``shipping-inflight``:
its key and row ids) before its POST, and the next batch is always that one
again while its rows are pending: a re-send after a crash carries the same
rows, body and ``Idempotency-Key`` even if rows ingested since sort among
them (telemetry rows share their day's ``created_at``). See
:func:`read_inflight`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncGenerator, Iterator, Sequence, Set
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from tuiaudit.codec import Keyword
from tuiaudit.codec.blob import blob_frame
from tuiaudit.codec.row_events import encode_events, row_to_event
from tuiaudit.storage.base import AuditRow, Cursor, StoreError

if TYPE_CHECKING:
    from tuiaudit.config import Settings
    from tuiaudit.storage.base import Store

log = logging.getLogger("tuiaudit.shipper")

ENVELOPE_TYPE = "telemetry-events"
INFLIGHT_PROPERTY = "shipping-inflight"
"""Server property journaling the batch in flight: ``{"key": ..., "ids": [32-hex, ...]}``."""


def batch_key(ids: Sequence[uuid.UUID]) -> str:
    """The ``Idempotency-Key``: SHA-256 (hex) of the sorted row ids — same rows, same key."""
    return hashlib.sha256(b"".join(sorted(i.bytes for i in ids))).hexdigest()


@dataclass(frozen=True, slots=True)
class Batch:
    """One POST body and what it holds."""

    rows: Sequence[AuditRow]
    ids: list[uuid.UUID]
    body: bytes
    """The exact bytes POSTed (the JSON envelope)."""
    sha256: str
    """SHA-256 (hex) of ``body``: what the ledger records and the preview shows."""
    raw_bytes: int
    """Length of the Fressian encoding before zstd."""
    encoded_bytes: int
    """Length of ``body``."""
    batch_key: str
    oversize: bool = False
    """A single row whose body alone passes the byte cap: quarantined, never sent."""

    @property
    def count(self) -> int:
        return len(self.ids)

    @property
    def events(self) -> list[dict[Keyword, Any]]:
        """The events in ``body`` (built on demand: the sender never needs them)."""
        return [row_to_event(r) for r in self.rows]


def envelope_body(*, instance_id: uuid.UUID | str, version: str, blob: str) -> bytes:
    return orjson.dumps(
        {"type": ENVELOPE_TYPE, "version": version, "instance-id": str(instance_id), "events": blob}
    )


def build_batch(rows: Sequence[AuditRow], *, instance_id: uuid.UUID | str, version: str) -> Batch:
    """Encode ``rows`` (in order) into one telemetry envelope."""
    raw = encode_events(rows)
    body = envelope_body(instance_id=instance_id, version=version, blob=blob_frame(raw))
    ids = [r.id for r in rows]
    return Batch(
        rows=rows,
        ids=ids,
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),
        raw_bytes=len(raw),
        encoded_bytes=len(body),
        batch_key=batch_key(ids),
    )


def plan_batches(
    rows: Sequence[AuditRow], *, instance_id: uuid.UUID | str, version: str, max_bytes: int
) -> Iterator[Batch]:
    """Consecutive batches covering ``rows`` in order, each body at most ``max_bytes``.

    Lazy: the shipper sends (and deletes) one before the next is built. A
    page that is too big is cut to a size estimated from its bytes per row
    (at most half of it per try); a single row that alone is too big comes out
    with ``oversize=True``. Deterministic, so the preview's first batch is the
    sender's first batch.
    """
    i, n = 0, len(rows)
    take = n
    while i < n:
        take = min(take, n - i)
        while True:
            chunk = rows[i : i + take]
            batch = build_batch(chunk, instance_id=instance_id, version=version)
            if batch.encoded_bytes <= max_bytes or max_bytes <= 0:
                yield batch
                break
            if take == 1:
                yield replace(batch, oversize=True)
                break
            estimate = int(take * max_bytes / batch.encoded_bytes * 0.9)
            take = max(1, min(take // 2, estimate))
        i += take
        # Size the next piece from the bytes per row of this one, so a large page
        # is not re-encoded whole for every piece, and pieces grow back after a
        # single huge row.
        per_row = batch.encoded_bytes / take
        take = max(1, int(max_bytes * 0.9 / per_row)) if max_bytes > 0 else n


def inflight_entry(batch: Batch) -> dict[str, Any]:
    """The journal of ``batch`` (compact: ids as 32 hex digits, in the body's order)."""
    return {"key": batch.batch_key, "ids": [i.hex for i in batch.ids]}


@dataclass(frozen=True, slots=True)
class Inflight:
    """What the journal says is in flight, and which of its rows are still pending."""

    found: bool
    """A journal exists (it may name no pending row: then it is stale)."""
    ids: list[uuid.UUID]
    rows: list[AuditRow]
    """Its rows still pending, in the journal's order."""

    @property
    def whole(self) -> bool:
        """Every row is pending: re-sent as the same body under the same key."""
        return self.found and bool(self.ids) and len(self.rows) == len(self.ids)


NO_INFLIGHT = Inflight(found=False, ids=[], rows=[])


async def read_inflight(store: Store) -> Inflight:
    """The journaled batch and its rows still pending (one property read, one query).

    All pending: the batch is rebuilt from them, in order, so its body and key
    are those of the interrupted attempt. Some gone (GC, quarantine, purge):
    the rest still go first, as their own batch (the key necessarily changes:
    it is derived from the ids). None left: the journal is stale and ignored.
    """
    value = await store.get_property(INFLIGHT_PROPERTY)
    if value is None:
        return NO_INFLIGHT
    try:
        ids = [uuid.UUID(hex=h) for h in value["ids"]]
    except (TypeError, KeyError, ValueError, AttributeError):
        log.warning("ignoring an unreadable %s journal", INFLIGHT_PROPERTY)
        return Inflight(found=True, ids=[], rows=[])
    rows = await store.telemetry_rows(ids) if ids else []
    return Inflight(found=True, ids=ids, rows=rows)


async def queue_batches(
    store: Store,
    settings: Settings,
    *,
    instance_id: uuid.UUID | str,
    version: str,
    inflight: Inflight,
    skip: Set[uuid.UUID] = frozenset(),
) -> AsyncGenerator[Batch, None]:
    """Every batch of the telemetry queue in send order: the ONE cut of the queue.

    The journaled rows still pending first (the interrupted batch, re-sent with its
    body and key; more than one only if ``batch_bytes`` was lowered since), then the other
    rows in queue order, ``batch_rows`` at a time, each piece planned by bytes.
    ``skip``: rows that already sit in a body elsewhere (approval mode's queued
    bodies, DESIGN §10), left out like the journaled ones. The sender, approval
    mode's queue and the preview all cut here, so a body one of them shows is a
    body another sends.

    Pages are read by keyset cursor (not "the oldest again"), so the next one is
    fetched and built while the current batch is in flight, and the pieces are
    the ones a fresh read of the same rows would cut. Building runs in a thread
    so a 10,000-event encode does not stall the event loop. It ends after the
    first short page: rows that arrive meanwhile wait for the next run, so a busy
    ingest cannot keep a run going forever.
    """
    n, max_bytes = settings.batch_rows, settings.batch_bytes
    resumed = [r for r in inflight.rows if r.id not in skip]
    planned = plan_batches(resumed, instance_id=instance_id, version=version, max_bytes=max_bytes)
    while (batch := await asyncio.to_thread(next, planned, None)) is not None:
        yield batch
    left_out = set(skip) | {r.id for r in inflight.rows}
    rows: list[AuditRow] = []  # read, not yet cut
    after: Cursor | None = None
    while True:
        page = await store.telemetry_page(n, after=after)
        if page:
            after = (page[-1].created_at, page[-1].id)
            rows.extend(r for r in page if r.id not in left_out)
        last = len(page) < n
        while len(rows) >= n or (last and rows):
            piece, rows = rows[:n], rows[n:]
            planned = plan_batches(
                piece, instance_id=instance_id, version=version, max_bytes=max_bytes
            )
            while (batch := await asyncio.to_thread(next, planned, None)) is not None:
                yield batch
        if last:
            return


async def next_batch(
    store: Store, settings: Settings, *, instance_id: uuid.UUID | str, version: str
) -> Batch | None:
    """The batch the shipper would send next (None when the queue is empty).

    The journaled batch while any of its rows is pending, else the first batch
    of the oldest page. That batch is then journaled if no journal exists
    (insert-only, so never over a batch the shipper has in flight; not on a
    read-only store): what a user previews is what the shipper sends next,
    even if rows that sort before it arrive in between.
    """
    inflight = await read_inflight(store)
    batches = queue_batches(
        store, settings, instance_id=instance_id, version=version, inflight=inflight
    )
    try:
        batch = await anext(batches, None)
    finally:
        await batches.aclose()
    if batch is None or inflight.rows:  # nothing queued, or the journaled batch
        return batch
    if inflight.found or store.read_only or batch.oversize:
        return batch
    entry = inflight_entry(batch)
    try:
        stored = await store.ensure_property(INFLIGHT_PROPERTY, entry)
    except StoreError as exc:  # a preview still works on a store it cannot write
        log.debug("could not journal the previewed batch: %s", exc)
        return batch
    if stored == entry:
        return batch
    # The shipper journaled its batch in between: that one is next.
    return await next_batch(store, settings, instance_id=instance_id, version=version)
