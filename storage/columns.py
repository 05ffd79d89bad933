"""Value conversions between Python records and SQLite columns.

SQLite keeps timestamps as fixed-width ISO-8601 UTC text
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``) so that text order is time order and other
tools can read them; ids as canonical UUID text; JSON as compact text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import orjson

from tuiaudit.storage.base import ROW_SETTERS, AuditRow

_UUID = uuid.UUID
_fromiso = datetime.fromisoformat


# ts_text's pieces: formatting an int with % costs more than everything else
# ts_text does (isoformat() of an aware datetime, its offset too, costs more
# still), so the minute's head is made once and the rest comes from tables.
_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))
_WHOLE_MS = tuple(f".{i:03d}000Z" for i in range(1000))  # the tail of a whole millisecond
_HEADS: dict[tuple[int, int, int, int, int], str] = {}  # (y, m, d, H, M) -> "YYYY-mm-ddTHH:MM:"
_MAX_HEADS = 4096


def ts_text(dt: datetime) -> str:
    """Fixed-width UTC text (``YYYY-MM-DDTHH:MM:SS.ffffffZ``); naive datetimes are taken as UTC."""
    tz = dt.tzinfo
    if tz is not UTC and tz is not None:
        dt = dt.astimezone(UTC)
    minute = (dt.year, dt.month, dt.day, dt.hour, dt.minute)
    try:  # (a subscript is cheaper than .get in the interpreter)
        head = _HEADS[minute]
    except KeyError:
        if len(_HEADS) >= _MAX_HEADS:
            _HEADS.clear()
        y, mo, d, h, mi = minute
        head = _HEADS[minute] = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:"
    us = dt.microsecond
    if us % 1000:
        return f"{head}{dt.second:02d}.{us:06d}Z"
    return head + _TWO_DIGITS[dt.second] + _WHOLE_MS[us // 1000]


def ts_text_opt(dt: datetime | None) -> str | None:
    return None if dt is None else ts_text(dt)


def parse_ts(text: str) -> datetime:
    return _fromiso(text)


def parse_ts_opt(text: str | None) -> datetime | None:
    return None if text is None else _fromiso(text)


def json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_value(text: str | bytes | None, default: Any = None) -> Any:
    return default if text is None else orjson.loads(text)


AUDIT_COLUMNS = (
    "id, name, type, source, profile_id, ip_addr, props, context, tracked_at, created_at, "
    "archived_at"
)


def row_params(r: AuditRow) -> tuple[Any, ...]:
    """An ``AuditRow`` as SQLite parameters in ``AUDIT_COLUMNS`` order."""
    dumps = orjson.dumps
    return (
        str(r.id),
        r.name,
        r.type,
        r.source,
        str(r.profile_id),
        r.ip_addr,
        dumps(r.props).decode(),
        dumps(r.context).decode(),
        ts_text(r.tracked_at),
        ts_text(r.created_at),
        None if r.archived_at is None else ts_text(r.archived_at),
    )


_LOW64 = (1 << 64) - 1


def rows_params(rows: Sequence[AuditRow]) -> list[tuple[Any, ...]]:
    """``[row_params(r) for r in rows]`` for a batch, at a fraction of the cost.

    The rows of a batch share objects: one ``created_at`` (and one day for the
    telemetry copies), a handful of profile ids, often an empty context. Their
    text is made once per object, remembered by identity for this call only
    (the rows hold every object alive, so an ``id()`` cannot be reused).
    """
    dumps = orjson.dumps
    ts_memo: dict[int, str] = {}
    uid_memo: dict[int, str] = {}
    # A batch's UUIDv7 ids share their first 64 bits (the millisecond, the
    # version and the top of a counter), so that half of the text is made once.
    id_heads: dict[int, str] = {}
    out: list[tuple[Any, ...]] = []
    append = out.append
    for r in rows:
        u = r.id
        if type(u) is _UUID:
            n = u.int
            head = id_heads.get(n >> 64)
            if head is None:
                h = "%016x" % (n >> 64)
                head = id_heads[n >> 64] = f"{h[:8]}-{h[8:12]}-{h[12:]}-"
            t = "%016x" % (n & _LOW64)
            row_id = head + t[:4] + "-" + t[4:]
        else:
            row_id = str(u)
        u = r.profile_id
        profile = uid_memo.get(id(u))
        if profile is None:
            profile = uid_memo[id(u)] = str(u)
        props = r.props
        context = r.context
        dt = r.tracked_at
        tracked = ts_memo.get(id(dt))
        if tracked is None:
            tracked = ts_memo[id(dt)] = ts_text(dt)
        dt = r.created_at
        created = ts_memo.get(id(dt))
        if created is None:
            created = ts_memo[id(dt)] = ts_text(dt)
        archived = r.archived_at
        append(
            (
                row_id,
                r.name,
                r.type,
                r.source,
                profile,
                r.ip_addr,
                "{}" if not props and type(props) is dict else dumps(props).decode(),
                "{}" if not context and type(context) is dict else dumps(context).decode(),
                tracked,
                created,
                None if archived is None else ts_text(archived),
            )
        )
    return out


class ColumnRows(list[tuple[Any, ...]]):
    """An insert's rows as ``rows_columns`` tuples, made without ``AuditRow``
    objects by an ingest worker's ``AuditLog.ingest_frontend`` (issue 20).
    Given to the ``insert_rows`` of a store whose ``takes_columns`` is true, in
    place of the rows."""

    __slots__ = ()

    def params(self) -> list[tuple[Any, ...]]:
        """``rows_params`` of the rows."""
        return [(str(t[0]), *t[1:]) for t in self]


def rows_columns(rows: Sequence[AuditRow]) -> list[tuple[Any, ...]] | None:
    """``rows`` as ``ColumnRows`` tuples (``rows_params``' values, the ids as UUIDs,
    which msgpack and orjson write in C as ``str`` does); None when a row's id or
    profile id is not exactly a ``uuid.UUID`` (a subclass or text: ``rows_params``'
    ``str()`` is the reference). Raises what orjson raises on a props or context
    it cannot write.

    A batch's rows share objects: one ``created_at`` (and one day for the
    telemetry copies), a profile id. Their text is made once per object,
    remembered by identity for this call only (the rows hold every object alive,
    so an ``id()`` cannot be reused).

    The tuple built per row is ``rows_params``' with the ids left as UUIDs; the
    two loops are kept apart because a shared per-row function would cost each
    of these hot paths a call per row.
    """
    dumps = orjson.dumps
    ts_memo: dict[int, str] = {}
    uid_memo: dict[int, str] = {}
    out: list[tuple[Any, ...]] = []
    append = out.append
    for r in rows:
        u, p = r.id, r.profile_id
        if type(u) is not _UUID or type(p) is not _UUID:
            return None
        profile = uid_memo.get(id(p))
        if profile is None:
            profile = uid_memo[id(p)] = str(p)  # orjson's text, made once, not per row
        dt = r.tracked_at
        tracked = ts_memo.get(id(dt))
        if tracked is None:
            tracked = ts_memo[id(dt)] = ts_text(dt)
        dt = r.created_at
        created = ts_memo.get(id(dt))
        if created is None:
            created = ts_memo[id(dt)] = ts_text(dt)
        props = r.props
        context = r.context
        archived = r.archived_at
        append(
            (
                u,
                r.name,
                r.type,
                r.source,
                profile,
                r.ip_addr,
                "{}" if not props and type(props) is dict else dumps(props).decode(),
                "{}" if not context and type(context) is dict else dumps(context).decode(),
                tracked,
                created,
                None if archived is None else ts_text(archived),
            )
        )
    return out


def row_from_sqlite(t: Any) -> AuditRow:
    """A SQLite result tuple in ``AUDIT_COLUMNS`` order as an ``AuditRow``."""
    loads = orjson.loads
    archived = t[10]
    return AuditRow(
        uuid_from_text(t[0]),
        t[1],
        t[2],
        t[3],
        uuid_from_text(t[4]),
        t[5],
        loads(t[6]),
        loads(t[7]),
        _fromiso(t[8]),
        _fromiso(t[9]),
        None if archived is None else _fromiso(archived),
    )


_new = object.__new__
_set_uuid_int = _UUID.int.__set__  # type: ignore[attr-defined,misc]
_set_uuid_safe = _UUID.is_safe.__set__  # type: ignore[attr-defined,misc]
_SAFE_UNKNOWN = uuid.SafeUUID.unknown
_fromhex = bytes.fromhex
_sleep = time.sleep
_from_bytes = int.from_bytes


def uuid_from_text(s: str) -> uuid.UUID:
    """``uuid.UUID(s)``: the store's canonical text at a third of the cost.

    Exactly 32 hex digits once the dashes are gone (``fromhex`` skips spaces,
    so 16 bytes out of 32 characters means no space was there) take the fast
    way; anything else gets ``uuid.UUID``'s own parsing and error.
    """
    h = s.replace("-", "")
    if len(h) == 32:
        try:
            b = _fromhex(h)
        except ValueError:
            b = b""
        if len(b) == 16:
            u = _new(_UUID)
            _set_uuid_int(u, _from_bytes(b))
            _set_uuid_safe(u, _SAFE_UNKNOWN)
            return u
    return _UUID(s)


# rows_from_sqlite fills the slots directly: a frozen dataclass __init__ goes
# through object.__setattr__ per field, twice the cost on a 10,000-row page.
_ROW_FIELDS = (
    "id, name, type, source, profile_id, ip_addr, props, context, tracked_at, created_at, "
    "archived_at"
)
if ", ".join(f.name for f in fields(AuditRow)) != _ROW_FIELDS or hasattr(AuditRow, "__post_init__"):
    raise RuntimeError("storage.columns.rows_from_sqlite must follow AuditRow's new fields")
(
    _set_id,
    _set_name,
    _set_type,
    _set_source,
    _set_profile_id,
    _set_ip_addr,
    _set_props,
    _set_context,
    _set_tracked_at,
    _set_created_at,
    _set_archived_at,
) = ROW_SETTERS


def rows_from_sqlite(tuples: Sequence[Any]) -> list[AuditRow]:
    """``[row_from_sqlite(t) for t in tuples]`` for a page, at about half the cost.

    Timestamps (day-truncated for telemetry) and profile ids repeat within a
    page: each distinct text is parsed once and its (immutable) object shared.
    """
    loads = orjson.loads
    ts: dict[str, datetime] = {}
    profiles: dict[str, uuid.UUID] = {}
    new, row_cls = _new, AuditRow
    out: list[AuditRow] = []
    append = out.append
    for i, t in enumerate(tuples):
        if not i & 127 and i:
            # Pages are parsed in a worker thread: give the GIL away every few
            # hundred rows, or each SQLite call and event-loop wake-up waits a
            # whole switch interval (5 ms) for it.
            _sleep(0)
        r = new(row_cls)
        _set_id(r, uuid_from_text(t[0]))
        _set_name(r, t[1])
        _set_type(r, t[2])
        _set_source(r, t[3])
        text = t[4]
        profile = profiles.get(text)
        if profile is None:
            profile = profiles[text] = uuid_from_text(text)
        _set_profile_id(r, profile)
        _set_ip_addr(r, t[5])
        _set_props(r, loads(t[6]))
        _set_context(r, loads(t[7]))
        text = t[8]
        dt = ts.get(text)
        if dt is None:
            dt = ts[text] = _fromiso(text)
        _set_tracked_at(r, dt)
        text = t[9]
        dt = ts.get(text)
        if dt is None:
            dt = ts[text] = _fromiso(text)
        _set_created_at(r, dt)
        text = t[10]
        _set_archived_at(r, None if text is None else _fromiso(text))
        append(r)
    return out
