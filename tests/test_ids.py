"""ids and timeutil: UUIDv7 layout and order, UUID strings, timestamp parsing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tuiaudit.ids import ZERO_UUID, is_uuid_string, is_uuid_value, uuid7
from tuiaudit.timeutil import (
    day_start,
    parse_timestamp,
    to_epoch_ms,
    to_rfc3339,
    truncate_ms,
    utcnow,
)

T0 = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_zero_uuid() -> None:
    assert str(ZERO_UUID) == "00000000-0000-0000-0000-000000000000"


def test_uuid7_layout_carries_the_millisecond() -> None:
    u = uuid7(T0)
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert u.int >> 80 == to_epoch_ms(T0)


def test_uuid7_same_millisecond_is_strictly_increasing() -> None:
    ids = [uuid7(T0) for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_uuid7_orders_by_time() -> None:
    assert uuid7(T0) < uuid7(T0 + timedelta(milliseconds=1)) < uuid7(T0 + timedelta(days=1))
    a = uuid7()
    b = uuid7()
    assert a < b


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b", True),
        ("0190A0B1-2C3D-7E4F-8A9B-0C1D2E3F4A5B", True),
        ("0190a0b12c3d7e4f8a9b0c1d2e3f4a5b", False),  # not canonical
        ("{0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b}", False),
        ("0190a0b1-2c3d-7e4f-8a9b-0c1d-e3f4a5bb", False),  # dash misplaced
        ("0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5g", False),
        ("", False),
        (None, False),
        (12, False),
    ],
)
def test_is_uuid_string(value: object, ok: bool) -> None:
    assert is_uuid_string(value) is ok


def test_is_uuid_value_accepts_uuid_objects() -> None:
    assert is_uuid_value(uuid.uuid4())
    assert not is_uuid_value("nope")


def test_parse_rfc3339_and_epoch_ms() -> None:
    assert parse_timestamp("2024-05-01T12:30:15.123Z") == datetime(
        2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC
    )
    assert parse_timestamp("2024-05-01T14:30:15+02:00") == datetime(
        2024, 5, 1, 12, 30, 15, tzinfo=UTC
    )
    assert parse_timestamp(to_epoch_ms(T0)) == truncate_ms(T0)
    assert parse_timestamp(0) == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (True, "boolean"),
        ("2024-05-01", "RFC 3339"),
        ("2024-05-01T12:30:15", "offset"),
        ("yesterday at noon, roughly", "RFC 3339"),
        (float("nan"), "finite"),
        (10**20, "range"),
        ([1], "list"),
    ],
)
def test_parse_timestamp_rejects_with_a_reason(value: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(value)


def test_day_start_and_rfc3339() -> None:
    assert day_start(T0) == datetime(2024, 5, 1, tzinfo=UTC)
    assert to_rfc3339(T0) == "2024-05-01T12:30:15.123Z"
    assert utcnow().tzinfo is UTC
