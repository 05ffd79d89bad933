"""Value conversions between Python records and SQLite columns.

SQLite keeps timestamps as fixed-width ISO-8601 UTC text
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``) so that text order is time order and other
tools can read them; ids as canonical UUID text; JSON as compact text.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from storage.base import AuditRow

_UUID = uuid.UUID
_fromiso = datetime.fromisoformat


def ts_text(dt: datetime) -> str:
    """Fixed-width UTC text; naive datetimes are taken as UTC."""
    tz = dt.tzinfo
    if tz is not UTC and tz is not None:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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
