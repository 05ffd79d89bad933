"""UTC time helpers: the clock, RFC 3339 / epoch-millisecond parsing, day truncation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# datetime's range, in epoch milliseconds (years 1..9999).
_MIN_MS = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // _MS
_MAX_MS = (datetime(9999, 12, 31, tzinfo=UTC) - EPOCH) // _MS
EPOCH_MS_RANGE = (_MIN_MS, _MAX_MS)
"""The epoch milliseconds ``parse_timestamp`` accepts (the API description reads it)."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 string or epoch milliseconds (int) to an aware UTC datetime.

    Raises ``ValueError`` whose message is the reason, fit to show a client.
    """
    if type(value) is str:  # the common case first
        return parse_rfc3339(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp has no UTC offset: use an aware datetime")
        return value.astimezone(UTC)
    if isinstance(value, bool):
        raise ValueError("expected an RFC 3339 string or epoch milliseconds, got a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("epoch milliseconds must be a finite number")
        if not _MIN_MS <= value <= _MAX_MS:
            raise ValueError("epoch milliseconds out of range (years 1..9999)")
        return EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        return parse_rfc3339(value)
    raise ValueError(
        f"expected an RFC 3339 string or epoch milliseconds, got {type(value).__name__}"
    )


def parse_rfc3339(text: str) -> datetime:
    """``parse_timestamp`` for a ``str`` (what JSON brings, so the hot path calls it directly)."""
    # fromisoformat also takes forms RFC 3339 does not (a bare date, week
    # dates); a time part and an explicit offset are required here.
    if len(text) < 19 or len(text) > 40 or text[10] not in "Tt ":
        raise ValueError("expected an RFC 3339 timestamp like 2024-05-01T12:30:00Z")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "not a valid RFC 3339 timestamp (expected e.g. 2024-05-01T12:30:00Z)"
        ) from None
    tz = dt.tzinfo
    if tz is UTC:
        return dt
    if tz is None:
        raise ValueError("timestamp has no UTC offset: add Z or +HH:MM")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError("timestamp out of range (years 1..9999 in UTC)") from None


def to_epoch_ms(dt: datetime) -> int:
    """Whole milliseconds since the Unix epoch (floored)."""
    return (dt - EPOCH) // _MS


def truncate_ms(dt: datetime) -> datetime:
    """Drop sub-millisecond precision: the wire format carries milliseconds."""
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def day_start(dt: datetime) -> datetime:
    """00:00:00 UTC of the day ``dt`` falls on."""
    return dt.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def to_rfc3339(dt: datetime) -> str:
    """``2024-05-01T12:30:00.123Z`` (UTC, milliseconds)."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
