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
from tuiaudit.codec import Keyword, encode_blob_parts, kw
from tuiaudit.ids import is_uuid_string

if TYPE_CHECKING:
    from storage.base import Store
    from tuiaudit.config import Settings

ENVELOPE_TYPE = "telemetry-events"

_K_NAME = kw("name")
_K_TYPE = kw("type")
_K_SOURCE = kw("source")
_K_TRACKED_AT = kw("tracked-at")
_K_PROFILE_ID = kw("profile-id")
_K_PROPS = kw("props")
_K_CONTEXT = kw("context")
_K_ID = kw("id")

_kw_cache: dict[str, Keyword] = {}
_uuid_new = object.__new__
_set = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _key(k: Any) -> Keyword:
    """A map key as a keyword (props keys are strings in the store)."""
    found = _kw_cache.get(k)
    if found is None:
        found = kw(str(k))
        if len(_kw_cache) < 4096:  # keys are a small vocabulary; stay bounded anyway
            _kw_cache[k] = found
    return found


def _uuid(s: str) -> uuid.UUID:
    """``uuid.UUID(s)`` for a string already checked canonical, without its slow parsing
    (this runs for every UUID-valued prop of every event of a batch)."""
    u = _uuid_new(uuid.UUID)
    _set(u, "int", int(s.replace("-", ""), 16))
    _set(u, "is_safe", _SAFE_UNKNOWN)
    return u  # type: ignore[no-any-return]


def _str(v: str) -> Any:
    return _uuid(v) if len(v) == 36 and is_uuid_string(v) else v


def _value(v: Any) -> Any:
    """JSON value → Clojure-shaped value: keyword-keyed maps, UUID strings as UUIDs."""
    t = type(v)
    if t is str:
        return _str(v)
    if t is dict:
        return _map(v)
    if t is list:
        return [_value(x) for x in v if x is not None]
    return v


def _map(d: dict[str, Any]) -> dict[Keyword, Any]:
    """Keyword-keyed copy of ``d`` without null values (the wire has no nulls)."""
    out: dict[Keyword, Any] = {}
    keys = _kw_cache
    for k, v in d.items():
        t = type(v)
        if t is str:
            v = _uuid(v) if len(v) == 36 and is_uuid_string(v) else v
        elif v is None:
            continue
        elif not (t is bool or t is int or t is float):
            v = _value(v)
        out[keys.get(k) or _key(k)] = v
    return out


def row_to_event(row: AuditRow) -> dict[Keyword, Any]:
    """``{name, type, source, tracked-at, profile-id, props, context, id}`` of one row.

    ``props`` and ``context`` are always maps (``{}`` when empty); ``id`` lets a
    receiver de-duplicate; ``ip-addr`` and ``created-at`` are never sent.
    """
    return {
        _K_NAME: row.name,
        _K_TYPE: row.type,
        _K_SOURCE: row.source,
        _K_TRACKED_AT: row.tracked_at,
        _K_PROFILE_ID: row.profile_id,
        _K_PROPS: _map(row.props) if row.props else {},
        _K_CONTEXT: _map(row.context) if row.context else {},
        _K_ID: row.id,
    }


def batch_key(ids: Sequence[uuid.UUID]) -> str:
    """The ``Idempotency-Key``: SHA-256 (hex) of the sorted row ids — same rows, same key."""
    return hashlib.sha256(b"".join(sorted(i.bytes for i in ids))).hexdigest()


@dataclass(frozen=True, slots=True)
class Batch:
    """One POST body and what it holds."""

    rows: Sequence[AuditRow]
    ids: list[uuid.UUID]
    events: list[dict[Keyword, Any]]
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


def envelope_body(*, instance_id: uuid.UUID | str, version: str, blob: str) -> bytes:
    return orjson.dumps(
        {"type": ENVELOPE_TYPE, "version": version, "instance-id": str(instance_id), "events": blob}
    )


def build_batch(rows: Sequence[AuditRow], *, instance_id: uuid.UUID | str, version: str) -> Batch:
    """Encode ``rows`` (in order) into one telemetry envelope."""
    events = [row_to_event(r) for r in rows]
    blob, raw_len = encode_blob_parts(events)
    body = envelope_body(instance_id=instance_id, version=version, blob=blob)
    ids = [r.id for r in rows]
    return Batch(
        rows=rows,
        ids=ids,
        events=events,
        body=body,
        sha256=hashlib.sha256(body).hexdigest(),
        raw_bytes=raw_len,
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
