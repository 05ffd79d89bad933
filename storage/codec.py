"""Value conversions between Python records and SQLite columns.

SQLite keeps timestamps as fixed-width ISO-8601 UTC text
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``) so that text order is time order and other
tools can read them; ids as canonical UUID text; JSON as compact text.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from storage.base import AuditRow

_UUID = uuid.UUID
_fromiso = datetime.fromisoformat


def ts_text(dt: datetime) -> str:
    """Fixed-width UTC text; naive datetimes are taken as UTC."""
    tz = dt.tzinfo
    if tz is None:
        return dt.isoformat(timespec="microseconds") + "Z"
    if tz is not UTC:
        dt = dt.astimezone(UTC)
    # An aware UTC datetime ends in "+00:00": cheaper to cut than to replace tzinfo.
    return dt.isoformat(timespec="microseconds")[:-6] + "Z"


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
    out = []
    append = out.append
    for r in rows:
        u = r.id
        if type(u) is _UUID:
            h = f"{u.int:032x}"  # what UUID.__str__ does, minus its % formatting
            row_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
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


def row_from_sqlite(t: Any) -> AuditRow:
    """A SQLite result tuple in ``AUDIT_COLUMNS`` order as an ``AuditRow``."""
    loads = orjson.loads
    archived = t[10]
    return AuditRow(
        _UUID(t[0]),
        t[1],
        t[2],
        t[3],
        _UUID(t[4]),
        t[5],
        loads(t[6]),
        loads(t[7]),
        _fromiso(t[8]),
        _fromiso(t[9]),
        None if archived is None else _fromiso(archived),
    )
