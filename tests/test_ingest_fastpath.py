"""The ingest hot path's batch shortcuts give exactly what the one-at-a-time forms give."""

from __future__ import annotations

import uuid
from dataclasses import astuple, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuiaudit import ids
from tuiaudit.events import ValidationError, new_row, prepare_backend_events
from tuiaudit.ids import uuid7, uuid7_many
from tuiaudit.policy import anonymise, anonymise_many, explain
from tuiaudit.storage.base import AuditRow
from tuiaudit.storage.columns import (
    ColumnRows,
    row_params,
    rows_columns,
    rows_params,
    ts_text,
)

NOW = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def fields_but_id(row: AuditRow) -> tuple[object, ...]:
    return astuple(row)[1:]


# ---------------------------------------------------------------------- ids


def test_uuid7_many_continues_the_millisecond_in_order() -> None:
    before = uuid7(NOW)
    batch = uuid7_many(NOW, 50)
    after = uuid7(NOW)
    assert [before, *batch, after] == sorted([before, *batch, after])
    assert len({before, *batch, after}) == 52
    for u in batch:
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert u == uuid.UUID(str(u)) and hash(u) == hash(uuid.UUID(str(u)))
    assert uuid7_many(NOW, 0) == []


def test_uuid7_many_across_the_variant_bits() -> None:
    ms = ids._millis(NOW)
    ids._last_rand[ms] = (1 << 62) - 3  # the next run carries into bit 62
    batch = uuid7_many(NOW, 6)
    assert batch == sorted(batch) and len(set(batch)) == 6
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in batch)


# --------------------------------------------------------------------- rows


def test_new_row_is_an_audit_row() -> None:
    args = (uuid7(NOW), "n", "t", "backend", uuid.uuid4(), "1.2.3.4", {"a": 1}, {}, NOW, NOW)
    fast, slow = new_row(*args), AuditRow(*args)
    assert type(fast) is AuditRow
    assert fast == slow and repr(fast) == repr(slow)
    assert fast.archived_at is None


def test_ts_text_matches_isoformat() -> None:
    def reference(dt: datetime) -> str:
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC)
        return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"

    for dt in (
        NOW,
        NOW.replace(tzinfo=None),
        NOW.astimezone(timezone(timedelta(hours=-7))),
        NOW.astimezone(ZoneInfo("Europe/Paris")),
        datetime(5, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC")),
    ):
        assert ts_text(dt) == reference(dt)


def test_rows_params_equals_row_params() -> None:
    profile = uuid.uuid4()
    day = datetime(2024, 5, 1, tzinfo=UTC)
    rows = [
        AuditRow(
            uuid7(NOW),
            "a",
            "t",
            "backend",
            profile,
            "1.2.3.4",
            {"x": [1, {"y": None}]},
            {},
            NOW,
            NOW,
        ),
        AuditRow(uuid7(day), "a", "t", "telemetry:backend", profile, "0.0.0.0", {}, {}, day, day),
        AuditRow(
            uuid.UUID(int=0),
            "b",
            "t",
            "backend",
            uuid.UUID(int=5),
            "::1",
            {"é": "ü"},
            {"k": "v"},
            NOW.replace(tzinfo=None),
            NOW.astimezone(ZoneInfo("Asia/Tokyo")),
            NOW,
        ),
    ]
    assert rows_params(rows) == [row_params(r) for r in rows]
    assert rows_params([]) == []
    # The tuples a worker packs for SQLite are the same rows, the ids as UUIDs.
    columns = rows_columns(rows)
    assert columns is not None
    assert ColumnRows(columns).params() == [row_params(r) for r in rows]
    assert rows_columns([]) == []


def test_rows_columns_carry_a_nul_and_refuse_what_rows_params_converts() -> None:
    def one(**kw: Any) -> AuditRow:
        fields: dict[str, Any] = dict(
            id=uuid7(NOW), name="a", type="t", source="backend", profile_id=uuid.uuid4(),
            ip_addr="::1", props={}, context={}, tracked_at=NOW, created_at=NOW,
        )  # fmt: skip
        return AuditRow(**{**fields, **kw})

    nul = [one(name="nul\x00"), one(props={"k": "\x00"})]
    columns = rows_columns(nul)
    assert columns is not None
    assert ColumnRows(columns).params() == rows_params(nul)  # packed rows carry it as it is
    with pytest.raises(TypeError):
        rows_columns([one(props={"k": object()})])  # orjson refuses it
    assert rows_columns([one(id=str(uuid.uuid4()))]) is None  # not a UUID: rows_params' str()


# ------------------------------------------------------------------- policy


def test_anonymise_many_equals_anonymise() -> None:
    events = [
        {
            "name": "update-file",
            "type": "action",
            "props": {"file-id": str(uuid.uuid4()), "n": i, "title": "t"},
            "context": {"initiator": "api", "session": "s"},
        }
        for i in range(5)
    ]
    rows = [p.row for p in prepare_backend_events(events, now=NOW)]
    many = anonymise_many(rows)
    assert [fields_but_id(r) for r in many] == [fields_but_id(anonymise(r)) for r in rows]
    assert [fields_but_id(r) for r in many] == [fields_but_id(explain(r).shared) for r in rows]
    ids_ = [r.id for r in many]
    assert ids_ == sorted(ids_) and len(set(ids_)) == 5
    assert all(
        u.int >> 80 == int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1000) for u in ids_
    )
    # Rows of different moments take the one-at-a-time way, with the same result.
    mixed = [rows[0], replace(rows[1], created_at=NOW + timedelta(days=1))]
    assert [fields_but_id(r) for r in anonymise_many(mixed)] == [
        fields_but_id(anonymise(r)) for r in mixed
    ]
    assert anonymise_many([]) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(10**9), max_value=86_400 * 10**6 + 10**9),
            st.sampled_from([UTC, timezone(timedelta(hours=-3)), ZoneInfo("Europe/Paris")]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_day_truncation_over_a_run_of_rows(stamps: list[tuple[int, object]]) -> None:
    """The day memo's same-day shortcut gives each row its own UTC day."""
    start = datetime(2024, 5, 1, tzinfo=UTC)
    for offset, tz in stamps:
        at = (start + timedelta(microseconds=offset)).astimezone(tz)  # type: ignore[arg-type]
        row = AuditRow(
            uuid7(NOW), "n", "action", "backend", uuid.uuid4(), "0.0.0.0", {}, {}, at, at
        )
        day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        shared = anonymise(row)
        assert shared.tracked_at == day and shared.created_at == day
        assert shared.tracked_at.tzinfo is UTC


# ------------------------------------------------------------------- events


def test_a_batch_checks_a_shared_value_once_but_reports_every_bad_one() -> None:
    profile = str(uuid.uuid4())
    good = [{"name": "n", "type": "t", "profile-id": profile, "ip-addr": "10.0.0.1"}] * 3
    rows = [p.row for p in prepare_backend_events(good, now=NOW)]
    assert {r.profile_id for r in rows} == {uuid.UUID(profile)}
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    bad = {"name": "n", "type": "t", "profile-id": "nope", "tracked-at": "soon"}
    try:
        prepare_backend_events([bad, good[0], bad], now=NOW)
    except ValidationError as exc:
        assert [e.path for e in exc.errors] == [
            "events[0].profile-id",
            "events[0].tracked-at",
            "events[2].profile-id",
            "events[2].tracked-at",
        ]
    else:
        raise AssertionError("a bad batch was accepted")
