"""The ONE builder of telemetry POST bodies: rows → events → blob v4 → envelope.

``tuiaudit preview``, the dashboard and the shipper all call
:func:`next_batch` / :func:`plan_batches`, so the SHA-256 a user previews is
the SHA-256 the sent ledger records (SPEC §5, §5.2).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from storage.base import AuditRow
from tuiaudit.batch_encode import encode_events, row_to_event
from tuiaudit.codec import Keyword
from tuiaudit.codec.blob import blob_frame

if TYPE_CHECKING:
    from storage.base import Store
    from tuiaudit.config import Settings

ENVELOPE_TYPE = "telemetry-events"


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


async def next_batch(
    store: Store, settings: Settings, *, instance_id: uuid.UUID | str, version: str
) -> Batch | None:
    """The batch the shipper would send next (None when the queue is empty)."""
    page = await store.telemetry_page(settings.batch_rows)
    if not page:
        return None
    return next(
        plan_batches(page, instance_id=instance_id, version=version, max_bytes=settings.batch_bytes)
    )
